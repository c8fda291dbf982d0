"""Packages, job files, tokens, workers and leader election."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from jobyard.core.errors import InvalidInput, NotFound
from jobyard.core.models import JobConfigSpec, JobFile, WorkerInfo
from jobyard.store.factory import open_store
from jobyard.store.protocol import Store
from tests.store.conftest import new_job
from tests.support.pg import PgCluster


async def test_packages_dedup_by_sha_and_list_newest_first(store: Store) -> None:
    first, created = await store.package_insert(
        sha256="1" * 64, filename="a.zip", size=1, kind="zip", entrypoints={"m": {"command": ["x"]}}
    )
    assert created and first.entrypoints == {"m": {"command": ["x"]}}
    again, created = await store.package_insert(
        sha256="1" * 64, filename="other.zip", size=1, kind="zip", entrypoints={}
    )
    assert not created and again == first
    second, _ = await store.package_insert(
        sha256="2" * 64, filename="b.tar.gz", size=2, kind="tar", entrypoints={}
    )
    assert await store.package_get(first.id) == first
    page = await store.packages_list(cursor=None, limit=1)
    assert [p.id for p in page.items] == [second.id] and page.next_cursor
    page = await store.packages_list(cursor=page.next_cursor, limit=1)
    assert [p.id for p in page.items] == [first.id] and page.next_cursor is None


async def test_concurrent_uploads_of_one_content_make_one_row(migrated_store_url: str) -> None:
    stores = [await open_store(migrated_store_url, migrate=False) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(
                s.package_insert(sha256="f" * 64, filename="x", size=1, kind="file", entrypoints={})
                for s in stores
            )
        )
    finally:
        for s in stores:
            await s.close()
    assert len({pkg.id for pkg, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_job_files(store: Store) -> None:
    job = await store.job_insert(new_job(), actor="user:a", reason=None)
    now = datetime.now(UTC)
    await store.job_file_add(JobFile(job.id, "payload", "b.txt", 2, "k/b", now))
    await store.job_file_add(JobFile(job.id, "payload", "a.txt", 1, "k/a", now))
    await store.job_file_add(JobFile(job.id, "output", "out.csv", 9, "k/o", now))
    await store.job_file_add(JobFile(job.id, "payload", "a.txt", 5, "k/a2", now))
    payload = await store.job_files_list(job.id, "payload")
    assert [(f.name, f.size, f.blob_key) for f in payload] == [
        ("a.txt", 5, "k/a2"),
        ("b.txt", 2, "k/b"),
    ]
    assert payload[0].created_at.tzinfo is UTC
    assert [f.name for f in await store.job_files_list(job.id, "output")] == ["out.csv"]
    with pytest.raises(NotFound, match="job 777"):
        await store.job_file_add(JobFile(777, "payload", "x", 1, "k", now))
    with pytest.raises(InvalidInput):
        await store.job_file_add(JobFile(job.id, "secret", "x", 1, "k", now))


async def test_job_run_context_reads_package_macros_and_payload(store: Store) -> None:
    adhoc = await store.job_insert(new_job(), actor="user:a", reason=None)
    ctx = await store.job_run_context(adhoc)
    assert ctx.package is None and ctx.jobconfig_macros is None and ctx.payload == []

    package, _ = await store.package_insert(
        sha256="ab" * 32, filename="p.zip", size=3, kind="zip",
        entrypoints={"main": {"command": ["x"]}},
    )  # fmt: skip
    jc = await store.jobconfig_insert(
        JobConfigSpec(name="ctx", package_id=package.id, entrypoint="main", macros={"M": "1"})
    )
    new = replace(new_job(jc.id), package_id=package.id, entrypoint="main", command=None)
    job = await store.job_insert(new, actor="user:a", reason=None)
    now = datetime.now(UTC)
    await store.job_file_add(JobFile(job.id, "payload", "b.csv", 1, "k/b", now))
    await store.job_file_add(JobFile(job.id, "payload", "a.csv", 1, "k/a", now))
    await store.job_file_add(JobFile(job.id, "output", "o.csv", 1, "k/o", now))
    ctx = await store.job_run_context(job)
    assert ctx.package == package
    assert ctx.jobconfig_macros == {"M": "1"}
    assert [f.name for f in ctx.payload] == ["a.csv", "b.csv"]
    await store.jobconfig_update(jc.id, {"macros": {"M": "2"}})
    assert (await store.job_run_context(job)).jobconfig_macros == {"M": "2"}


async def test_tokens(store: Store) -> None:
    assert await store.tokens_count() == 0
    token = await store.token_insert(name="admin", token_hash="h1", role="admin")
    assert (token.name, token.role, token.revoked) == ("admin", "admin", False)
    assert await store.token_lookup("h1") == token
    assert await store.token_lookup("nope") is None
    assert await store.tokens_count() == 1


async def test_workers_upsert_and_list(store: Store) -> None:
    now = datetime.now(UTC)
    info = WorkerInfo(
        id="w1", name="host-1", pool="default", host="h", pid=10, slots=4, kind="local",
        started_at=now, heartbeat_at=now, draining=False,
    )  # fmt: skip
    await store.worker_upsert(info)
    later = now + timedelta(seconds=3)
    await store.worker_upsert(replace(info, heartbeat_at=later, draining=True, home="/x"))
    await store.worker_upsert(replace(info, id="w0"))
    workers = await store.workers_list()
    assert [w.id for w in workers] == ["w0", "w1"]
    assert workers[1].heartbeat_at == later and workers[1].draining and workers[1].home == "/x"


async def test_leader_election(store: Store) -> None:
    assert await store.leader_try_acquire(name="maint", holder="a", ttl_seconds=30)
    assert await store.leader_try_acquire(name="maint", holder="a", ttl_seconds=30)  # renew
    assert not await store.leader_try_acquire(name="maint", holder="b", ttl_seconds=30)
    assert await store.leader_try_acquire(name="sched", holder="b", ttl_seconds=30)
    # a's lease lapses (ttl 0 = expires now): b takes over, then a is refused.
    assert await store.leader_try_acquire(name="maint", holder="a", ttl_seconds=0)
    assert await store.leader_try_acquire(name="maint", holder="b", ttl_seconds=30)
    assert not await store.leader_try_acquire(name="maint", holder="a", ttl_seconds=30)


async def test_a_released_leadership_is_taken_at_once(store: Store) -> None:
    assert await store.leader_try_acquire(name="maint", holder="a", ttl_seconds=30)
    assert await store.leader_try_acquire(name="retention", holder="a", ttl_seconds=30)
    assert await store.leader_try_acquire(name="sched", holder="c", ttl_seconds=30)
    assert not await store.leader_try_acquire(name="maint", holder="b", ttl_seconds=30)
    assert await store.leaders_release(holder="a") == 2
    assert await store.leaders_release(holder="a") == 0
    assert await store.leader_try_acquire(name="maint", holder="b", ttl_seconds=30)
    assert await store.leader_try_acquire(name="retention", holder="b", ttl_seconds=30)
    assert not await store.leader_try_acquire(name="sched", holder="b", ttl_seconds=30)


async def test_leader_election_has_one_winner_among_replicas(migrated_store_url: str) -> None:
    replicas = [await open_store(migrated_store_url, migrate=False) for _ in range(4)]
    try:
        for round_ in range(10):
            wins = await asyncio.gather(
                *(
                    r.leader_try_acquire(name=f"race{round_}", holder=f"r{i}", ttl_seconds=30)
                    for i, r in enumerate(replicas)
                )
            )
            assert sum(wins) == 1
    finally:
        for r in replicas:
            await r.close()


@pytest.mark.pg
async def test_store_reconnects_after_the_server_drops_its_connections(
    migrated_pg_url: str, pg_cluster: PgCluster
) -> None:
    store = await open_store(migrated_pg_url, migrate=False)
    try:
        await asyncio.gather(*(store.tokens_count() for _ in range(8)))
        with pg_cluster.connect() as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (make_url(migrated_pg_url).database,),
            )
        failures = 0
        for _ in range(12):  # each thread's dead connection fails once, then is replaced
            try:
                await store.tokens_count()
            except DBAPIError:
                failures += 1
        assert failures <= 4
        assert await store.tokens_count() == 0
    finally:
        await store.close()
