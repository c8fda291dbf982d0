"""The pool's handle on a running job, and the cut that interrupts a job's preparation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class JobControl:
    """The pool's handle on a running job: abort it, or drop it after a lost lease."""

    def __init__(self, on_release: Callable[[], None] | None = None) -> None:
        self._waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.reason: str | None = None
        self.lost = False
        #: Set once the end is being reported: lease renewals stop caring about the job.
        self.ending = False
        #: Set once the job holds nothing of its slot any more (its processes are gone,
        #: its folders and sandbox given back); only its end report may still be pending.
        self.released = False
        self._on_release = on_release

    def release(self) -> None:
        """The slot is free for another job (called once, before the end is reported)."""
        if not self.released:
            self.released = True
            if self._on_release is not None:
                self._on_release()

    @property
    def requested(self) -> bool:
        """True once :meth:`abort` or :meth:`lose` was called."""
        return self._waiter.done()

    @property
    def waiter(self) -> asyncio.Future[None]:
        """Done once a stop was requested."""
        return self._waiter

    def abort(self, reason: str) -> None:
        """Stop the job and report FAILED ``aborted: <reason>`` (first reason wins)."""
        if not self._waiter.done():
            self.reason = reason
            self._waiter.set_result(None)

    def lose(self) -> None:
        """The lease is gone: kill the program, report nothing."""
        self.lost = True
        if not self._waiter.done():
            self._waiter.set_result(None)


class TaskCut:
    """Cancels a job's task once, while it is armed: how an abort or the deadline cuts
    the job's preparation (see ``jobyard.worker.runner._JobRun._interruptible``)."""

    __slots__ = ("armed", "fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.armed = True
        self.fired = False

    def fire(self, _: object = None) -> None:
        # A done callback may run after the wait ended (it was already scheduled):
        # disarmed, it does nothing.
        if self.armed and not self.fired:
            self.fired = True
            self.task.cancel()
