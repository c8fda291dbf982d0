"""Seals of remote workers' logs, done after their jobs' end reports.

A remote worker's log reaches the blob store as pieces (see :mod:`jobyard.blobs.pieces`)
and is sealed into one object once its job ended. Sealing is blob work (list the pieces,
read them, write the object, delete them) that nothing on the job path waits for: the
pieces are complete when the end is reported (the worker sends the rest of the log
before the end, and a piece is accepted only while the job is held, so none comes after
the end), and every replica serves a log from its pieces as well as from its object. So
the end is recorded first — the next job of a ``max_concurrent`` 1 chain is queued by it
— and the seal follows in the background, a few at a time per server.

A seal that fails, or that a server's death cuts short, leaves the pieces: the log stays
complete and readable from every replica, as the log of a job lost with its worker does,
and retention removes the pieces with their job.
"""

from __future__ import annotations

import asyncio
import logging

from jobyard.blobs.protocol import BlobStore
from jobyard.core.errors import JobyardError

log = logging.getLogger("jobyard.blobs")

#: Seals one server runs at once (each is a handful of bucket requests): few, so that
#: the log pieces of running jobs, which their ends wait for, keep the bucket's attention.
SEALS_AT_ONCE = 2


class LogSeals:
    """The seals a server runs in the background, kept so that none is garbage-collected
    mid-way and a stopping server can let them finish."""

    def __init__(self, at_once: int = SEALS_AT_ONCE) -> None:
        self._at_once = at_once
        self._room: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def seal_later(self, blobs: BlobStore, key: str) -> None:
        """Seal ``key`` soon, after the seals already waiting."""
        if self._room is None:
            self._room = asyncio.Semaphore(self._at_once)
        task = asyncio.get_running_loop().create_task(self._seal(blobs, key, self._room))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _seal(self, blobs: BlobStore, key: str, room: asyncio.Semaphore) -> None:
        async with room:
            try:
                await blobs.seal(key)
            except JobyardError as exc:
                log.warning("could not seal the log %s (its pieces stay): %s", key, exc.message)
            except Exception:
                log.exception("could not seal the log %s (its pieces stay)", key)

    async def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the seals under way and waiting; cancel the
        rest (their pieces stay). Answers how many were cancelled."""
        pending = set(self._tasks)
        if not pending:
            return 0
        _done, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            task.cancel()
        return len(late)
