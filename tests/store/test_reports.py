"""A worker's reports batches: RUNNING and end reports, their guards and promotions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from jobyard.core.claims import ClaimRequest, EndReport, RunningReport
from jobyard.core.jobs import TRANSITIONS, JobStatus
from jobyard.store.protocol import Store
from tests.store.conftest import force, make_jobconfig, new_job
from tests.store.test_claims import WORKER, _claim, _hashes

S = JobStatus


async def test_running_and_end_in_one_report_and_the_promotion(store: Store) -> None:
    jc = await make_jobconfig(store, max_concurrent=1)
    first = await store.job_insert(new_job(jc.id), actor="t", reason=None)
    second = await store.job_insert(new_job(jc.id), actor="t", reason=None)
    assert (await store.job_get(second.id)).status is S.SEQUENCED
    [claim] = await _claim(store)
    started = datetime.now(UTC) - timedelta(milliseconds=3)
    record = {"A": {"level": "job", "secure": False, "value": "1"}}

    answer = await store.jobs_report(
        worker_id=WORKER,
        running=[RunningReport(first.id, 4242, started, record)],
        ended=[EndReport(first.id, S.FINISHED, 0, None, f"worker:{WORKER}")],
        claim=ClaimRequest("default", 2, 60, _hashes(2, "c")),
    )
    outcomes = answer.outcomes

    assert [(o.job_id, o.moved) for o in outcomes] == [(first.id, True), (first.id, True)]
    assert claim.job.id == first.id
    done = await store.job_get(first.id)
    assert (done.status, done.pid, done.exit_code, done.resolved_macros) == (
        S.FINISHED, 4242, 0, record,
    )  # fmt: skip
    assert done.started_at == started
    events = await store.job_events(first.id)
    assert [e.status for e in events][-3:] == [S.INITIALIZING, S.RUNNING, S.FINISHED]
    assert events[-2].at == started
    # The end promoted the next job, and the claim of the same transaction took it.
    assert [c.job.id for c in answer.claims] == [second.id]
    assert (await store.job_get(second.id)).status is S.INITIALIZING
    assert [e.status for e in await store.job_events(second.id)] == [
        S.SEQUENCED, S.QUEUED, S.INITIALIZING,
    ]  # fmt: skip


async def test_a_batch_of_many_jobs_moves_each_held_one_and_refuses_the_rest(
    store: Store, db: Engine
) -> None:
    """Reports of many jobs in one batch (written one statement per kind of move on
    PostgreSQL): each job held by the worker moves with its own values and events, in the
    order of the reports; a job lost meanwhile is refused on its own."""
    jc = await make_jobconfig(store, max_concurrent=0)
    jobs_ = [await store.job_insert(new_job(jc.id), actor="t", reason=None) for _ in range(7)]
    claims = await _claim(store, limit=7)
    assert sorted(c.job.id for c in claims) == [j.id for j in jobs_]
    a, b, c, d, e, f, lost = (j.id for j in jobs_)
    force(db, lost, S.FAILED, worker_id=WORKER, status_reason="worker lost")
    now = datetime.now(UTC)
    record = {"X": {"level": "job", "secure": False, "value": "x"}}
    answer = await store.jobs_report(
        worker_id=WORKER,
        running=[
            RunningReport(c, 303, now - timedelta(milliseconds=3)),  # with its end
            RunningReport(a, 101, now - timedelta(milliseconds=1), record),  # with its end
            RunningReport(d, 404, now - timedelta(milliseconds=4)),  # RUNNING only
            RunningReport(lost, 999, now),  # refused
            RunningReport(b, 202, now - timedelta(milliseconds=2), record),  # RUNNING only
        ],
        ended=[
            EndReport(a, S.FINISHED, 0, None, f"worker:{WORKER}"),
            EndReport(c, S.ERROR, 3, "exit code 3", f"worker:{WORKER}"),
            EndReport(lost, S.FINISHED, 0, None, f"worker:{WORKER}"),  # refused
            EndReport(e, S.FAILED, None, "could not start", f"worker:{WORKER}"),
            EndReport(f, S.FAILED, None, "could not start", f"worker:{WORKER}"),
        ],
    )
    assert [(o.job_id, o.moved) for o in answer.outcomes] == [
        (c, True), (a, True), (d, True), (lost, False), (b, True),
        (a, True), (c, True), (lost, False), (e, True), (f, True),
    ]  # fmt: skip
    assert "FAILED" in (answer.outcomes[3].error or "")
    expected = {
        a: (S.FINISHED, 101, 0, record, None),
        b: (S.RUNNING, 202, None, record, None),
        c: (S.ERROR, 303, 3, None, "exit code 3"),
        d: (S.RUNNING, 404, None, None, None),
        e: (S.FAILED, None, None, None, "could not start"),
        f: (S.FAILED, None, None, None, "could not start"),
        lost: (S.FAILED, None, None, None, "worker lost"),
    }
    for job_id, fields in expected.items():
        job = await store.job_get(job_id)
        assert (job.status, job.pid, job.exit_code, job.resolved_macros, job.status_reason) == (
            fields
        ), job_id
    ran = {a: 1, b: 2, c: 3, d: 4}
    for job_id, ms in ran.items():
        assert (await store.job_get(job_id)).started_at == now - timedelta(milliseconds=ms)
    trails = {j: [(ev.status, ev.actor) for ev in await store.job_events(j)] for j in expected}
    worker = f"worker:{WORKER}"
    assert trails[a][-3:] == [(S.INITIALIZING, worker), (S.RUNNING, worker), (S.FINISHED, worker)]
    assert trails[c][-2:] == [(S.RUNNING, worker), (S.ERROR, worker)]
    assert trails[b][-2:] == [(S.INITIALIZING, worker), (S.RUNNING, worker)]
    assert trails[e][-2:] == [(S.INITIALIZING, worker), (S.FAILED, worker)]
    assert trails[lost][-1] == (S.INITIALIZING, worker)  # nothing recorded for the refusal


async def test_a_repeated_running_report_counts_once(store: Store) -> None:
    job = await store.job_insert(new_job(), actor="t", reason=None)
    await _claim(store)
    report = RunningReport(job.id, 77, datetime.now(UTC))
    assert (await store.jobs_report(worker_id=WORKER, running=[report])).outcomes[0].moved
    again = (await store.jobs_report(worker_id=WORKER, running=[report])).outcomes
    assert again[0].moved, "the same worker and pid: an earlier attempt of this report"
    other_pid = await store.jobs_report(
        worker_id=WORKER, running=[RunningReport(job.id, 78, datetime.now(UTC))]
    )
    assert not other_pid.outcomes[0].moved
    assert [e.status for e in await store.job_events(job.id)].count(S.RUNNING) == 1


REPORTS = [(status, kind) for status in JobStatus for kind in ("running", "end")]


@pytest.mark.parametrize(("src", "kind"), REPORTS, ids=[f"{s}-{k}" for s, k in REPORTS])
async def test_report_guards(store: Store, db: Engine, src: JobStatus, kind: str) -> None:
    jc = await make_jobconfig(store, max_concurrent=0)
    job = await store.job_insert(new_job(jc.id, hold=True), actor="t", reason=None)
    force(db, job.id, src, worker_id=WORKER, seq=job.id, pid=None)
    dst = S.RUNNING if kind == "running" else S.ERROR
    now = datetime.now(UTC)
    running = [RunningReport(job.id, 9, now)] if kind == "running" else []
    ended = [EndReport(job.id, S.ERROR, 3, "exit code 3", "w")] if kind == "end" else []

    [mine] = (await store.jobs_report(worker_id=WORKER, running=running, ended=ended)).outcomes
    [theirs] = (
        await store.jobs_report(worker_id="someone-else", running=running, ended=ended)
    ).outcomes

    allowed = dst in TRANSITIONS[src]
    assert mine.moved is allowed, f"{src} -> {dst}"
    assert theirs.moved is False
    after = await store.job_get(job.id)
    assert after.status is (dst if allowed else src)
    if not allowed:
        assert mine.error is not None and src.value in mine.error
    assert theirs.error is not None


async def test_a_repeated_batch_with_running_and_end_applies_each_once(store: Store) -> None:
    """A batch repeated after a lost commit answer: RUNNING was already written."""
    job = await store.job_insert(new_job(), actor="t", reason=None)
    await _claim(store)
    started = datetime.now(UTC)
    running = RunningReport(job.id, 31, started)
    assert (await store.jobs_report(worker_id=WORKER, running=[running])).outcomes[0].moved
    end = EndReport(job.id, S.ERROR, 2, "exit code 2", f"worker:{WORKER}")

    answer = await store.jobs_report(worker_id=WORKER, running=[running], ended=[end])

    assert [o.moved for o in answer.outcomes] == [True, True]
    done = await store.job_get(job.id)
    assert (done.status, done.exit_code, done.status_reason) == (S.ERROR, 2, "exit code 2")
    statuses = [e.status for e in await store.job_events(job.id)]
    assert statuses == [S.SEQUENCED, S.QUEUED, S.INITIALIZING, S.RUNNING, S.ERROR]


async def test_a_reports_batch_locks_its_job_rows_in_id_order_before_moving_them(
    store: Store, db: Engine
) -> None:
    """On PostgreSQL the moves of a batch run one statement per kind, each in id order
    but not in one order together; the batch takes its rows' locks first, by id, so a
    transaction taking the same rows by id (a lease renewal) cannot deadlock with it.
    Here the lower job is locked elsewhere: the batch waits for it holding none of its
    rows (before, its RUNNING-and-end statement had already locked the higher one)."""
    if db.dialect.name != "postgresql":
        pytest.skip("row locks: PostgreSQL only (SQLite writes under one database lock)")
    low = await store.job_insert(new_job(), actor="t", reason=None)
    high = await store.job_insert(new_job(), actor="t", reason=None)
    await _claim(store, limit=2)
    now = datetime.now(UTC)
    first = await store.jobs_report(worker_id=WORKER, running=[RunningReport(low.id, 1, now)])
    assert first.outcomes[0].moved
    with db.connect() as blocker, db.connect() as probe:
        blocker.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": low.id})
        batch = asyncio.ensure_future(
            store.jobs_report(
                worker_id=WORKER,
                running=[RunningReport(high.id, 2, now)],  # RUNNING and end: first statement
                ended=[
                    EndReport(high.id, S.FINISHED, 0, None, f"worker:{WORKER}"),
                    EndReport(low.id, S.FINISHED, 0, None, f"worker:{WORKER}"),
                ],
            )
        )
        await asyncio.sleep(0.5)
        assert not batch.done()  # waiting for the lower row
        locked = probe.execute(
            text("SELECT id FROM jobs WHERE id = :id FOR UPDATE NOWAIT"), {"id": high.id}
        ).all()
        assert locked == [(high.id,)]  # the higher row is not held by the waiting batch
        probe.rollback()
        blocker.rollback()
        answer = await asyncio.wait_for(batch, 30)
    assert [o.moved for o in answer.outcomes] == [True, True, True]
    assert (await store.job_get(low.id)).status is S.FINISHED
    assert (await store.job_get(high.id)).status is S.FINISHED
