"""Database outages: which errors mean "unreachable", and the worker's retry helper."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from pathlib import Path

import psycopg
import psycopg.errors as pg_errors
import pytest
from sqlalchemy import exc as sa_exc

from jobyard.core.errors import Conflict, DatabaseUnavailable
from jobyard.engine.retry import MAX_PAUSE, Persistent
from jobyard.store.sql.outage import Outage, classify, unavailable


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _refused() -> psycopg.OperationalError:
    """The real error of connecting where no server listens."""
    try:
        psycopg.connect(host="127.0.0.1", port=_closed_port(), user="x", connect_timeout=2)
    except psycopg.OperationalError as exc:
        return exc
    raise AssertionError("a connection to a closed port succeeded")


def _wrapped(orig: BaseException, *, invalidated: bool = False) -> sa_exc.DBAPIError:
    """What SQLAlchemy raises around a driver error."""
    return sa_exc.DBAPIError.instance(
        "SELECT 1", {}, orig, type(orig), connection_invalidated=invalidated
    )


# -- classification -------------------------------------------------------------------


def test_connection_refused_is_unreachable() -> None:
    refused = _refused()
    assert refused.sqlstate is None
    assert classify(refused) is Outage.UNREACHABLE
    assert classify(_wrapped(refused)) is Outage.UNREACHABLE


@pytest.mark.parametrize(
    "error",
    [
        pg_errors.AdminShutdown("terminating connection due to administrator command"),
        pg_errors.CrashShutdown("terminating connection because of crash of another server"),
        pg_errors.CannotConnectNow("the database system is starting up"),
        pg_errors.ConnectionFailure("connection failure"),
        pg_errors.TooManyConnections("sorry, too many clients already"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_server_going_away_is_unreachable(error: psycopg.Error) -> None:
    assert classify(_wrapped(error)) is Outage.UNREACHABLE


@pytest.mark.parametrize(
    "message",
    [
        'connection to server at "127.0.0.1", port 5432 failed: FATAL:  the database system '
        "is starting up",
        'connection to server at "127.0.0.1", port 5432 failed: FATAL:  the database system '
        "is shutting down",
        'connection to server at "db", port 5432 failed: timeout expired',
    ],
)
def test_connect_failures_of_a_server_coming_or_going_are_unreachable(message: str) -> None:
    assert classify(_wrapped(psycopg.OperationalError(message))) is Outage.UNREACHABLE


@pytest.mark.parametrize(
    "message",
    [
        'connection to server at "127.0.0.1", port 5432 failed: FATAL:  password '
        'authentication failed for user "jobyard"',
        'connection to server at "127.0.0.1", port 5432 failed: FATAL:  database "jobyard" '
        "does not exist",
        'connection to server at "127.0.0.1", port 5432 failed: FATAL:  no pg_hba.conf entry '
        'for host "10.0.0.9", user "jobyard", database "jobyard"',
    ],
)
def test_connect_refused_for_good_is_a_real_error(message: str) -> None:
    """A bad password or a missing database is a configuration error, not an outage."""
    assert classify(_wrapped(psycopg.OperationalError(message))) is None


def test_broken_connection_is_lost() -> None:
    """SQLAlchemy's disconnect detection (socket closed, server gone) wins over the code."""
    error = _wrapped(psycopg.OperationalError("server closed the connection"), invalidated=True)
    assert classify(error) is Outage.LOST


@pytest.mark.parametrize(
    "error",
    [
        pg_errors.UniqueViolation("duplicate key value"),
        pg_errors.InvalidPassword("password authentication failed"),
        pg_errors.InvalidCatalogName('database "nope" does not exist'),
        pg_errors.SyntaxError("syntax error"),
        pg_errors.SerializationFailure("could not serialize access"),
        sqlite3.OperationalError("no such table: jobs"),
        sqlite3.IntegrityError("UNIQUE constraint failed"),
        ValueError("not a database error"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_real_errors_are_not_outages(error: BaseException) -> None:
    assert classify(error) is None
    assert classify(_wrapped(error)) is None


def test_sqlite_lock_past_its_wait_is_busy(tmp_path: Path) -> None:
    path = f"{tmp_path}/locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError) as raised:
            other.execute("BEGIN IMMEDIATE")
        assert classify(raised.value) is Outage.BUSY
        assert classify(_wrapped(raised.value)) is Outage.BUSY
        assert classify(TimeoutError("SQLite write lock not obtained in 10 s")) is Outage.BUSY
        assert classify(sa_exc.TimeoutError("QueuePool limit reached")) is Outage.BUSY
    finally:
        other.close()
        holder.close()


def test_errors_say_whether_a_write_may_have_happened() -> None:
    before = unavailable(Outage.UNREACHABLE, committing=False)
    assert before.committed is False and before.code == "database_unavailable"
    assert "unreachable" in before.message and before.retry_after > 0
    during = unavailable(Outage.LOST, committing=True)
    assert during.committed is None and during.details["committed"] == "unknown"
    assert "may or may not have been applied" in during.message
    assert "locked" in unavailable(Outage.BUSY, committing=False).message


# -- the retry helper ------------------------------------------------------------------


def _down(committed: bool | None = False) -> DatabaseUnavailable:
    return DatabaseUnavailable("the database is unreachable", committed=committed)


async def test_persistent_repeats_until_the_database_answers() -> None:
    outcomes: list[BaseException | str] = [_down(), _down(), _down(), "done"]
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    persistent = Persistent("test call", patience=30)
    assert await persistent.run(call) == "done"
    assert calls == 4 and persistent.failures == 3 and not persistent.unsure


async def test_persistent_remembers_an_unacknowledged_commit() -> None:
    outcomes: list[BaseException | int] = [_down(committed=None), _down(), 7]
    seen_unsure: list[bool] = []
    persistent = Persistent("test call", patience=30)

    async def call() -> int:
        seen_unsure.append(persistent.unsure)
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert await persistent.run(call) == 7
    # The attempt after the unacknowledged commit knows it must check for its effect.
    assert seen_unsure == [False, True, True]


async def test_persistent_gives_up_after_its_patience() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def call() -> None:
        raise _down()

    persistent = Persistent("test call", patience=0.6)
    with pytest.raises(DatabaseUnavailable):
        await persistent.run(call)
    elapsed = loop.time() - started
    assert 0.3 <= elapsed <= 0.6 + MAX_PAUSE + 0.5, elapsed
    assert persistent.failures >= 3  # backed off, but did not stop at the first failure


async def test_persistent_does_not_retry_real_errors() -> None:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise Conflict("job 1 is FINISHED: cannot move to RUNNING")

    with pytest.raises(Conflict):
        await Persistent("test call", patience=30).run(call)
    assert calls == 1
