"""Every status write is guarded by the status model: checked for every (from, to) pair.

For each pair, a job is put into ``from`` directly with SQL, then the store method that
moves a job into ``to`` is tried. It must succeed exactly when ``to`` is in
``TRANSITIONS[from]`` (the data in ``core/jobs.py``), and otherwise leave the job as it
was and say why.
"""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import Engine, text

from jobyard.core.errors import Conflict
from jobyard.core.jobs import INITIAL, TRANSITIONS, JobStatus, sources_of
from jobyard.store.protocol import Store
from tests.store.conftest import force, make_jobconfig, new_job

WORKER = "w1"
PAIRS = [
    (src, dst)
    for src, dst in itertools.product(JobStatus, JobStatus)
    if dst not in INITIAL or sources_of(dst)  # WAITING is only ever a creation status
]


def test_only_creation_enters_waiting() -> None:
    assert sources_of(JobStatus.WAITING) == frozenset()


async def _try_move(store: Store, job_id: int, jobconfig_id: int, dst: JobStatus) -> bool:
    """Attempt ``dst`` with the method that produces it; True if the job moved."""
    if dst is JobStatus.SEQUENCED:
        await store.job_release(job_id, actor="user:alice")
    elif dst is JobStatus.CANCELLED:
        await store.job_cancel(job_id, actor="user:alice", reason="test")
    elif dst is JobStatus.QUEUED:
        return job_id in await store.jobs_promote_sequenced(jobconfig_id)
    elif dst is JobStatus.INITIALIZING:
        got = await store.job_acquire(worker_id=WORKER, pool="default", limit=5, lease_seconds=30)
        return job_id in [j.id for j in got]
    elif dst is JobStatus.RUNNING:
        await store.job_set_running(job_id, worker_id=WORKER, pid=123)
    else:
        await store.job_end(
            job_id, worker_id=WORKER, status=dst, exit_code=0, reason="test", actor="worker:w1"
        )
    return True


@pytest.mark.parametrize(("src", "dst"), PAIRS, ids=[f"{s}->{d}" for s, d in PAIRS])
async def test_transition_guard(store: Store, db: Engine, src: JobStatus, dst: JobStatus) -> None:
    # An unlimited jobconfig, so a SEQUENCED job is only held back by its guard.
    jc = await make_jobconfig(store, max_concurrent=0)
    job = await store.job_insert(new_job(jc.id, hold=True), actor="user:alice", reason=None)
    force(db, job.id, src, worker_id=WORKER, seq=job.id)
    allowed = dst in TRANSITIONS[src]

    try:
        moved = await _try_move(store, job.id, jc.id, dst)
    except Conflict as exc:
        assert exc.details["status"] == src.value
        assert src.value in exc.message
        moved = False

    after = await store.job_get(job.id)
    assert moved is allowed, f"{src} -> {dst}: moved={moved}, allowed={allowed}"
    events = [e.status for e in await store.job_events(job.id)]
    if allowed:
        assert events[:2] == [JobStatus.WAITING, dst]
        # Releasing sequences the job, and promotion may queue it in the same transaction.
        promoted = dst is JobStatus.SEQUENCED and after.status is JobStatus.QUEUED
        assert after.status is dst or promoted
    else:
        assert after.status is src
        assert events == [JobStatus.WAITING]


#: The write of a job's initialization (resolved macros + SESSION_ID) is allowed only
#: while the job is INITIALIZING and held by the writing worker.
INITIALIZE_CASES = [(status, WORKER) for status in JobStatus] + [
    (JobStatus.INITIALIZING, "another-worker")
]


@pytest.mark.parametrize(
    ("src", "writer"), INITIALIZE_CASES, ids=[f"{s}-by-{w}" for s, w in INITIALIZE_CASES]
)
async def test_initialize_guard(store: Store, db: Engine, src: JobStatus, writer: str) -> None:
    await store.user_create(name="alice", role="user", password_hash=None)
    jc = await make_jobconfig(store, max_concurrent=0)
    job = await store.job_insert(new_job(jc.id, hold=True), actor="user:alice", reason=None)
    force(db, job.id, src, worker_id=WORKER, seq=job.id)
    allowed = src is JobStatus.INITIALIZING and writer == WORKER
    record = {"A": {"level": "job", "secure": False, "value": "1"}}

    try:
        user = await store.job_initialize(
            job.id, worker_id=writer, resolved=record, user_name="alice", token_hash="h" * 64
        )
    except Conflict as exc:
        assert exc.details["status"] == src.value
        assert src.value in exc.message
        initialized = False
    else:
        assert user is not None and user.name == "alice"
        initialized = True

    assert initialized is allowed, f"{src} by {writer}: initialized={initialized}"
    after = await store.job_get(job.id)
    with db.connect() as conn:
        tokens = conn.execute(
            text("SELECT count(*) FROM api_tokens WHERE job_id = :id"), {"id": job.id}
        ).scalar_one()
    assert after.status is src
    assert after.resolved_macros == (record if allowed else None)
    assert tokens == (1 if allowed else 0)
