"""Worker-process bodies for the store concurrency tests (importable by spawned children)."""

from __future__ import annotations

import asyncio
import os
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from jobyard.core.jobs import JobStatus
from jobyard.store.factory import open_store


async def _drain(url: str, worker_id: str, batch: int, barrier: Barrier) -> list[int]:
    store = await open_store(url, migrate=False)
    done: list[int] = []
    try:
        await asyncio.to_thread(barrier.wait, 60)
        while True:
            got = await store.job_acquire(
                worker_id=worker_id, pool="default", limit=batch, lease_seconds=120
            )
            if not got:
                return done
            for job in got:
                await store.job_set_running(job.id, worker_id=worker_id, pid=os.getpid())
                await store.job_end(
                    job.id,
                    worker_id=worker_id,
                    status=JobStatus.FINISHED,
                    exit_code=0,
                    reason=None,
                    actor=f"worker:{worker_id}",
                )
                done.append(job.id)
    finally:
        await store.close()


def drain_worker(
    url: str, worker_id: str, batch: int, barrier: Barrier, results: Queue[object]
) -> None:
    """Acquire -> running -> FINISHED until no job is left; put ``(worker_id, ids|error)``."""
    try:
        results.put((worker_id, asyncio.run(_drain(url, worker_id, batch, barrier))))
    except BaseException as exc:  # reported to the parent, which fails the test
        results.put((worker_id, f"{type(exc).__name__}: {exc}"))
