"""Jobs a remote worker claims ahead of its free slots, and the acquisition in flight.

A worker that claims only for its free slots, and only once the previous claim is
answered, waits a round trip to the server between a freed slot and its next job; under
a burst that round trip, not the worker, sets the pace. :class:`ClaimAhead` keeps one
acquisition in flight whenever there is room — the free slots plus ``prefetch`` jobs
claimed ahead of them, less those already claimed ahead — so a freed slot takes its next
job from here at once.

A claimed-ahead job is held like a running one: the server shows it INITIALIZING on this
worker, and its lease is renewed with the others (:meth:`ClaimAhead.renewed` drops one
whose lease was lost). When the worker stops acquiring (a drain) the jobs it never
started are handed to ``give_up``, which ends them FAILED (``worker lost``); a killed
worker's are failed by the server when their lease expires, like its running jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from jobyard.core.models import Job

_log = logging.getLogger("jobyard.worker")

#: Why a claimed-ahead job never started: the worker drained or stopped first.
NOT_STARTED_REASON = "worker lost: the worker stopped before starting it"
#: Why a claimed-ahead job whose abort was asked for ended.
ABORTED_AHEAD_REASON = "aborted: abort requested"

#: After a short answer (the queue was empty), how long the next acquisition waits for
#: the jobs it brought to start: its request would compete with their start for this
#: process, and nothing is queued anyway.
START_GRACE = 0.05

#: Most jobs one acquisition asks for (``free`` of ``POST /api/v1/worker/acquire``).
MAX_ASK = 1000

#: Claims up to that many jobs (long-polling the server when none is queued).
Claim = Callable[[int], Awaitable[list[Job]]]
#: Ends jobs that will never start here, with a reason.
GiveUp = Callable[[list[Job], str], Coroutine[Any, Any, None]]


class ClaimAhead:
    """See the module docstring; one per worker process."""

    def __init__(self, prefetch: int, give_up: GiveUp) -> None:
        """``prefetch``: most jobs claimed ahead of free slots (0: none)."""
        if prefetch < 0:
            raise ValueError("prefetch must not be negative")
        self.prefetch = prefetch
        self.stopped = False
        self._give_up = give_up
        #: Jobs claimed and not handed to the pool yet, oldest first.
        self._backlog: deque[Job] = deque()
        #: The task keeping an acquisition in flight while there is room.
        self._fetcher: asyncio.Task[None] | None = None
        #: Resolved when the acquisition in flight is answered (or fails).
        self._answered: asyncio.Future[None] | None = None
        #: Set when room may have appeared (slots freed, claimed-ahead jobs taken).
        self._room: asyncio.Event | None = None
        self._free_now: Callable[[], int] | None = None
        self._giving_up: list[asyncio.Task[None]] = []
        #: Jobs of the last short answer not started yet, and set when none is left.
        self._starting: set[int] = set()
        self._all_started: asyncio.Event | None = None

    def __len__(self) -> int:
        return len(self._backlog)

    def job_ids(self) -> list[int]:
        """Ids of the jobs claimed ahead (to renew their leases)."""
        return [job.id for job in self._backlog]

    async def take(
        self, limit: int, claim: Claim, free_now: Callable[[], int] | None = None
    ) -> list[Job]:
        """Up to ``limit`` jobs: claimed-ahead ones at once, else those of the
        acquisition in flight when it is answered (an empty answer: an empty list; a
        failed one raises). ``free_now`` tells the free slots at any moment (None:
        ``limit``); ``claim`` makes one acquisition."""
        if self.stopped or limit <= 0:
            return []
        self._free_now = free_now
        if self._room is None:
            self._room = asyncio.Event()
        while True:
            if self._backlog:
                count = min(limit, len(self._backlog))
                jobs = [self._backlog.popleft() for _ in range(count)]
                self._room.set()  # the pool started these: room for more ahead
                return jobs
            if self.stopped:
                return []
            loop = asyncio.get_running_loop()
            if self._answered is None:
                self._answered = loop.create_future()
                self._answered.add_done_callback(_retrieved)
            answered = self._answered
            if self._fetcher is None or self._fetcher.done():
                self._fetcher = loop.create_task(self._fetch(claim, limit), name="worker-acquire")
            self._room.set()
            await asyncio.shield(answered)  # raises what the acquisition raised
            if not self._backlog:
                return []

    def _room_now(self, fallback: int) -> int:
        free = self._free_now() if self._free_now is not None else fallback
        return min(max(free, 0) + self.prefetch - len(self._backlog), MAX_ASK)

    async def _fetch(self, claim: Claim, fallback: int) -> None:
        """Keep one acquisition in flight while there is room; a failed one ends the
        task (the pool's next :meth:`take`, after its back-off, starts another)."""
        room_event = self._room
        if room_event is None:  # pragma: no cover - take() makes it first
            raise RuntimeError("take() was not called")
        while not self.stopped:
            room = self._room_now(fallback)
            if room <= 0:
                room_event.clear()
                await room_event.wait()
                continue
            try:
                jobs = await claim(room)
            except Exception as exc:
                self._wake_takers(exc)
                return
            self._backlog.extend(jobs)
            if self.stopped:  # answered while stopping: these never start either
                self._give_up_backlog(NOT_STARTED_REASON)
                return
            self._wake_takers(None)
            if jobs and len(jobs) < room:
                await self._let_start(jobs)

    async def _let_start(self, jobs: list[Job]) -> None:
        """Wait (up to :data:`START_GRACE`) until ``jobs`` started or were dropped."""
        self._starting = {job.id for job in jobs}
        event = self._all_started = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), START_GRACE)
        self._starting.clear()
        self._all_started = None

    def started(self, job_id: int) -> None:
        """A job started (or ended, or was dropped): the next acquisition may go."""
        self._starting.discard(job_id)
        if not self._starting and self._all_started is not None:
            self._all_started.set()

    def _wake_takers(self, exc: Exception | None) -> None:
        answered, self._answered = self._answered, None
        if answered is not None and not answered.done():
            if exc is None:
                answered.set_result(None)
            else:
                answered.set_exception(exc)

    def stop(self) -> None:
        """Abandon the acquisition in flight, claim nothing more and give up the jobs
        claimed ahead (they never started)."""
        if self.stopped:
            return
        self.stopped = True
        if self._fetcher is not None:
            self._fetcher.cancel()
        self._wake_takers(None)
        self._give_up_backlog(NOT_STARTED_REASON)

    def _give_up_backlog(self, reason: str, only: set[int] | None = None) -> None:
        gone = [job for job in self._backlog if only is None or job.id in only]
        if not gone:
            return
        self._backlog = deque(job for job in self._backlog if job not in gone)
        task = asyncio.get_running_loop().create_task(
            self._give_up(gone, reason), name="worker-give-up"
        )
        self._giving_up.append(task)

    def renewed(self, ahead: list[int], leases: dict[int, bool]) -> list[int]:
        """After a renewal of ``ahead`` (``leases``: the server's answer): drop the jobs
        whose lease was lost (returned: forget them), give up those asked to abort."""
        lost = [job_id for job_id in ahead if job_id not in leases]
        aborted = {job_id for job_id in ahead if leases.get(job_id)}
        if lost:
            _log.warning("lost the lease of claimed-ahead job(s) %s", lost)
            dropped = set(lost)
            self._backlog = deque(job for job in self._backlog if job.id not in dropped)
        if aborted:
            self._give_up_backlog(ABORTED_AHEAD_REASON, aborted)
        if (lost or aborted) and self._room is not None:
            self._room.set()
        return lost

    async def close(self) -> None:
        """Wait until the jobs given up are reported."""
        for task in self._giving_up:
            try:
                await task
            except Exception as exc:  # reported as a warning: the lease ends them anyway
                _log.warning("jobs claimed ahead not ended: %s", exc)


def _retrieved(future: asyncio.Future[None]) -> None:
    """Mark a future's exception as seen (its caller may have stopped waiting)."""
    if not future.cancelled():
        future.exception()
