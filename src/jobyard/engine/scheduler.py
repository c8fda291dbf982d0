"""The scheduler loop: sleep until the next fire time, fire due schedules, repeat.

Every server runs it. The store makes firing exactly-once (a firing is one transaction
that claims the due row, creates the job and stores the next fire time; on PostgreSQL
replicas skip rows another replica holds), so no leader is needed and a replica taking
over after another dies loses no time.

Between fire times the loop precomputes (``warm``) the fire time after the next one for
schedules due soon, so the firing transaction itself does no cron arithmetic. Idle, it
wakes on schedule changes made through this server, or every ``poll_seconds`` to see
changes made through other replicas.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

from jobyard.core.errors import DatabaseUnavailable
from jobyard.core.schedules import FiringPlanner, FiringRound
from jobyard.core.timeutil import utcnow
from jobyard.engine.bus import Bus
from jobyard.settings import SchedulerSettings
from jobyard.store.protocol import Store

log = logging.getLogger("jobyard.scheduler")

#: How far ahead fire times are precomputed.
WARM_HORIZON = timedelta(seconds=90)
#: Schedules read per warming query (the loop yields between chunks).
WARM_CHUNK = 500
#: After schedule changes, re-warm everything at most this often (bulk creation through
#: the API or `jobyard apply` must not re-read every schedule per request).
REWARM_SECONDS = 2.0


class Scheduler:
    """Fires the schedules of every jobconfig; one per server."""

    def __init__(self, store: Store, bus: Bus, settings: SchedulerSettings) -> None:
        self.store = store
        self.bus = bus
        self.settings = settings
        self.planner = FiringPlanner(timedelta(seconds=settings.misfire_grace_seconds))
        self._warmed_until: datetime | None = None
        self._changed = False  # schedules changed since the last full warm
        self._full_warm_at = 0.0  # time.monotonic() of the last full warm
        #: Totals since start (exposed for health and benchmarks).
        self.fired_jobs = 0
        self.rounds = 0

    async def run(self) -> None:
        """Loop until cancelled; errors are logged and retried after a pause."""
        while True:
            try:
                if await self.fire_due():
                    # Handled schedules moved to fire times inside the warmed window.
                    self._warmed_until = None
                await self.warm()
                delay = await self._delay()
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable:  # the store logs the outage once
                delay = 1.0
            except Exception:
                log.exception("scheduler round failed; retrying in 1 s")
                delay = 1.0
            if await self.bus.wait_schedules_changed(delay):
                self._changed = True  # changed schedules: warm them again (debounced)

    async def fire_due(self) -> int:
        """Fire every due schedule, in transactions of ``batch_size``.

        Returns how many schedules it handled (fired, caught up, skipped or found disabled).
        """
        total = 0
        handled = 0
        started = time.perf_counter()
        lateness: list[float] = []
        while True:
            fired: FiringRound = await self.store.schedules_fire_due(
                limit=self.settings.batch_size, planner=self.planner
            )
            if fired.queued:
                self.bus.work_available()
            total += fired.jobs
            handled += fired.schedules
            if fired.missed:
                log.warning(
                    "%d schedule(s) had missed firings (server down or overloaded): caught up "
                    "or skipped by their misfire policy; see each schedule's last_result",
                    fired.missed,
                )
            if fired.lateness:
                committed = (utcnow() - fired.started_at).total_seconds()
                lateness.extend(x + committed for x in fired.lateness)
            if fired.schedules < self.settings.batch_size:
                break
            await asyncio.sleep(0)  # let the API breathe between batches
        if total:
            self.fired_jobs += total
            self.rounds += 1
        if lateness:
            lateness.sort()
            log.info(
                "fired %d job(s) in %.0f ms; on-time firings: lateness to commit p50 %.3f s, "
                "max %.3f s",
                total,
                (time.perf_counter() - started) * 1000,
                lateness[len(lateness) // 2],
                lateness[-1],
            )
        return handled

    async def warm(self) -> None:
        """Precompute following fire times of schedules due within the horizon."""
        if self._changed and time.monotonic() - self._full_warm_at >= REWARM_SECONDS:
            self._changed = False
            self._warmed_until = None
        if self._warmed_until is None:
            self._full_warm_at = time.monotonic()
        until = utcnow() + WARM_HORIZON
        after = self._warmed_until
        after_id: int | None = None
        while True:
            due = await self.store.schedules_due_between(
                after, until, limit=WARM_CHUNK, after_id=after_id
            )
            self.planner.warm(due)
            if len(due) < WARM_CHUNK:
                break
            after, after_id = due[-1].next_fire_at, due[-1].id
            await asyncio.sleep(0)  # let the API breathe between chunks
        self._warmed_until = until
        self.planner.forget_before(utcnow() - 2 * self.planner.grace)

    async def _delay(self) -> float:
        """Seconds until the next fire time, at most ``poll_seconds``."""
        poll = self.settings.poll_seconds
        if self._changed:
            poll = min(poll, REWARM_SECONDS)
        nxt = await self.store.schedules_next_due()
        if nxt is None:
            return poll
        # A millisecond past the fire time, so the firing transaction's clock sees it due.
        return min(poll, max(0.0, (nxt - utcnow()).total_seconds() + 0.001))
