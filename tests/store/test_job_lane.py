"""The job path's lane on PostgreSQL: submissions, claims and reports run on one thread
and connection of their own (``SqlBase._write_job``), beside the threads every other
transaction shares, so a slow statement elsewhere never holds them up."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from sqlalchemy import text

from jobyard.core.claims import ClaimRequest
from jobyard.core.jobs import JobStatus
from jobyard.store.sql import SqlStore
from jobyard.store.sql import base as store_base
from jobyard.store.sql.base import Tx
from tests.store.conftest import new_job

pytestmark = pytest.mark.pg


def _thread_name(tx: Tx) -> str:
    tx.conn.execute(text("SELECT 1"))
    return threading.current_thread().name


def _slow(tx: Tx) -> None:
    tx.conn.execute(text("SELECT pg_sleep(1.5)"))


async def test_the_job_path_has_one_thread_of_its_own(pg_store: SqlStore) -> None:
    lane = await asyncio.gather(*(pg_store._write_job(_thread_name) for _ in range(6)))
    assert len(set(lane)) == 1
    assert lane[0].startswith("jobyard-pg-jobs")
    others = await asyncio.gather(*(pg_store._write(_thread_name) for _ in range(6)))
    assert not any(name.startswith("jobyard-pg-jobs") for name in others)


async def test_slow_writes_elsewhere_do_not_hold_up_submissions_and_claims(
    pg_store: SqlStore,
) -> None:
    # Every shared thread busy with a slow transaction (a big purge, a slow console write).
    slow = [asyncio.create_task(pg_store._write(_slow)) for _ in range(store_base._PG_THREADS)]
    deadline = time.monotonic() + 5
    while pg_store._writing < store_base._PG_THREADS:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    job = await pg_store.job_insert(new_job(), actor="alice", reason=None)
    request = ClaimRequest(pool="default", limit=1, lease_seconds=30, token_hashes=["h1"])
    answer = await pg_store.jobs_report(worker_id="w1", claim=request)
    assert [c.job.id for c in answer.claims] == [job.id]
    assert not any(task.done() for task in slow)  # answered while they still ran
    await asyncio.gather(*slow)
    got = await pg_store.job_get(job.id)
    assert got.status is JobStatus.INITIALIZING
    assert got.worker_id == "w1"
