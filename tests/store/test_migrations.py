"""The schema replayed from the migrations equals ``schema.metadata``, on both engines."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select

from jobyard.core import models
from jobyard.core.errors import InvalidInput
from jobyard.core.schedules import Schedule
from jobyard.store import schema
from jobyard.store.factory import (
    alembic_config,
    database_revision,
    head_revision,
    open_store,
    upgrade_database,
)
from jobyard.store.sql.base import make_sync_engine, normalize_url
from tests.store.conftest import new_job


def test_replayed_migrations_equal_metadata(store_url: str) -> None:
    upgrade_database(store_url)
    engine = make_sync_engine(normalize_url(store_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            diffs = compare_metadata(context, schema.metadata)
            indexes = {
                t: {ix["name"] for ix in inspect(conn).get_indexes(t)} for t in schema.table_names()
            }
    finally:
        engine.dispose()
    assert diffs == []
    expected = {
        t.name: {ix.name for ix in t.indexes if ix.name} for t in schema.metadata.sorted_tables
    }
    assert indexes == expected


def test_upgrade_is_idempotent_and_reports_head(store_url: str) -> None:
    assert database_revision(store_url) is None
    upgrade_database(store_url)
    upgrade_database(store_url)
    assert database_revision(store_url) == head_revision()


async def test_open_store_migrates_by_default(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        assert await store.tokens_count() == 0
        assert store.dialect in store_url
    finally:
        await store.close()
    assert database_revision(store_url) == head_revision()


def test_table_columns_follow_dataclass_fields() -> None:
    """Rows map positionally onto the domain records: keep the orders in step."""
    pairs = [
        (schema.jobs, models.Job),
        (schema.packages, models.Package),
        (schema.jobconfigs, models.JobConfig),
        (schema.job_files, models.JobFile),
        (schema.workers, models.WorkerInfo),
        (schema.schedules, Schedule),
    ]
    for table, record in pairs:
        assert [c.name for c in table.c] == [f.name for f in dataclasses.fields(record)]


def test_concurrent_upgrades_serialise(store_url: str) -> None:
    """Replicas starting together all upgrade the same empty database without errors."""
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(upgrade_database, [store_url] * 4))
    assert database_revision(store_url) == head_revision()


def test_urls_pick_the_driver() -> None:
    assert normalize_url("postgresql://u:p@h:5/db") == "postgresql+psycopg://u:p@h:5/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:////var/x.db") == "sqlite:////var/x.db"
    for bad in ("mysql://h/db", "sqlite://", "sqlite:///:memory:"):
        with pytest.raises(InvalidInput):
            normalize_url(bad)


def _downgrade(url: str, revision: str) -> None:
    engine = make_sync_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
    finally:
        engine.dispose()


def _event_keys(url: str) -> tuple[list[str], int]:
    engine = make_sync_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            names = [fk["name"] for fk in inspect(conn).get_foreign_keys("job_events")]
            count = conn.execute(select(func.count()).select_from(schema.job_events)).scalar_one()
    finally:
        engine.dispose()
    return sorted(n or "" for n in names), int(count)


async def test_job_events_lose_their_foreign_key_and_keep_their_rows(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        job = await store.job_insert(new_job(), actor="alice", reason=None)
        await store.job_cancel(job.id, actor="alice", reason="not needed")
    finally:
        await store.close()
    assert _event_keys(store_url) == ([], 3)  # SEQUENCED, QUEUED, CANCELLED
    _downgrade(store_url, "0011")
    assert _event_keys(store_url) == (["fk_job_events_job_id_jobs"], 3)
    upgrade_database(store_url)
    assert _event_keys(store_url) == ([], 3)
    assert database_revision(store_url) == head_revision()
