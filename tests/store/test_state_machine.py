"""Random sequences of store operations keep every rule of the status model.

A hypothesis state machine submits (held or not, across jobconfigs with different
limits), releases, cancels, aborts, acquires, runs, ends and expires jobs, and after
every step checks, from the database itself:

* the events of every job form a path of ``TRANSITIONS`` starting at WAITING or
  SEQUENCED, and end at the job's status;
* ended jobs never change, and a job's timestamps follow its history;
* no jobconfig has more ACTIVE jobs than ``max_concurrent`` (after the limit is lowered,
  nothing is promoted until it is back under), and none leaves a place free while one
  of its jobs waits SEQUENCED;
* each jobconfig's jobs enter QUEUED in seq order, and no job is queued ahead of an
  older one that still waits.

Each operation's outcome is also predicted from the status before the call: it must
succeed exactly when the model allows it.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, text

from jobyard.core.errors import Conflict
from jobyard.core.jobs import ABORTABLE, ACTIVE, CANCELLABLE, INITIAL, TERMINAL, TRANSITIONS
from jobyard.core.jobs import JobStatus as S
from jobyard.core.models import Job, JobConfigSpec
from jobyard.store.factory import open_store, upgrade_database
from jobyard.store.protocol import Store
from jobyard.store.sql.base import make_sync_engine, normalize_url
from tests.store.conftest import new_job
from tests.support.pg import PgCluster

T = TypeVar("T")
LIMITS = (1, 2, 0)  # max_concurrent of the three jobconfigs (0 = unlimited)
WORKERS = ("w1", "w2")
SETTINGS = {
    # Each PostgreSQL example costs a database reset and a connection pool: fewer there.
    "sqlite": settings(
        max_examples=50,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    ),
    "postgresql": settings(
        max_examples=15,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    ),
}


class StoreMachine(RuleBasedStateMachine):
    """Drives one store; ``fresh_url`` gives each example an empty migrated database."""

    fresh_url: Callable[[], str]

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.url = self.fresh_url()
        self.store: Store = self.run(open_store(self.url, migrate=False))
        self.db: Engine = make_sync_engine(normalize_url(self.url))
        self.jobconfigs: list[int | None] = [None]
        self.limits: dict[int, int] = {}
        self.job_ids: list[int] = []
        self.ended: dict[int, tuple[Any, ...]] = {}
        self.clock = datetime.now(UTC)
        self.queued_counts: dict[int, int] = defaultdict(int)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.store.close())
        self.db.dispose()
        self.loop.close()

    @initialize()
    def make_jobconfigs(self) -> None:
        for i, limit in enumerate(LIMITS):
            jc = self.run(
                self.store.jobconfig_insert(
                    JobConfigSpec(name=f"jc{i}", command=["true"], max_concurrent=limit)
                )
            )
            self.jobconfigs.append(jc.id)
            self.limits[jc.id] = limit

    # -- helpers -----------------------------------------------------------------------

    def status(self, job_id: int) -> S:
        return self.run(self.store.job_get(job_id)).status

    def attempt(self, job_id: int, allowed: bool, call: Coroutine[Any, Any, Job]) -> None:
        """Run a single-job transition whose success the model predicts."""
        try:
            job = self.run(call)
        except Conflict:
            assert not allowed, f"job {job_id}: refused although allowed"
            return
        assert allowed, f"job {job_id}: moved although not allowed (now {job.status})"

    # -- rules -------------------------------------------------------------------------

    @rule(which=st.integers(0, len(LIMITS)), hold=st.booleans(), priority=st.integers(0, 2))
    def submit(self, which: int, hold: bool, priority: int) -> None:
        jobconfig_id = self.jobconfigs[which]
        job = self.run(
            self.store.job_insert(
                new_job(jobconfig_id, hold=hold, priority=priority), actor="user:u", reason=None
            )
        )
        assert job.status in ((S.WAITING,) if hold else (S.SEQUENCED, S.QUEUED))
        self.job_ids.append(job.id)

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.job_ids))
        allowed = self.status(job_id) is S.WAITING
        self.attempt(job_id, allowed, self.store.job_release(job_id, actor="user:u"))

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.job_ids))
        allowed = self.status(job_id) in CANCELLABLE
        self.attempt(job_id, allowed, self.store.job_cancel(job_id, actor="user:u", reason="x"))

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data())
    def abort(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.job_ids))
        allowed = self.status(job_id) in ABORTABLE
        self.attempt(
            job_id, allowed, self.store.job_request_abort(job_id, actor="user:u", reason="stop")
        )

    @rule(worker=st.sampled_from(WORKERS), limit=st.integers(1, 3))
    def acquire(self, worker: str, limit: int) -> None:
        got = self.run(
            self.store.job_acquire(worker_id=worker, pool="default", limit=limit, lease_seconds=60)
        )
        assert len(got) <= limit
        assert all(j.status is S.INITIALIZING and j.worker_id == worker for j in got)
        keys = [(-j.priority, j.seq or 0) for j in got]
        assert keys == sorted(keys)

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data(), worker=st.sampled_from(WORKERS))
    def set_running(self, data: st.DataObject, worker: str) -> None:
        job_id = data.draw(st.sampled_from(self.job_ids))
        job = self.run(self.store.job_get(job_id))
        allowed = job.status is S.INITIALIZING and job.worker_id == worker
        self.attempt(job_id, allowed, self.store.job_set_running(job_id, worker_id=worker, pid=1))

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data(), end=st.sampled_from([S.FINISHED, S.ERROR, S.FAILED]))
    def finish(self, data: st.DataObject, end: S) -> None:
        job_id = data.draw(st.sampled_from(self.job_ids))
        job = self.run(self.store.job_get(job_id))
        allowed = end in TRANSITIONS[job.status]
        holder = job.worker_id or "nobody"
        self.attempt(
            job_id,
            allowed,
            self.store.job_end(
                job_id, worker_id=holder, status=end, exit_code=0, reason=None, actor="worker"
            ),
        )

    @rule(minutes=st.integers(0, 2))
    def expire_leases(self, minutes: int) -> None:
        """Time passes; leases (60 s) older than that expire and their jobs FAIL."""
        self.clock += timedelta(minutes=minutes)
        failed = self.run(self.store.jobs_fail_expired_leases(now=self.clock, reason="lost"))
        assert all(j.status is S.FAILED and j.status_reason == "lost" for j in failed)

    @rule(which=st.integers(0, len(LIMITS)))
    def promote_sweep(self, which: int) -> None:
        self.run(self.store.jobs_promote_sequenced(self.jobconfigs[which]))

    @precondition(lambda self: len(self.jobconfigs) > 1)
    @rule(which=st.integers(1, len(LIMITS)), limit=st.integers(0, 3))
    def change_limit(self, which: int, limit: int) -> None:
        jobconfig_id = self.jobconfigs[which]
        assert jobconfig_id is not None
        self.run(self.store.jobconfig_update(jobconfig_id, {"max_concurrent": limit}))
        self.limits[jobconfig_id] = limit

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def rules_hold(self) -> None:
        with self.db.connect() as conn:
            jobs = {row.id: row for row in conn.execute(text("SELECT * FROM jobs"))}
            events = conn.execute(text("SELECT id, job_id, status FROM job_events ORDER BY id"))
            paths: dict[int, list[S]] = defaultdict(list)
            queued_order: dict[int | None, list[int]] = defaultdict(list)
            for _, job_id, status in events:
                paths[job_id].append(S(status))
                if status == S.QUEUED:
                    queued_order[jobs[job_id].jobconfig_id].append(jobs[job_id].seq)

        assert set(paths) == set(jobs)
        for job_id, path in paths.items():
            assert path[0] in INITIAL, (job_id, path)
            for before, after in itertools.pairwise(path):
                assert after in TRANSITIONS[before], (job_id, path)
            assert path[-1] == S(jobs[job_id].status), (job_id, path)

        for job_id, row in jobs.items():
            times = [
                t
                for t in (
                    row.created_at,
                    row.sequenced_at,
                    row.queued_at,
                    row.acquired_at,
                    row.started_at,
                )
                if t is not None
            ]
            assert times == sorted(times), (job_id, times)
            if row.ended_at is not None:
                assert row.ended_at >= max(times), (job_id, row.ended_at, times)
            if job_id in self.ended:
                assert tuple(row) == self.ended[job_id], f"ended job {job_id} changed"
            elif S(row.status) in TERMINAL:
                self.ended[job_id] = tuple(row)

        for jobconfig_id, limit in self.limits.items():
            mine = [j for j in jobs.values() if j.jobconfig_id == jobconfig_id]
            active = sum(S(j.status) in ACTIVE for j in mine)
            waiting = [j.seq for j in mine if j.status == S.SEQUENCED]
            queued = queued_order[jobconfig_id]
            if limit and active > limit:
                # Only possible right after the limit was lowered: then nothing may be
                # promoted until the jobconfig is back under its limit.
                assert len(queued) == self.queued_counts[jobconfig_id], (jobconfig_id, active)
            self.queued_counts[jobconfig_id] = len(queued)
            assert not waiting or (limit and active >= limit), (jobconfig_id, "idle place")
            assert queued == sorted(queued), (jobconfig_id, queued)
            assert not waiting or not queued or min(waiting) > max(queued)


def _sqlite_urls(root: Path) -> Callable[[], str]:
    template = root / "template.db"
    upgrade_database(f"sqlite:///{template}")
    counter = iter(range(1_000_000))

    def fresh() -> str:
        target = root / f"sm{next(counter)}.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"

    return fresh


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def test_random_operations_keep_the_rules(engine: str, request: pytest.FixtureRequest) -> None:
    if engine == "sqlite":
        root = Path(tempfile.mkdtemp(prefix="jobyard-sm-"))
        request.addfinalizer(lambda: shutil.rmtree(root, ignore_errors=True))
        fresh = _sqlite_urls(root)
    else:
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        from jobyard.store.schema import metadata

        tables = [t.name for t in reversed(metadata.sorted_tables)]

        def fresh() -> str:
            return cluster.migrated_database(upgrade_database, tables)

    machine = type("Machine", (StoreMachine,), {"fresh_url": staticmethod(fresh)})
    run_state_machine_as_test(machine, settings=SETTINGS[engine])
