"""Job creation, transitions, events and their data, on both engines."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from jobyard.core.errors import Conflict, InvalidInput, NotFound
from jobyard.core.jobs import TERMINAL, JobStatus
from jobyard.core.models import JobConfigSpec
from jobyard.store.protocol import Store
from tests.store.conftest import force, make_jobconfig, new_job

S = JobStatus


async def _running(store: Store, worker: str = "w1") -> int:
    job = await store.job_insert(new_job(), actor="user:alice", reason=None)
    got = await store.job_acquire(worker_id=worker, pool="default", limit=1, lease_seconds=30)
    assert [j.id for j in got] == [job.id]
    await store.job_set_running(job.id, worker_id=worker, pid=42)
    return job.id


async def test_insert_adhoc_is_queued_at_once_with_events(store: Store) -> None:
    before = datetime.now(UTC)
    job = await store.job_insert(new_job(), actor="user:alice", reason="because")
    assert job.status is S.QUEUED
    assert job.seq is not None and job.seq >= 1
    assert job.jobconfig_id is None and job.command == ["true"] and job.macros == {"A": "1"}
    assert job.submitted_by == "alice" and job.trigger == "api" and job.pool == "default"
    assert job.created_at.tzinfo is UTC and before <= job.created_at
    assert job.sequenced_at is not None and job.queued_at is not None
    assert job.worker_id is None and job.ended_at is None
    events = await store.job_events(job.id)
    assert [(e.status, e.actor, e.reason) for e in events] == [
        (S.SEQUENCED, "user:alice", "because"),
        (S.QUEUED, "system", None),
    ]
    assert all(e.at.tzinfo is UTC and e.job_id == job.id for e in events)
    assert await store.job_get(job.id) == job


async def test_hold_then_release(store: Store) -> None:
    job = await store.job_insert(new_job(hold=True), actor="user:alice", reason=None)
    assert job.status is S.WAITING and job.seq is None and job.sequenced_at is None
    other = await store.job_insert(new_job(), actor="user:alice", reason=None)
    released = await store.job_release(job.id, actor="user:bob")
    assert released.status is S.QUEUED
    assert released.seq is not None and other.seq is not None and released.seq > other.seq
    events = await store.job_events(job.id)
    assert [(e.status, e.actor) for e in events] == [
        (S.WAITING, "user:alice"),
        (S.SEQUENCED, "user:bob"),
        (S.QUEUED, "system"),
    ]
    with pytest.raises(Conflict, match="QUEUED"):
        await store.job_release(job.id, actor="user:bob")


async def test_full_life_sets_every_timestamp(store: Store) -> None:
    job = await store.job_insert(new_job(), actor="user:alice", reason=None)
    [acq] = await store.job_acquire(worker_id="w1", pool="default", limit=3, lease_seconds=60)
    assert acq.status is S.INITIALIZING and acq.worker_id == "w1"
    assert acq.acquired_at is not None and acq.lease_expires_at is not None
    assert timedelta(seconds=59) < acq.lease_expires_at - acq.acquired_at <= timedelta(seconds=60)
    run = await store.job_set_running(job.id, worker_id="w1", pid=4321)
    assert run.status is S.RUNNING and run.pid == 4321 and run.started_at is not None
    end = await store.job_end(
        job.id, worker_id="w1", status=S.ERROR, exit_code=3, reason="exit 3", actor="worker:w1"
    )
    assert end.status is S.ERROR and end.exit_code == 3 and end.status_reason == "exit 3"
    assert end.ended_at is not None and end.ended_at >= run.started_at
    events = await store.job_events(job.id)
    assert [(e.status, e.actor) for e in events] == [
        (S.SEQUENCED, "user:alice"),
        (S.QUEUED, "system"),
        (S.INITIALIZING, "worker:w1"),
        (S.RUNNING, "worker:w1"),
        (S.ERROR, "worker:w1"),
    ]
    assert events[-1].reason == "exit 3"
    assert [e.at for e in events] == sorted(e.at for e in events)


async def test_holder_checks(store: Store) -> None:
    job = await store.job_insert(new_job(), actor="user:alice", reason=None)
    await store.job_acquire(worker_id="w1", pool="default", limit=1, lease_seconds=30)
    with pytest.raises(Conflict, match="w1") as err:
        await store.job_set_running(job.id, worker_id="w2", pid=None)
    assert err.value.details["status"] == "INITIALIZING"
    await store.job_set_running(job.id, worker_id="w1", pid=None)
    with pytest.raises(Conflict):
        await store.job_end(
            job.id, worker_id="w2", status=S.FINISHED, exit_code=0, reason=None, actor="worker:w2"
        )
    # No worker given: the server itself ends it (e.g. timeout sweep, abort bookkeeping).
    end = await store.job_end(
        job.id, worker_id=None, status=S.FAILED, exit_code=None, reason="timeout", actor="system"
    )
    assert end.status is S.FAILED and end.worker_id == "w1"


async def test_end_refuses_non_end_status(store: Store) -> None:
    job_id = await _running(store)
    with pytest.raises(InvalidInput):
        await store.job_end(
            job_id, worker_id="w1", status=S.QUEUED, exit_code=None, reason=None, actor="x"
        )


async def test_cancel_from_each_cancellable_status(store: Store, db: Engine) -> None:
    jc = await make_jobconfig(store, max_concurrent=1)
    waiting = await store.job_insert(new_job(jc.id, hold=True), actor="user:a", reason=None)
    queued = await store.job_insert(new_job(jc.id), actor="user:a", reason=None)
    sequenced = await store.job_insert(new_job(jc.id), actor="user:a", reason=None)
    assert (waiting.status, queued.status, sequenced.status) == (S.WAITING, S.QUEUED, S.SEQUENCED)
    for job in (waiting, sequenced, queued):
        cancelled = await store.job_cancel(job.id, actor="user:b", reason="no longer needed")
        assert cancelled.status is S.CANCELLED and cancelled.ended_at is not None
        assert cancelled.status_reason == "no longer needed"
        last = (await store.job_events(job.id))[-1]
        assert (last.status, last.actor, last.reason) == (S.CANCELLED, "user:b", "no longer needed")
    running = await _running(store)
    with pytest.raises(Conflict, match="RUNNING"):
        await store.job_cancel(running, actor="user:b", reason=None)


async def test_abort_request(store: Store) -> None:
    queued = await store.job_insert(new_job(pool="other"), actor="user:a", reason=None)
    with pytest.raises(Conflict, match="QUEUED"):
        await store.job_request_abort(queued.id, actor="user:b", reason=None)
    job_id = await _running(store)
    first = await store.job_request_abort(job_id, actor="user:b", reason="stopped by user:b")
    assert first.status is S.RUNNING and first.abort_requested_at is not None
    assert first.status_reason == "stopped by user:b"
    again = await store.job_request_abort(job_id, actor="user:c", reason=None)
    assert again.abort_requested_at == first.abort_requested_at
    assert await store.leases_renew(worker_id="w1", job_ids=[job_id], lease_seconds=5) == {
        job_id: True
    }
    # The status history is untouched: aborting is the worker's move to FAILED.
    assert (await store.job_events(job_id))[-1].status is S.RUNNING


async def test_terminal_statuses_never_change(store: Store, db: Engine) -> None:
    for terminal in sorted(TERMINAL):
        job = await store.job_insert(new_job(hold=True), actor="user:a", reason=None)
        force(db, job.id, terminal, worker_id="w1", seq=10_000 + job.id)
        attempts = [
            store.job_release(job.id, actor="x"),
            store.job_cancel(job.id, actor="x", reason=None),
            store.job_set_running(job.id, worker_id="w1", pid=None),
            store.job_request_abort(job.id, actor="x", reason=None),
            *(
                store.job_end(job.id, worker_id="w1", status=s, exit_code=0, reason=None, actor="x")
                for s in (S.FINISHED, S.ERROR, S.FAILED)
            ),
        ]
        for attempt in attempts:
            with pytest.raises(Conflict):
                await attempt
        assert (
            await store.job_acquire(worker_id="w1", pool="default", limit=9, lease_seconds=1) == []
        )
        assert await store.jobs_promote_sequenced(None) == []
        far = datetime.now(UTC) + timedelta(days=1)
        assert await store.jobs_fail_expired_leases(now=far, reason="lost") == []
        assert (await store.job_get(job.id)).status is terminal


async def test_unknown_ids_are_not_found(store: Store) -> None:
    calls = [
        store.job_get(999),
        store.job_events(999),
        store.job_release(999, actor="x"),
        store.job_cancel(999, actor="x", reason=None),
        store.job_set_running(999, worker_id="w", pid=None),
        store.job_end(999, worker_id=None, status=S.FAILED, exit_code=None, reason=None, actor="x"),
        store.job_request_abort(999, actor="x", reason=None),
        store.job_files_list(999, "payload"),
        store.jobconfig_get(999),
        store.jobconfig_update(999, {"description": "x"}),
        store.jobconfig_delete(999),
        store.jobs_promote_sequenced(999),
        store.package_get(999),
    ]
    for call in calls:
        with pytest.raises(NotFound, match="999"):
            await call
    with pytest.raises(NotFound, match="jobconfig 999 does not exist"):
        await store.job_insert(new_job(999), actor="x", reason=None)
    with pytest.raises(NotFound, match="package 12 does not exist"):
        await store.job_insert(replace(new_job(), package_id=12), actor="x", reason=None)


async def test_acquire_order_limit_and_pool(store: Store) -> None:
    low = await store.job_insert(new_job(priority=0), actor="a", reason=None)
    other_pool = await store.job_insert(new_job(pool="gpu", priority=9), actor="a", reason=None)
    high = await store.job_insert(new_job(priority=5), actor="a", reason=None)
    low2 = await store.job_insert(new_job(priority=0), actor="a", reason=None)
    assert await store.job_acquire(worker_id="w", pool="default", limit=0, lease_seconds=1) == []
    first = await store.job_acquire(worker_id="w", pool="default", limit=2, lease_seconds=30)
    assert [j.id for j in first] == [high.id, low.id]
    rest = await store.job_acquire(worker_id="w", pool="default", limit=10, lease_seconds=30)
    assert [j.id for j in rest] == [low2.id]
    gpu = await store.job_acquire(worker_id="g", pool="gpu", limit=10, lease_seconds=30)
    assert [j.id for j in gpu] == [other_pool.id]
    for job in (*first, *rest):
        events = await store.job_events(job.id)
        assert [e.status for e in events].count(S.INITIALIZING) == 1
        assert events[-1].actor == "worker:w"


async def test_leases_renew_and_expiry(store: Store) -> None:
    jc = await make_jobconfig(store, max_concurrent=1)
    mine = await store.job_insert(new_job(jc.id), actor="a", reason=None)
    nxt = await store.job_insert(new_job(jc.id), actor="a", reason=None)
    theirs = await store.job_insert(new_job(), actor="a", reason=None)
    assert nxt.status is S.SEQUENCED
    await store.job_acquire(worker_id="w1", pool="default", limit=1, lease_seconds=10)
    await store.job_acquire(worker_id="w2", pool="default", limit=1, lease_seconds=10)
    renewed = await store.leases_renew(
        worker_id="w1", job_ids=[mine.id, theirs.id, 12345], lease_seconds=100
    )
    assert renewed == {mine.id: False}
    assert await store.leases_renew(worker_id="w1", job_ids=[], lease_seconds=1) == {}
    held = await store.jobs_held_by_workers(["w1", "w2", "w9"])
    assert [(j.id, j.worker_id) for j in held] == [(mine.id, "w1"), (theirs.id, "w2")]
    assert await store.jobs_held_by_workers([]) == []

    now = datetime.now(UTC)
    # Only w2's lease (10 s) has expired 50 s from now; w1's was renewed to 100 s.
    failed = await store.jobs_fail_expired_leases(now=now + timedelta(seconds=50), reason="lost")
    assert [j.id for j in failed] == [theirs.id]
    failed = await store.jobs_fail_expired_leases(now=now + timedelta(seconds=200), reason="lost")
    assert [(j.id, j.status, j.status_reason) for j in failed] == [(mine.id, S.FAILED, "lost")]
    last = (await store.job_events(mine.id))[-1]
    assert (last.status, last.actor, last.reason) == (S.FAILED, "system", "lost")
    # The slot it freed went to the next job of the jobconfig in the same transaction.
    assert (await store.job_get(nxt.id)).status is S.QUEUED
    assert await store.leases_renew(worker_id="w1", job_ids=[mine.id], lease_seconds=5) == {}
    assert await store.jobs_held_by_workers(["w1", "w2"]) == []


async def test_naive_datetimes_are_refused(store: Store) -> None:
    from jobyard.core.models import JobFilter

    with pytest.raises(InvalidInput):
        await store.jobs_list(JobFilter(created_after=datetime(2020, 1, 1)), cursor=None, limit=10)


async def test_job_submit_for_jobconfig_snapshots_and_checks(store: Store) -> None:
    jc = await store.jobconfig_insert(
        JobConfigSpec(name="snap", command=["echo", "a"], timeout=7, success_exit_codes=[0, 3],
                      pool="p1", max_concurrent=0)
    )  # fmt: skip
    job = await store.job_submit_for_jobconfig(
        jc.id, macros={"X": "1"}, hold=False, trigger="api", submitted_by="alice",
        actor="user:alice", reason="submitted",
    )  # fmt: skip
    assert (job.jobconfig_id, job.command, job.timeout, job.pool) == (jc.id, ["echo", "a"], 7, "p1")
    assert job.success_exit_codes == [0, 3] and job.macros == {"X": "1"}
    assert job.status is JobStatus.QUEUED
    held = await store.job_submit_for_jobconfig(
        jc.id, macros={}, hold=True, trigger="api", submitted_by="alice",
        actor="user:alice", reason=None,
    )  # fmt: skip
    assert held.status is JobStatus.WAITING
    await store.jobconfig_update(jc.id, {"enabled": False})
    with pytest.raises(Conflict, match="disabled"):
        await store.job_submit_for_jobconfig(
            jc.id, macros={}, hold=False, trigger="api", submitted_by=None, actor="a", reason=None
        )
    with pytest.raises(NotFound, match="jobconfig 9999"):
        await store.job_submit_for_jobconfig(
            9999, macros={}, hold=False, trigger="api", submitted_by=None, actor="a", reason=None
        )
