"""Fixtures shared by every test suite: database URLs for both engines.

* ``pg_cluster`` (session): a throwaway PostgreSQL cluster (see ``tests/support/pg.py``);
  started on first use, stopped at the end. Missing binaries FAIL the test, they do
  not skip it: ``make test`` installs them.
* ``own_cluster`` (module): a cluster of the module's own, to restart and stop at will.
* ``pg_url`` / ``sqlite_url``: a fresh, empty database per test.
* ``store_url``: the same, parametrized over ``sqlite`` and ``postgresql``.
* ``migrated_store_url``: like ``store_url`` but already at the head revision and empty
  (a copied SQLite file; a reset PostgreSQL database): cheap. Use it with
  ``open_store(url, migrate=False)``.
* ``s3_server`` (session): a local S3 server (moto), see ``tests/support/s3.py``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pg import PgCluster, PostgresMissing, start_cluster
from tests.support.s3 import S3Server, start_s3

ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.pg),
]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One PostgreSQL cluster for the whole session."""
    try:
        cluster = start_cluster()
    except PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of the test module's own, which it may restart and stop."""
    try:
        cluster = start_cluster()
    except PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database (dropped after the test)."""
    with pg_cluster.fresh_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh SQLite file (not created yet)."""
    return f"sqlite:///{tmp_path / 'jobyard.db'}"


@pytest.fixture(params=ENGINES)
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database URL, once per engine."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from jobyard.store.factory import upgrade_database

    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture
def migrated_sqlite_url(_sqlite_template: Path, tmp_path: Path) -> str:
    """URL of a fresh SQLite database already at the head revision."""
    target = tmp_path / "jobyard.db"
    shutil.copyfile(_sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def migrated_pg_url(pg_cluster: PgCluster) -> str:
    """URL of a PostgreSQL database at the head revision, emptied for this test."""
    from jobyard.store.factory import upgrade_database
    from jobyard.store.schema import metadata

    children_first = [t.name for t in reversed(metadata.sorted_tables)]
    return pg_cluster.migrated_database(upgrade_database, children_first)


@pytest.fixture(params=ENGINES)
def migrated_store_url(request: pytest.FixtureRequest) -> str:
    """A fresh database at the head revision, once per engine."""
    fixture = "migrated_sqlite_url" if request.param == "sqlite" else "migrated_pg_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A local S3 server (moto's server mode) for the whole session; tests make buckets."""
    server = start_s3()
    try:
        yield server
    finally:
        server.stop()
