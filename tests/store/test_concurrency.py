"""Claims under real concurrency: several processes and racing connections, both engines."""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
from collections import Counter

from sqlalchemy import Engine, text

from jobyard.core.errors import Conflict
from jobyard.core.jobs import JobStatus
from jobyard.store.factory import open_store
from jobyard.store.protocol import Store
from tests.store.conftest import new_job
from tests.support.store_load import drain_worker

PROCESSES = 4
JOBS = 2000
TRIALS = 1000


def _run_workers(url: str) -> dict[str, list[int]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=drain_worker, args=(url, f"p{i}", 10, barrier, results))
        for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    done: dict[str, list[int]] = {}
    deadline = time.monotonic() + 150
    try:
        while len(done) < PROCESSES:
            try:
                worker_id, outcome = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"workers timed out; finished: {sorted(done)}") from None
            assert isinstance(outcome, list), f"{worker_id} failed: {outcome}"
            done[worker_id] = outcome
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
    return done


async def test_processes_claim_each_job_exactly_once(
    store: Store, db: Engine, migrated_store_url: str
) -> None:
    ids = [
        (await store.job_insert(new_job(), actor="user:load", reason=None)).id for _ in range(JOBS)
    ]
    done = await asyncio.to_thread(_run_workers, migrated_store_url)

    claimed = [job_id for per_worker in done.values() for job_id in per_worker]
    assert sorted(claimed) == sorted(ids)
    with db.connect() as conn:
        initializing: Counter[int] = Counter(
            dict(
                conn.execute(
                    text(
                        "SELECT job_id, count(*) FROM job_events "
                        "WHERE status = 'INITIALIZING' GROUP BY job_id"
                    )
                ).all()
            )
        )
        statuses: Counter[str] = Counter(
            dict(conn.execute(text("SELECT status, count(*) FROM jobs GROUP BY status")).all())
        )
    assert set(initializing) == set(ids) and set(initializing.values()) == {1}
    assert statuses == {"FINISHED": JOBS}
    print("jobs per worker:", {w: len(v) for w, v in sorted(done.items())})


async def test_cancel_races_acquire_with_one_winner(store: Store, migrated_store_url: str) -> None:
    """Two stores (own threads, own connections) race for one QUEUED job, many times."""
    rival = await open_store(migrated_store_url, migrate=False)
    wins: Counter[str] = Counter()
    try:
        for _ in range(TRIALS):
            job = await store.job_insert(new_job(), actor="user:a", reason=None)
            assert job.status is JobStatus.QUEUED
            cancel, acquired = await asyncio.gather(
                store.job_cancel(job.id, actor="user:a", reason="race"),
                rival.job_acquire(worker_id="w", pool="default", limit=1, lease_seconds=60),
                return_exceptions=True,
            )
            final = (await store.job_get(job.id)).status
            events = [e.status for e in await store.job_events(job.id)]
            if isinstance(cancel, Conflict):
                assert isinstance(acquired, list) and [j.id for j in acquired] == [job.id]
                assert cancel.details["status"] == "INITIALIZING"
                assert final is JobStatus.INITIALIZING
                assert JobStatus.CANCELLED not in events
                wins["acquire"] += 1
            else:
                assert not isinstance(cancel, BaseException), cancel
                assert acquired == []
                assert final is JobStatus.CANCELLED
                assert JobStatus.INITIALIZING not in events
                wins["cancel"] += 1
    finally:
        await rival.close()
    assert sum(wins.values()) == TRIALS
    print("race winners:", dict(wins))
