"""Fixtures of the store conformance suite: every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from jobyard.core.jobs import JobStatus
from jobyard.core.models import JobConfig, JobConfigSpec, NewJob
from jobyard.core.templates import Template, TemplateSpec
from jobyard.store.factory import open_store, upgrade_database
from jobyard.store.protocol import Store
from jobyard.store.sql import SqlStore
from jobyard.store.sql.base import make_sync_engine, normalize_url
from tests.support.pg import PgCluster


@pytest.fixture
async def store(migrated_store_url: str) -> AsyncIterator[Store]:
    """An open store on a fresh, migrated database (both engines)."""
    s = await open_store(migrated_store_url, migrate=False)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def db(migrated_store_url: str) -> Iterator[Engine]:
    """A plain engine on the store's database, to arrange states the API cannot reach."""
    engine = make_sync_engine(normalize_url(migrated_store_url))
    try:
        yield engine
    finally:
        engine.dispose()


def new_job(
    jobconfig_id: int | None = None,
    *,
    hold: bool = False,
    pool: str = "default",
    priority: int = 0,
    submitted_by: str | None = "alice",
    command: list[str] | None = None,
) -> NewJob:
    """A minimal job to insert."""
    return NewJob(
        jobconfig_id=jobconfig_id,
        package_id=None,
        entrypoint=None,
        command=command if command is not None else ["true"],
        macros={"A": "1"},
        timeout=0,
        success_exit_codes=[0],
        pool=pool,
        priority=priority,
        submitted_by=submitted_by,
        hold=hold,
    )


async def make_jobconfig(store: Store, name: str = "jc", max_concurrent: int = 1) -> JobConfig:
    """A jobconfig with a plain command."""
    return await store.jobconfig_insert(
        JobConfigSpec(name=name, command=["true"], max_concurrent=max_concurrent)
    )


def force(db: Engine, job_id: int, status: JobStatus, **columns: Any) -> None:
    """Put a job in ``status`` directly (test arrangement only: bypasses every guard)."""
    values = {"status": status.value, **columns}
    assignments = ", ".join(f"{k} = :{k}" for k in values)
    with db.begin() as conn:
        conn.execute(
            text(f"UPDATE jobs SET {assignments} WHERE id = :id"), {**values, "id": job_id}
        )


async def make_template(
    store: Store, name: str = "tpl", *, command: list[str] | None = None, **fields: Any
) -> Template:
    """A template (without a package: running ``command``, by default ``echo template``)."""
    if command is None and fields.get("package_id") is None:
        command = ["echo", "template"]
    spec = TemplateSpec(name=name, command=command, **fields)
    return await store.template_insert(spec, owner="alice")


@pytest.fixture
def own_db(own_cluster: PgCluster) -> Iterator[str]:
    """URL of a fresh migrated database on ``own_cluster`` (a module may restart or
    halt that cluster)."""
    with own_cluster.fresh_database() as url:
        upgrade_database(url)
        yield url


@pytest.fixture
async def pg_store(own_db: str) -> AsyncIterator[SqlStore]:
    """A PostgreSQL store on ``own_db``."""
    store = await open_store(own_db, migrate=False)
    if not isinstance(store, SqlStore):  # pragma: no cover - one implementation
        raise TypeError(type(store))
    try:
        yield store
    finally:
        await store.close()
