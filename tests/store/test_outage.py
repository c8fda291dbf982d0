"""The store through database restarts and outages, and the lease clock of the sweep.

Restarts and outages run on a PostgreSQL cluster of this module's own (stopping the
session's shared cluster would disturb nothing here, but its connections would be cut
under other fixtures). The lease clock runs on both engines.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from jobyard.core.errors import DatabaseUnavailable
from jobyard.core.jobs import JobStatus as S
from jobyard.store.factory import open_store
from jobyard.store.protocol import Store
from jobyard.store.schema import jobs
from jobyard.store.sql import SqlStore
from jobyard.store.sql.base import Tx
from tests.store.conftest import make_jobconfig, new_job
from tests.support.pg import PgCluster


async def _use_every_thread(store: Store) -> None:
    """Enough concurrent calls that every store thread holds an open connection."""
    await asyncio.gather(*(store.tokens_count() for _ in range(16)))


@pytest.mark.pg
async def test_stale_connections_after_a_restart_cost_nothing(
    pg_store: SqlStore, own_cluster: PgCluster
) -> None:
    jc = await make_jobconfig(pg_store, max_concurrent=0)
    job = await pg_store.job_insert(new_job(jc.id), actor="a", reason=None)
    await _use_every_thread(pg_store)
    await asyncio.to_thread(own_cluster.restart, "fast")
    # Every pooled connection was cut by the restart; each call replaces its own.
    results = await asyncio.gather(
        *(pg_store.job_get(job.id) for _ in range(8)),
        *(pg_store.jobs_promote_sequenced(jc.id) for _ in range(4)),
        pg_store.job_acquire(worker_id="w", pool="default", limit=1, lease_seconds=30),
    )
    assert all(r.id == job.id for r in results[:8])
    assert [j.id for j in results[-1]] == [job.id]


@pytest.mark.pg
async def test_calls_while_the_database_is_down_raise_database_unavailable(
    pg_store: SqlStore, own_cluster: PgCluster
) -> None:
    job = await pg_store.job_insert(new_job(), actor="a", reason=None)
    await _use_every_thread(pg_store)
    await asyncio.to_thread(own_cluster.halt, "fast")
    try:
        for call in (
            pg_store.job_get(job.id),
            pg_store.tokens_count(),
            pg_store.job_insert(new_job(), actor="a", reason=None),
            pg_store.job_acquire(worker_id="w", pool="default", limit=1, lease_seconds=30),
        ):
            with pytest.raises(DatabaseUnavailable) as raised:
                await call
            assert raised.value.committed is False  # failed before any commit was sent
            assert raised.value.code == "database_unavailable"
    finally:
        await asyncio.to_thread(own_cluster.start)
    # The same store works again as soon as the database is back, without reopening.
    assert (await pg_store.job_get(job.id)).status is S.QUEUED
    again = await pg_store.job_insert(new_job(), actor="a", reason=None)
    assert again.id == job.id + 1  # none of the refused inserts happened


@pytest.mark.pg
async def test_a_commit_cut_in_flight_is_reported_as_unknown(
    pg_store: SqlStore, own_cluster: PgCluster, own_db: str
) -> None:
    """The connection dies after the statements, as the commit is sent: outcome unknown."""
    database = own_db.rsplit("/", 1)[-1]

    def insert_then_lose_the_connection(tx: Tx) -> int:
        pid = int(tx.conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        tx.conn.execute(text("CREATE TABLE IF NOT EXISTS probe (x int)"))
        tx.conn.execute(text("INSERT INTO probe VALUES (1)"))
        with own_cluster.connect(database) as admin:
            # Waits (up to 5 s) until the backend is gone: the commit that follows fails.
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        return pid

    with pytest.raises(DatabaseUnavailable) as raised:
        await pg_store._write(insert_then_lose_the_connection)
    assert raised.value.committed is None
    assert raised.value.details["committed"] == "unknown"
    # The store is usable again at once (a fresh connection).
    assert await pg_store.tokens_count() == 0

    # A read has nothing to apply: cut the same way, it is simply run again.
    runs: list[int] = []

    def read_then_lose_the_connection_once(tx: Tx) -> int:
        pid = int(tx.conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        runs.append(pid)
        if len(runs) == 1:
            with own_cluster.connect(database) as admin:
                admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        return int(tx.conn.execute(text("SELECT 41 + 1")).scalar_one()) if len(runs) > 1 else 0

    assert await pg_store._read(read_then_lose_the_connection_once) == 42
    assert len(runs) == 2 and runs[0] != runs[1]


# -- the lease clock (both engines) -------------------------------------------------------


def _lease(db: Engine, job_id: int) -> datetime:
    with db.connect() as conn:
        value: Any = conn.execute(select(jobs.c.lease_expires_at).where(jobs.c.id == job_id))
        lease = value.scalar_one()
    if lease.tzinfo is None:  # SQLite returns naive UTC through a plain engine
        lease = lease.replace(tzinfo=UTC)
    return lease  # type: ignore[no-any-return]


async def test_a_pause_in_sweeping_is_not_counted_against_leases(store: Store, db: Engine) -> None:
    jc = await make_jobconfig(store, max_concurrent=1)
    held = await store.job_insert(new_job(jc.id), actor="a", reason=None)
    nxt = await store.job_insert(new_job(jc.id), actor="a", reason=None)
    await store.job_acquire(worker_id="w1", pool="default", limit=1, lease_seconds=10)
    lease = _lease(db, held.id)
    t0 = datetime.now(UTC)

    # Sweeps every second: the first starts the clock; a 0.8 s gap is ordinary pace.
    assert await store.jobs_fail_expired_leases(now=t0, reason="lost", sweep_interval=1) == []
    t = t0 + timedelta(seconds=0.8)
    assert await store.jobs_fail_expired_leases(now=t, reason="lost", sweep_interval=1) == []
    assert _lease(db, held.id) == lease

    # Then nobody sweeps for 100 s (database unreachable): long past the 10 s lease. The
    # next sweep pushes the lease back by the pause instead of failing the job.
    t += timedelta(seconds=100)
    assert await store.jobs_fail_expired_leases(now=t, reason="lost", sweep_interval=1) == []
    assert _lease(db, held.id) == lease + timedelta(seconds=100)
    assert (await store.job_get(held.id)).status is S.INITIALIZING

    # Sweeping at its pace again, the lease expires after the time it had left.
    failed_at = None
    for _ in range(30):
        t += timedelta(seconds=0.5)
        failed = await store.jobs_fail_expired_leases(now=t, reason="lost", sweep_interval=1)
        if failed:
            assert [j.id for j in failed] == [held.id]
            failed_at = t
            break
    assert failed_at is not None, "the lease never expired after the pause"
    assert lease + timedelta(seconds=100) < failed_at <= lease + timedelta(seconds=100.5)
    assert (await store.job_get(nxt.id)).status is S.QUEUED


async def test_a_leader_handover_is_not_an_outage(store: Store, db: Engine) -> None:
    """Sweeps every second stop for 3 s (the maintenance leader died; another took over):
    no lease is pushed back, so the job of a worker that died meanwhile ends on time."""
    held = await store.job_insert(new_job(), actor="a", reason=None)
    await store.job_acquire(worker_id="w1", pool="default", limit=1, lease_seconds=2)
    lease = _lease(db, held.id)
    t0 = datetime.now(UTC)
    assert await store.jobs_fail_expired_leases(now=t0, reason="lost", sweep_interval=1) == []
    assert t0 < lease < t0 + timedelta(seconds=3)
    t = t0 + timedelta(seconds=3)  # a pause of 3 sweep intervals: the lease ran out in it
    failed = await store.jobs_fail_expired_leases(now=t, reason="lost", sweep_interval=1)
    assert [j.id for j in failed] == [held.id]


async def test_without_an_interval_leases_expire_by_the_wall_clock(
    store: Store, db: Engine
) -> None:
    held = await store.job_insert(new_job(), actor="a", reason=None)
    await store.job_acquire(worker_id="w1", pool="default", limit=1, lease_seconds=10)
    t0 = datetime.now(UTC)
    assert await store.jobs_fail_expired_leases(now=t0, reason="lost", sweep_interval=1) == []
    # A caller that does not sweep periodically (no interval) keeps the plain rule.
    later = t0 + timedelta(seconds=100)
    failed = await store.jobs_fail_expired_leases(now=later, reason="lost")
    assert [j.id for j in failed] == [held.id]


async def test_the_lease_clock_is_shared_by_every_server(
    store: Store, db: Engine, migrated_store_url: str
) -> None:
    """Leadership may change hands over an outage: the clock lives in the database."""
    other = await open_store(migrated_store_url, migrate=False)
    try:
        held = await store.job_insert(new_job(), actor="a", reason=None)
        await store.job_acquire(worker_id="w1", pool="default", limit=1, lease_seconds=10)
        lease = _lease(db, held.id)
        t0 = datetime.now(UTC)
        # Server A sweeps, then the database goes away for 100 s; server B (which never
        # swept before) sweeps first once it is back, then A and B race at one moment.
        assert await store.jobs_fail_expired_leases(now=t0, reason="l", sweep_interval=1) == []
        after = t0 + timedelta(seconds=100)
        assert await other.jobs_fail_expired_leases(now=after, reason="l", sweep_interval=1) == []
        swept = await asyncio.gather(
            store.jobs_fail_expired_leases(now=after, reason="l", sweep_interval=1),
            other.jobs_fail_expired_leases(now=after, reason="l", sweep_interval=1),
        )
        assert swept == [[], []]
        # Pushed back once by the pause, not once per server.
        assert _lease(db, held.id) == lease + timedelta(seconds=100)
    finally:
        await other.close()
