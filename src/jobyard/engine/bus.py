"""In-process notifications between the API, the service layer and local workers.

Wake-ups only: the database stays the source of truth, so every waiter also re-reads
the store after a bounded timeout. That keeps several servers correct (they simply
learn a little later) while one-process installs react within a millisecond.

Servers sharing a PostgreSQL database also tell each other: a :class:`Relay` attached
with :meth:`Bus.relay_to` hears every event raised here (``jobyard.engine.relay`` sends
them as notifications), and events heard from other servers come back through
:meth:`Bus.apply_remote`, which acts here only and relays nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Protocol

#: Seconds between telling the first worker process about new work and the others.
WAKE_STAGGER = 0.002


class Relay(Protocol):
    """Where a server's own events go to reach the other servers of its database."""

    def work(self) -> None:
        """Work may have been queued."""

    def job(self, job_id: int) -> None:
        """``job_id`` changed (ended, released, cancelled...)."""

    def abort(self, job_id: int, reason: str) -> None:
        """An abort of ``job_id`` was requested."""

    def schedules(self) -> None:
        """A schedule was created, changed or deleted."""


class Bus:
    """Events for queued work, job changes and abort requests."""

    def __init__(self) -> None:
        #: Other servers' ears (None on SQLite and while nothing is attached).
        self._relay: Relay | None = None
        self._work = asyncio.Event()
        #: The pending wake-up came first-hand (see :meth:`work_available`).
        self._work_fresh = False
        self._job_waiters: dict[int, list[asyncio.Event]] = {}
        self._abort_handlers: list[Callable[[int, str], bool]] = []
        self._work_listeners: list[Callable[[bool], None]] = []
        self._work_turn = 0
        self._work_delayed: set[int] = set()
        self._schedules = asyncio.Event()
        #: Set (and dropped) on the next change of any job; None while nobody waits.
        self._any_job: asyncio.Event | None = None

    # -- work available --------------------------------------------------------
    def work_available(self, fresh: bool = True) -> None:
        """Tell idle workers that a job may have been queued.

        Listeners (worker processes) are told in turn: one at once (``fresh``), the
        others :data:`WAKE_STAGGER` later (not fresh), the first one changing each time.
        Idle processes all wake on a submit but only one gets the job; the others, woken
        a moment after it claimed it, find nothing queued without queueing for the
        database's write lock behind its claim. One whose slots are all busy makes the
        job wait that moment. A fresh wake-up lets the waiter claim without looking first.
        """
        if self._relay is not None:
            self._relay.work()
        self._wake_work(fresh)

    def _wake_work(self, fresh: bool) -> None:
        self._work.set()
        self._work_fresh = self._work_fresh or fresh
        self._any_job_changed()
        listeners = self._work_listeners
        if not listeners:
            return
        first = self._work_turn % len(listeners)
        self._work_turn += 1
        listeners[first](True)
        if len(listeners) == 1:
            return
        loop = asyncio.get_running_loop()
        for index, listener in enumerate(listeners):
            if index != first and index not in self._work_delayed:
                self._work_delayed.add(index)
                loop.call_later(WAKE_STAGGER, self._wake_later, index, listener)

    def _wake_later(self, index: int, listener: Callable[[bool], None]) -> None:
        self._work_delayed.discard(index)
        listener(False)

    def on_work(self, listener: Callable[[bool], None]) -> None:
        """Also call ``listener(fresh)`` on :meth:`work_available` (worker processes)."""
        self._work_listeners.append(listener)

    async def wait_for_work(self, timeout: float) -> bool:
        """Return on the next :meth:`work_available` or after ``timeout`` seconds.

        True when woken by a fresh :meth:`work_available`: a job was most likely just
        queued for this waiter to claim.
        """
        if not self._work.is_set():
            try:
                await asyncio.wait_for(self._work.wait(), timeout)
            except TimeoutError:
                return False
        self._work.clear()
        fresh, self._work_fresh = self._work_fresh, False
        return fresh

    # -- schedules -------------------------------------------------------------
    def schedules_changed(self) -> None:
        """Tell the scheduler that a schedule was created, changed or deleted."""
        if self._relay is not None:
            self._relay.schedules()
        self._schedules.set()

    async def wait_schedules_changed(self, timeout: float) -> bool:
        """Return True on :meth:`schedules_changed`, False after ``timeout`` seconds."""
        if not self._schedules.is_set():
            try:
                await asyncio.wait_for(self._schedules.wait(), max(timeout, 0.0))
            except TimeoutError:
                return False
        self._schedules.clear()
        return True

    # -- job changes -----------------------------------------------------------
    def job_changed(self, job_id: int) -> None:
        """Wake everyone waiting on ``job_id`` (status change, new log lines)."""
        if self._relay is not None:
            self._relay.job(job_id)
        self._wake_job(job_id)

    def job_ended_by_worker(self, job_id: int) -> None:
        """A worker process of this server ended ``job_id``: wake its waiters here, and
        tell the other servers that work may have been queued too (the end may have
        promoted the next job of its jobconfig; that process's own slots know already)."""
        if self._relay is not None:
            self._relay.work()
        self.job_changed(job_id)

    def _wake_job(self, job_id: int) -> None:
        for event in self._job_waiters.pop(job_id, ()):
            event.set()
        self._any_job_changed()

    def _any_job_changed(self) -> None:
        if self._any_job is not None:
            self._any_job.set()
            self._any_job = None

    async def wait_any_job(self, timeout: float) -> bool:
        """Return True on the next submission or job change, False after ``timeout``.

        For live job lists (the console): one wake-up for all of them instead of a
        database read per list and tick. Not every transition is announced (a job
        becoming RUNNING is not, nor changes made by another server), so a waiter also
        re-reads after ``timeout``. Costs one attribute test per change while nobody waits.
        """
        if self._any_job is None:
            self._any_job = asyncio.Event()
        event = self._any_job
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def wait_job(self, job_id: int, timeout: float) -> bool:
        """Return True when ``job_id`` changes, False after ``timeout`` seconds."""
        event = asyncio.Event()
        self._job_waiters.setdefault(job_id, []).append(event)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            waiters = self._job_waiters.get(job_id)
            if waiters and event in waiters:
                waiters.remove(event)
                if not waiters:
                    del self._job_waiters[job_id]
            return False
        return True

    # -- aborts ------------------------------------------------------------------
    def on_abort(self, handler: Callable[[int, str], bool]) -> None:
        """Register a local worker pool's abort hook (returns True if it held the job)."""
        self._abort_handlers.append(handler)

    def request_abort(self, job_id: int, reason: str) -> bool:
        """Ask local workers to stop ``job_id`` now; False if none of them holds it.

        Other servers are told too: a worker of theirs may hold the job."""
        if self._relay is not None:
            self._relay.abort(job_id, reason)
        return self._abort_here(job_id, reason)

    def _abort_here(self, job_id: int, reason: str) -> bool:
        # Every handler is told (not any(...) of a generator, which stops at the first
        # True): a worker process answers True when it was *sent* the request, whether
        # or not it holds the job, and the one holding it may come later.
        held = [handler(job_id, reason) for handler in self._abort_handlers]
        return any(held)

    # -- other servers -----------------------------------------------------------
    def relay_to(self, relay: Relay | None) -> None:
        """Send this server's events to ``relay`` too (None: stop)."""
        self._relay = relay

    def apply_remote(
        self,
        *,
        work: bool = False,
        jobs: Iterable[int] = (),
        aborts: Iterable[tuple[int, str]] = (),
        schedules: bool = False,
    ) -> None:
        """Act on events another server raised: wake here, relay nothing."""
        for job_id, reason in aborts:
            self._abort_here(job_id, reason)
        for job_id in jobs:
            self._wake_job(job_id)
        if work:
            self._wake_work(True)
        if schedules:
            self._schedules.set()

    def wake_everyone(self) -> None:
        """Wake every waiter once (events of other servers may have been missed)."""
        for job_id in list(self._job_waiters):
            self._wake_job(job_id)
        self._any_job_changed()
        self._wake_work(False)
        self._schedules.set()
