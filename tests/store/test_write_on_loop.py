"""Short write transactions on the event loop's thread while a PostgreSQL store is idle.

A lone submit and the claim of a job just submitted (``ClaimRequest.on_loop``) skip the
writer threads' hand-offs when nothing else is being written (see
``SqlBase._write_on_loop``); a busy store, a broken connection and an outage keep them on
the threads. On a module-owned cluster (restarted and halted here).
"""

from __future__ import annotations

import asyncio
import threading
import time

import psycopg
import pytest
from sqlalchemy import text

from jobyard.core.claims import ClaimRequest
from jobyard.core.errors import DatabaseUnavailable
from jobyard.core.jobs import JobStatus
from jobyard.store.sql import SqlStore
from jobyard.store.sql.base import Tx
from tests.store.conftest import new_job
from tests.support.pg import PgCluster

pytestmark = pytest.mark.pg


def _thread(tx: Tx) -> int:
    """The thread a transaction (one statement) ran on."""
    tx.conn.execute(text("SELECT 1"))
    return threading.get_ident()


def _slow(tx: Tx) -> None:
    tx.conn.execute(text("SELECT pg_sleep(0.5)"))


async def test_runs_on_the_loop_once_its_connection_is_open(pg_store: SqlStore) -> None:
    here = threading.get_ident()
    first = await pg_store._write_on_loop(_thread)  # opens the connection on a thread
    assert first != here
    assert await pg_store._write_on_loop(_thread) == here
    assert await pg_store._write(_thread) != here  # plain writes keep their threads


async def test_a_busy_store_keeps_its_threads(pg_store: SqlStore) -> None:
    here = threading.get_ident()
    await pg_store._write_on_loop(_thread)
    assert await pg_store._write_on_loop(_thread) == here
    slow = asyncio.create_task(pg_store._write(_slow))
    deadline = time.monotonic() + 5
    while not pg_store._writing:  # the slow write is under way on a thread
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    assert await pg_store._write_on_loop(_thread) != here
    await slow
    assert await pg_store._write_on_loop(_thread) == here


async def test_a_claim_made_on_the_loop_claims_like_any_other(pg_store: SqlStore) -> None:
    await pg_store._write_on_loop(_thread)  # the loop's connection is open from here on
    job = await pg_store.job_insert(new_job(), actor="a", reason=None)
    request = ClaimRequest(
        pool="default", limit=2, lease_seconds=30, token_hashes=["h1", "h2"], on_loop=True
    )
    answer = await pg_store.jobs_report(worker_id="w1", claim=request)
    assert [c.job.id for c in answer.claims] == [job.id]
    got = await pg_store.job_get(job.id)
    assert got.status is JobStatus.INITIALIZING and got.worker_id == "w1"
    again = await pg_store.jobs_report(worker_id="w2", claim=request)
    assert again.claims == []


async def test_a_restart_sends_it_back_to_the_threads_once(
    pg_store: SqlStore, own_cluster: PgCluster
) -> None:
    here = threading.get_ident()
    await pg_store._write_on_loop(_thread)
    assert await pg_store._write_on_loop(_thread) == here
    await asyncio.to_thread(own_cluster.restart, "fast")
    # The loop's connection was cut: the transaction runs on a thread (which replaces
    # its own connection), and the loop's connection is opened again for the next one.
    assert await pg_store._write_on_loop(_thread) != here
    job = await pg_store.job_insert(new_job(), actor="a", reason=None)
    assert (await pg_store.job_get(job.id)).id == job.id
    deadline = time.monotonic() + 10
    while await pg_store._write_on_loop(_thread) != here:
        assert time.monotonic() < deadline, "never back on the loop"


async def test_an_outage_is_answered_on_the_threads(
    pg_store: SqlStore, own_cluster: PgCluster
) -> None:
    await pg_store._write_on_loop(_thread)
    await asyncio.to_thread(own_cluster.halt, "fast")
    try:
        with pytest.raises(DatabaseUnavailable):
            await pg_store._write_on_loop(_thread)
        # While the outage lasts, the writer threads answer (the loop never waits on it).
        assert pg_store._outages.ongoing
        with pytest.raises(DatabaseUnavailable):
            await pg_store._write_on_loop(_thread)
    finally:
        await asyncio.to_thread(own_cluster.start)


async def test_a_lock_held_elsewhere_sends_it_to_the_threads(
    pg_store: SqlStore, own_db: str
) -> None:
    """The loop never waits on another transaction's lock: PostgreSQL aborts the loop's
    transaction at once (lock_timeout) and it runs on a writer thread, which waits."""
    here = threading.get_ident()
    await pg_store._write_on_loop(_thread)
    job = await pg_store.job_insert(new_job(), actor="a", reason=None)
    ran_on: list[int] = []

    def touch(tx: Tx) -> None:
        ran_on.append(threading.get_ident())
        tx.conn.execute(
            text("UPDATE jobs SET status_reason = 'touched' WHERE id = :id"), {"id": job.id}
        )

    holder = await asyncio.to_thread(psycopg.connect, own_db)
    try:
        holder.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (job.id,))
        started = time.monotonic()
        touching = asyncio.create_task(pg_store._write_on_loop(touch))
        await asyncio.sleep(0.5)  # the loop stays free while the thread waits
        assert not touching.done()
        holder.rollback()
        await touching
    finally:
        holder.close()
    assert ran_on[0] == here and ran_on[-1] != here, ran_on
    assert time.monotonic() - started >= 0.5
    assert (await pg_store.job_get(job.id)).status_reason == "touched"
