"""Opening a store: pick the engine from the URL, bring the schema to head, connect.

``sqlite:///path`` gives the embedded engine; ``postgresql://...`` (or
``postgres://``) the server engine through psycopg 3. Migrations are Alembic
revisions shipped inside the package and run programmatically (no ``alembic.ini``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url

from jobyard.store.protocol import Store
from jobyard.store.sql import SqlStore
from jobyard.store.sql.base import make_sync_engine, normalize_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: Key of the PostgreSQL advisory lock that serialises concurrent upgraders.
_UPGRADE_LOCK_KEY = 0x6A6F62796172  # "jobyar"


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    """The newest revision shipped with this version of jobyard."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - packaging error
        raise RuntimeError("no migrations found")
    return head


def _ensure_sqlite_dir(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def upgrade_database(url: str) -> None:
    """Apply every pending migration (``alembic upgrade head``); safe to run concurrently.

    One transaction under a lock (PostgreSQL advisory lock; SQLite ``BEGIN IMMEDIATE``)
    so that replicas starting together do not race each other.
    """
    url = normalize_url(url)
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
    engine = make_sync_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _UPGRADE_LOCK_KEY})
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()


def database_revision(url: str) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    engine = make_sync_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


async def open_store(url: str, *, migrate: bool = True) -> Store:
    """Open the store for ``url``, first upgrading the schema unless ``migrate=False``."""
    normalized = normalize_url(url)
    if migrate:
        await asyncio.to_thread(upgrade_database, normalized)
    elif normalized.startswith("sqlite"):
        _ensure_sqlite_dir(normalized)
    return SqlStore(normalized)
