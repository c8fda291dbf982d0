"""Riding out database outages on a worker's path: repeat a call while the database is away.

A job whose program ran fine must not end FAILED because the database restarted while
its worker reported the end, renewed its lease or initialized it. The worker's calls
into the control plane therefore go through :class:`Persistent`, which repeats a call
that failed with ``DatabaseUnavailable`` after a short pause (50 ms doubling up to
half a second, so a database that is back is used again within half a second) until it
succeeds or its patience runs out.

Repeating is only safe for idempotent calls. A call whose commit was in flight when the
connection broke may have taken effect: ``Persistent.unsure`` then says so, and the
caller's next attempt checks for the first one's effect before writing again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from jobyard.core.errors import DatabaseUnavailable

log = logging.getLogger("jobyard.workers")
T = TypeVar("T")

FIRST_PAUSE = 0.05
MAX_PAUSE = 0.5


class Persistent:
    """Repeats calls through database outages; see the module docstring.

    ``what`` names the call in log lines ("report the end of job 7"); ``patience`` is
    how long (seconds) to keep trying before raising the last ``DatabaseUnavailable``.
    """

    def __init__(self, what: str, patience: float) -> None:
        self.what = what
        self.patience = patience
        #: True once an attempt failed while its commit was in flight (it may have
        #: taken effect); stays True for the rest of this object's life.
        self.unsure = False
        #: Attempts that failed because the database was unavailable.
        self.failures = 0

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """Await ``call()`` until it returns without ``DatabaseUnavailable``.

        Other errors propagate at once; so does ``DatabaseUnavailable`` once
        ``patience`` seconds have passed since the first attempt (the caller reports it).
        """
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.patience
        pause = FIRST_PAUSE
        while True:
            try:
                result = await call()
            except DatabaseUnavailable as exc:
                self.failures += 1
                if exc.committed is None:
                    self.unsure = True
                if loop.time() + pause > give_up_at:
                    log.info(
                        "cannot %s: the database stayed unavailable for %.0f s; giving up",
                        self.what,
                        self.patience,
                    )
                    raise
                if self.failures == 1:
                    log.info("cannot %s yet: %s; retrying", self.what, exc.message)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE)
                continue
            if self.failures:
                log.info("%s: done after %d retries", self.what, self.failures)
            return result
