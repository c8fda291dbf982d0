"""Jobconfig CRUD, names, package references and delete rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobyard.core.errors import Conflict, InvalidInput, NotFound
from jobyard.core.jobs import JobStatus
from jobyard.core.models import JobConfigSpec, JobFile
from jobyard.store.protocol import Store
from tests.store.conftest import make_jobconfig, new_job


async def test_insert_get_and_defaults(store: Store) -> None:
    pkg, _ = await store.package_insert(
        sha256="a" * 64, filename="p.zip", size=10, kind="zip", entrypoints={"main": {}}
    )
    spec = JobConfigSpec(
        name="etl",
        package_id=pkg.id,
        entrypoint="main",
        macros={"K": "v"},
        max_concurrent=2,
        timeout=5,
        success_exit_codes=[0, 3],
        description="nightly",
        pool="big",
    )
    jc = await store.jobconfig_insert(spec)
    assert (jc.name, jc.package_id, jc.entrypoint, jc.command) == ("etl", pkg.id, "main", None)
    assert (jc.macros, jc.max_concurrent, jc.timeout) == ({"K": "v"}, 2, 5)
    assert (jc.success_exit_codes, jc.enabled, jc.description, jc.pool) == (
        [0, 3],
        True,
        "nightly",
        "big",
    )
    assert jc.created_at.tzinfo is UTC and jc.created_at == jc.updated_at
    assert await store.jobconfig_get(jc.id) == jc
    assert await store.jobconfig_get_by_name("etl") == jc
    with pytest.raises(NotFound, match="nope"):
        await store.jobconfig_get_by_name("nope")


async def test_name_clash_and_bad_input(store: Store) -> None:
    a = await make_jobconfig(store, "a")
    b = await make_jobconfig(store, "b")
    with pytest.raises(Conflict, match="'a'"):
        await make_jobconfig(store, "a")
    with pytest.raises(Conflict, match="'a'"):
        await store.jobconfig_update(b.id, {"name": "a"})
    with pytest.raises(NotFound, match="package 12 does not exist"):
        await store.jobconfig_insert(JobConfigSpec(name="c", package_id=12))
    with pytest.raises(NotFound, match="package 12 does not exist"):
        await store.jobconfig_update(a.id, {"package_id": 12})
    with pytest.raises(InvalidInput):
        await store.jobconfig_insert(JobConfigSpec(name="d", max_concurrent=-1))
    with pytest.raises(InvalidInput, match="bogus"):
        await store.jobconfig_update(a.id, {"bogus": 1})
    assert (await store.jobconfig_get(a.id)).name == "a"


async def test_update_changes_fields_and_bumps_updated_at(store: Store) -> None:
    jc = await make_jobconfig(store, "a")
    updated = await store.jobconfig_update(
        jc.id, {"name": "renamed", "enabled": False, "macros": {"X": "1"}, "command": ["ls"]}
    )
    assert (updated.name, updated.enabled, updated.macros, updated.command) == (
        "renamed",
        False,
        {"X": "1"},
        ["ls"],
    )
    assert updated.updated_at > jc.updated_at and updated.created_at == jc.created_at
    assert await store.jobconfig_get(jc.id) == updated


async def test_delete_rules(store: Store) -> None:
    jc = await make_jobconfig(store, "a", max_concurrent=0)
    keep = await make_jobconfig(store, "keep")
    kept_job = await store.job_insert(new_job(keep.id), actor="user:a", reason=None)
    job = await store.job_insert(new_job(jc.id), actor="user:a", reason=None)
    held = await store.job_insert(new_job(jc.id, hold=True), actor="user:a", reason=None)
    now = datetime.now(UTC)
    await store.job_file_add(JobFile(job.id, "payload", "in.txt", 3, "k/in", now))
    with pytest.raises(Conflict, match="not ended") as err:
        await store.jobconfig_delete(jc.id)
    assert err.value.details["status"] in {"QUEUED", "WAITING"}
    await store.job_cancel(job.id, actor="user:a", reason=None)
    await store.job_cancel(held.id, actor="user:a", reason=None)
    await store.jobconfig_delete(jc.id)
    for call in (store.jobconfig_get(jc.id), store.job_get(job.id), store.job_events(held.id)):
        with pytest.raises(NotFound):
            await call
    with pytest.raises(NotFound):
        await store.job_files_list(job.id, "payload")
    assert (await store.job_get(kept_job.id)).status is JobStatus.QUEUED
    with pytest.raises(NotFound):
        await store.jobconfig_delete(jc.id)


async def test_list_ascending_with_cursor(store: Store) -> None:
    made = [await make_jobconfig(store, f"jc{i}") for i in range(5)]
    seen = []
    cursor = None
    while True:
        page = await store.jobconfigs_list(cursor=cursor, limit=2)
        seen.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [j.id for j in seen] == [j.id for j in made]
    with pytest.raises(InvalidInput):
        await store.jobconfigs_list(cursor="garbage!", limit=2)
    with pytest.raises(InvalidInput):
        await store.jobconfigs_list(cursor=None, limit=0)
