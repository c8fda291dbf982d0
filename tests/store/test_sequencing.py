"""Sequencing: SEQUENCED -> QUEUED strictly in seq order, within ``max_concurrent``."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from jobyard.core.errors import NotFound
from jobyard.core.jobs import ACTIVE, JobStatus
from jobyard.core.models import Job
from jobyard.store.protocol import Store
from tests.store.conftest import force, make_jobconfig, new_job

S = JobStatus


async def _submit(store: Store, jobconfig_id: int | None, n: int) -> list[Job]:
    return [
        await store.job_insert(new_job(jobconfig_id), actor="user:a", reason=None) for _ in range(n)
    ]


async def _statuses(store: Store, jobs: list[Job]) -> list[JobStatus]:
    return [(await store.job_get(j.id)).status for j in jobs]


async def _finish(store: Store, job_id: int, worker: str = "w") -> None:
    await store.job_set_running(job_id, worker_id=worker, pid=None)
    await store.job_end(
        job_id, worker_id=worker, status=S.FINISHED, exit_code=0, reason=None, actor="worker"
    )


async def test_default_limit_runs_one_at_a_time_in_order(store: Store) -> None:
    jc = await make_jobconfig(store)
    jobs = await _submit(store, jc.id, 3)
    assert [j.status for j in jobs] == [S.QUEUED, S.SEQUENCED, S.SEQUENCED]
    assert [j.seq for j in jobs] == sorted(j.seq for j in jobs)  # type: ignore[type-var]
    for i, job in enumerate(jobs):
        [got] = await store.job_acquire(worker_id="w", pool="default", limit=5, lease_seconds=30)
        assert got.id == job.id
        assert (
            await store.job_acquire(worker_id="w", pool="default", limit=5, lease_seconds=30) == []
        )
        await _finish(store, job.id)
        expected = [S.FINISHED] * (i + 1) + [S.QUEUED] + [S.SEQUENCED] * (len(jobs) - i - 2)
        assert await _statuses(store, jobs) == expected[: len(jobs)]
    assert await store.jobconfigs_with_sequenced() == []


async def test_limit_two_and_unlimited(store: Store) -> None:
    two = await make_jobconfig(store, "two", max_concurrent=2)
    unlimited = await make_jobconfig(store, "unlimited", max_concurrent=0)
    jobs_two = await _submit(store, two.id, 4)
    jobs_many = await _submit(store, unlimited.id, 5)
    assert [j.status for j in jobs_two] == [S.QUEUED, S.QUEUED, S.SEQUENCED, S.SEQUENCED]
    assert all(j.status is S.QUEUED for j in jobs_many)
    assert await store.jobconfigs_with_sequenced() == [two.id]
    # A cancelled QUEUED job frees its place for the oldest SEQUENCED one.
    await store.job_cancel(jobs_two[1].id, actor="user:a", reason=None)
    assert await _statuses(store, jobs_two) == [S.QUEUED, S.CANCELLED, S.QUEUED, S.SEQUENCED]


async def test_raising_the_limit_promotes_in_order(store: Store) -> None:
    jc = await make_jobconfig(store, max_concurrent=1)
    jobs = await _submit(store, jc.id, 5)
    updated = await store.jobconfig_update(jc.id, {"max_concurrent": 3})
    assert updated.max_concurrent == 3
    assert await _statuses(store, jobs) == [S.QUEUED] * 3 + [S.SEQUENCED] * 2
    # Lowering does not touch jobs already queued; it only holds back the next ones.
    await store.jobconfig_update(jc.id, {"max_concurrent": 1})
    assert await _statuses(store, jobs) == [S.QUEUED] * 3 + [S.SEQUENCED] * 2
    await store.job_cancel(jobs[0].id, actor="user:a", reason=None)
    assert await _statuses(store, jobs) == [S.CANCELLED] + [S.QUEUED] * 2 + [S.SEQUENCED] * 2
    await store.jobconfig_update(jc.id, {"max_concurrent": 0})
    assert await _statuses(store, jobs) == [S.CANCELLED] + [S.QUEUED] * 4
    # Promotions are recorded, by the system, in seq order.
    queued_events = [(await store.job_events(j.id))[-1] for j in jobs[3:]]
    assert [(e.status, e.actor) for e in queued_events] == [(S.QUEUED, "system")] * 2


async def test_cancelling_a_sequenced_job_keeps_the_order(store: Store) -> None:
    jc = await make_jobconfig(store, max_concurrent=1)
    jobs = await _submit(store, jc.id, 4)
    await store.job_cancel(jobs[1].id, actor="user:a", reason=None)
    assert await _statuses(store, jobs) == [S.QUEUED, S.CANCELLED, S.SEQUENCED, S.SEQUENCED]
    await store.job_cancel(jobs[0].id, actor="user:a", reason=None)
    assert await _statuses(store, jobs) == [S.CANCELLED, S.CANCELLED, S.QUEUED, S.SEQUENCED]


async def test_released_job_goes_behind_the_queue(store: Store) -> None:
    jc = await make_jobconfig(store, max_concurrent=1)
    held = await store.job_insert(new_job(jc.id, hold=True), actor="user:a", reason=None)
    jobs = await _submit(store, jc.id, 2)
    released = await store.job_release(held.id, actor="user:a")
    assert released.status is S.SEQUENCED
    assert released.seq is not None and released.seq > max(j.seq or 0 for j in jobs)
    await store.job_cancel(jobs[0].id, actor="user:a", reason=None)
    await store.job_cancel(jobs[1].id, actor="user:a", reason=None)
    assert (await store.job_get(held.id)).status is S.QUEUED


async def test_ending_each_way_promotes(store: Store) -> None:
    jc = await make_jobconfig(store, max_concurrent=1)
    jobs = await _submit(store, jc.id, 4)
    for status, job in zip((S.FINISHED, S.ERROR, S.FAILED), jobs, strict=False):
        await store.job_acquire(worker_id="w", pool="default", limit=1, lease_seconds=30)
        await store.job_set_running(job.id, worker_id="w", pid=None)
        await store.job_end(
            job.id, worker_id="w", status=status, exit_code=1, reason=None, actor="worker:w"
        )
    assert await _statuses(store, jobs) == [S.FINISHED, S.ERROR, S.FAILED, S.QUEUED]


async def test_promote_sweep_respects_the_limit(store: Store, db: Engine) -> None:
    """The maintenance sweep repairs jobs left SEQUENCED, never exceeding the limit."""
    jc = await make_jobconfig(store, max_concurrent=2)
    jobs = await _submit(store, jc.id, 2)
    adhoc = await _submit(store, None, 2)
    # Arrange SEQUENCED jobs that nobody promoted (as after a crash).
    for job in (*jobs, *adhoc):
        force(db, job.id, S.SEQUENCED)
    more = await store.job_insert(new_job(jc.id, hold=True), actor="user:a", reason=None)
    force(db, more.id, S.SEQUENCED, seq=10_000)
    assert await store.jobconfigs_with_sequenced() == [None, jc.id]
    assert sorted(await store.jobs_promote_sequenced(jc.id)) == [j.id for j in jobs]
    assert await store.jobs_promote_sequenced(jc.id) == []
    assert sorted(await store.jobs_promote_sequenced(None)) == [j.id for j in adhoc]
    assert await store.jobconfigs_with_sequenced() == [jc.id]
    with pytest.raises(NotFound, match="jobconfig 4242"):
        await store.jobs_promote_sequenced(4242)


async def test_never_more_active_than_the_limit(store: Store) -> None:
    jc = await make_jobconfig(store, max_concurrent=3)
    jobs = await _submit(store, jc.id, 12)
    for _ in range(12):
        got = await store.job_acquire(worker_id="w", pool="default", limit=2, lease_seconds=30)
        active = [j for j in jobs if (await store.job_get(j.id)).status in ACTIVE]
        assert len(active) <= 3
        for job in got:
            await _finish(store, job.id)
    assert set(await _statuses(store, jobs)) == {S.FINISHED}
