"""Claims under real concurrency: several processes and racing connections, both engines."""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from sqlalchemy import Engine, text

from jobyard.core.errors import Conflict
from jobyard.core.jobs import JobStatus
from jobyard.store.factory import open_store
from jobyard.store.protocol import Store
from tests.store.conftest import new_job
from tests.support.store_load import drain_worker

PROCESSES = 4
JOBS = 2000
RACES = 400
T = TypeVar("T")


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


class _Side:
    """A store on a thread and event loop of its own, so its calls run beside the others'.

    (Two stores on one event loop do not race on SQLite: its transactions run inline,
    one after the other.)
    """

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.store: Store = self.call(open_store(url, migrate=False))

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        try:
            self.call(self.store.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
            self.loop.close()


async def _released(
    barrier: threading.Barrier, call: Callable[[], Awaitable[T]], head_start: float = 0.0
) -> T | Exception:
    """Wait for the other side at the barrier, then make the call (its error is returned).

    ``head_start``: seconds to give the other side after the barrier (a sleep, which
    lets the other side's threads run; a busy wait would hold the GIL and stall them).
    """
    barrier.wait(timeout=30)
    if head_start:
        time.sleep(head_start)  # noqa: ASYNC251 (this loop runs only this call)
    try:
        return await call()
    except Exception as exc:
        return exc


async def test_cancel_races_acquire_with_one_winner(store: Store, migrated_store_url: str) -> None:
    """A cancel and an acquisition race for one QUEUED job, many times, for real.

    Each side has its own thread, event loop, store and connections, and both are
    released together by a barrier: each must win sometimes, and every race has
    exactly one winner. One side, picked at random, gets a random lead of up to 3 ms
    (none in about a third of the races): without it the side with the shorter
    transaction (acquisition on PostgreSQL) wins nearly always.
    """
    canceller, acquirer = _Side(migrated_store_url), _Side(migrated_store_url)
    wins: Counter[str] = Counter()
    leads = random.Random(RACES)
    try:
        for _ in range(RACES):
            job = await store.job_insert(new_job(), actor="user:a", reason=None)
            assert job.status is JobStatus.QUEUED
            barrier = threading.Barrier(2)
            lead = max(0.0, leads.uniform(-0.0015, 0.003))
            cancel_lead, acquire_lead = (lead, 0.0) if leads.random() < 0.5 else (0.0, lead)
            cancel, acquired = await asyncio.gather(
                canceller.run(
                    _released(
                        barrier,
                        lambda job_id=job.id: canceller.store.job_cancel(
                            job_id, actor="user:a", reason="race"
                        ),
                        acquire_lead,
                    )
                ),
                acquirer.run(
                    _released(
                        barrier,
                        lambda: acquirer.store.job_acquire(
                            worker_id="w", pool="default", limit=1, lease_seconds=60
                        ),
                        cancel_lead,
                    )
                ),
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
                assert not isinstance(cancel, Exception), cancel
                assert acquired == []
                assert final is JobStatus.CANCELLED
                assert JobStatus.INITIALIZING not in events
                wins["cancel"] += 1
    finally:
        canceller.close()
        acquirer.close()
    print("race winners:", dict(wins))
    assert sum(wins.values()) == RACES
    assert wins["cancel"] > 0 and wins["acquire"] > 0, f"one side never won: {dict(wins)}"


async def test_submissions_arriving_during_a_batch_wait_for_it_and_go_together(
    store: Store,
) -> None:
    """One batch of submissions is written at a time: those arriving while it is being
    written wait for its commit and are written together, in the next batch."""
    spans: list[tuple[str, int]] = []
    started = asyncio.Event()
    write_batch = store._write_batch  # type: ignore[attr-defined]

    async def slow(batch: list[Any]) -> None:
        spans.append(("start", len(batch)))
        started.set()
        await asyncio.sleep(0.05)  # a slow commit
        await write_batch(batch)
        spans.append(("end", len(batch)))

    store._write_batch = slow  # type: ignore[attr-defined]
    first = asyncio.create_task(store.job_insert(new_job(), actor="t", reason=None))
    await started.wait()
    rest = [store.job_insert(new_job(), actor="t", reason=None) for _ in range(3)]
    made = await asyncio.gather(first, *rest)
    assert spans == [("start", 1), ("end", 1), ("start", 3), ("end", 3)]
    assert len({job.id for job in made}) == 4
    assert all(job.status is JobStatus.QUEUED for job in made)
    # Nothing waits any more: the next submission starts a batch of its own at once.
    assert (await store.job_insert(new_job(), actor="t", reason=None)).status is JobStatus.QUEUED
    assert spans[-2:] == [("start", 1), ("end", 1)]
