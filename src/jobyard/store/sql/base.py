"""Engine plumbing shared by every part of :class:`~jobyard.store.sql.SqlStore`.

The chosen shape: synchronous SQLAlchemy Core connections, each protocol method running
ONE transaction to completion without an ``await`` inside it (no event-loop latency
inside a held lock). One code path for both engines.

* SQLite: transactions run **inline on the calling event loop** (a few hundred
  microseconds each). Measured: a thread hop per call (executor submit, GIL hand-off,
  future chaining) cost more than the transaction itself and capped burst throughput
  near 150 jobs/s. Writes start with ``BEGIN IMMEDIATE`` (the write lock is taken up
  front); while another process (a worker process, another CLI) holds it we retry with
  sub-millisecond pauses rather than SQLite's busy handler, whose 1, 2, 5, 10 ms sleeps
  dominated under bursts. Reads use a separate connection with plain ``BEGIN`` (WAL
  readers never block the writer).
* PostgreSQL: psycopg 3 (sync) through a ``QueuePool`` and a few threads; READ
  COMMITTED. The job path (submissions, claims, reports) has a lane of its own: one
  thread with one connection (:meth:`SqlBase._write_job`). Every transaction that may
  promote jobs of a jobconfig locks that jobconfig row first (``FOR UPDATE``), so locks
  are always taken jobconfig-first, then jobs, and transactions cannot deadlock on each
  other.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    create_engine,
    event,
    literal_column,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql.elements import ColumnElement

from jobyard.core.cursors import decode_cursor as decode_cursor  # store modules import it here
from jobyard.core.cursors import encode_cursor as encode_cursor
from jobyard.core.errors import InvalidInput
from jobyard.core.jobs import JobStatus
from jobyard.core.models import ApiToken, Job, JobConfig, JobEvent, JobFile, Package, WorkerInfo
from jobyard.store.schema import audit, job_events, jobs
from jobyard.store.sql.outage import Outage, OutageLog, classify, unavailable
from jobyard.store.sql.pgjson import use_orjson
from jobyard.store.sql.prepared import BulkInsert
from jobyard.store.sql.sides import LOOP_ABORTED_PGCODES, LoopSide, NotReady, Side

T = TypeVar("T")
P = ParamSpec("P")

#: PostgreSQL error codes worth one more try: serialization failure, deadlock.
_RETRYABLE_PGCODES = frozenset({"40001", "40P01"})
_RETRIES = 3

_SQLITE_READERS = 2
_PG_THREADS = 4
#: Threads of the job path's lane (see SqlBase._write_job): one, on purpose.
_PG_JOB_THREADS = 1
#: Seconds to wait for a new PostgreSQL connection before calling the server unreachable.
_PG_CONNECT_TIMEOUT = 5


def utcnow() -> datetime:
    """The store's clock: aware UTC, taken once per transaction."""
    return datetime.now(UTC)


def normalize_url(url: str) -> str:
    """Map ``postgresql://`` / ``postgres://`` to the psycopg 3 driver; keep the rest.

    ``InvalidInput`` for other schemes and for in-memory SQLite (each connection would
    see its own empty database).
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend != "sqlite":
        raise InvalidInput(f"unsupported database URL scheme: {parsed.drivername}")
    elif parsed.database in (None, "", ":memory:") or "mode=memory" in str(parsed):
        # Readers and the writer use separate connections: they must share a file.
        raise InvalidInput("an SQLite store needs a database file: sqlite:///path/to/file.db")
    return parsed.render_as_string(hide_password=False)


_LOCK_WAIT_SECONDS = 10.0


def _attempt(statement: Callable[[], object]) -> bool:
    """Run one SQLite statement that needs a lock; False while another connection has it."""
    try:
        statement()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return False
        raise
    return True


def _try_begin_immediate(raw: Any) -> bool:
    """One attempt at ``BEGIN IMMEDIATE``; False while another connection holds the lock."""
    return _attempt(lambda: raw.execute("BEGIN IMMEDIATE"))


def _until_locked(statement: Callable[[], object]) -> None:
    """Run ``statement``, pausing briefly while the lock it needs is busy (blocking).

    Also used for the switch to WAL on a new file: SQLite answers "locked" there
    without consulting its busy handler when several connections race.
    """
    deadline = time.monotonic() + _LOCK_WAIT_SECONDS
    pause = 0.0001
    while not _attempt(statement):
        if time.monotonic() > deadline:
            raise TimeoutError(f"SQLite lock not obtained in {_LOCK_WAIT_SECONDS:.0f} s")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.002)


class _Busy(Exception):
    """The SQLite write lock is held by another connection (try again later)."""


def _sqlite_engine(url: str, *, begin: str, pool_size: int) -> Engine:
    """A pysqlite engine that emits our own BEGIN (the SQLAlchemy-documented recipe)."""
    writer = begin == "BEGIN IMMEDIATE"
    engine = create_engine(
        url,
        poolclass=QueuePool,
        pool_size=pool_size,
        max_overflow=2,
        connect_args={"check_same_thread": False, "timeout": 10.0},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Driver-level autocommit: sqlite3 must not issue its own BEGINs.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout = 10000")
            _until_locked(lambda: cursor.execute("PRAGMA journal_mode = WAL"))
            cursor.execute("PRAGMA synchronous = NORMAL")
            # Checkpoint every ~40 MB of WAL instead of ~4 MB: fewer fsync pauses under
            # bursts of small transactions.
            cursor.execute("PRAGMA wal_autocheckpoint = 10000")
            cursor.execute("PRAGMA foreign_keys = ON")
            if writer:
                # Writers then wait for the lock in _begin_immediate (short pauses);
                # SQLite's own busy handler sleeps 1, 2, 5, 10... ms, far too coarse for
                # many small transactions from several processes.
                cursor.execute("PRAGMA busy_timeout = 0")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if writer:
            raw: Any = conn.connection.driver_connection
            if not raw.in_transaction:  # SqlBase._write took the lock already
                _until_locked(lambda: raw.execute("BEGIN IMMEDIATE"))
        else:
            conn.exec_driver_sql(begin)

    return engine


def make_engines(url: str) -> tuple[Engine, Engine]:
    """``(write_engine, read_engine)`` for ``url``; the same engine twice on PostgreSQL."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        writer = _sqlite_engine(url, begin="BEGIN IMMEDIATE", pool_size=1)
        reader = _sqlite_engine(url, begin="BEGIN", pool_size=_SQLITE_READERS)
        return writer, reader
    connect_args: dict[str, Any] = {"options": "-c timezone=UTC"}
    if "connect_timeout" not in make_url(url).query:
        # A vanished server (no answer at all, not even a refusal) must not hold a
        # store thread forever: calls fail with 503 and workers retry instead.
        connect_args["connect_timeout"] = _PG_CONNECT_TIMEOUT
    engine = create_engine(
        url,
        poolclass=QueuePool,
        # A connection per store thread, one for the job lane, one for the event loop.
        pool_size=_PG_THREADS + _PG_JOB_THREADS + 1,
        max_overflow=2,
        # Checkouts are rare (each store thread keeps its connection), so a ping on
        # checkout is cheap; connections that break in use are replaced in _run_sync.
        pool_pre_ping=True,
        connect_args=connect_args,
    )
    event.listen(engine, "connect", use_orjson)
    return engine, engine


def make_sync_engine(url: str) -> Engine:
    """One engine for one-off work (migrations): writer semantics on SQLite."""
    return make_engines(url)[0]


# -- transactions ----------------------------------------------------------------------


_EVENT_COLUMNS = ("job_id", "status", "at", "actor", "reason")
_AUDIT_COLUMNS = tuple(c.name for c in audit.c if c.name != "id")
_INSERT_EVENTS = BulkInsert(job_events, _EVENT_COLUMNS)
_INSERT_AUDIT = BulkInsert(audit, _AUDIT_COLUMNS)


class Tx:
    """One transaction: its connection, its clock, and the job events to record.

    Events (and audit rows) are buffered and written with one statement each just
    before commit (:class:`BulkInsert`), in the order they were recorded (so their ids
    order them).

    ``promote_later``: set while a transaction carries several submissions (see
    :mod:`jobyard.store.sql.submits`); the jobconfigs (``None``: ad-hoc jobs) whose
    SEQUENCED jobs are to be promoted once, at its end, instead of after each insert.
    """

    __slots__ = ("_audit", "_events", "conn", "now", "pg", "promote_later")

    def __init__(self, conn: Connection, pg: bool) -> None:
        self.conn = conn
        self.pg = pg
        self.now = utcnow()
        self._events: list[dict[str, Any]] = []
        self._audit: list[dict[str, Any]] = []
        self.promote_later: set[int | None] | None = None

    def audit(self, row: dict[str, Any]) -> None:
        """Record an ``audit`` row (written with the others before commit)."""
        self._audit.append(row)

    def event(
        self,
        job_id: int,
        status: JobStatus,
        actor: str,
        reason: str | None,
        at: datetime | None = None,
    ) -> None:
        """Record that ``job_id`` entered ``status`` now (or ``at``, when it is known)."""
        self._events.append(
            {
                "job_id": job_id,
                "status": status.value,
                "at": self.now if at is None else at,
                "actor": actor,
                "reason": reason,
            }
        )

    def flush(self) -> None:
        """Write the buffered events and audit rows (called by the runner before commit)."""
        if self._events:
            _INSERT_EVENTS.run(self.conn, self._events)
            self._events.clear()
        if self._audit:
            rows = [{c: row.get(c) for c in _AUDIT_COLUMNS} for row in self._audit]
            _INSERT_AUDIT.run(self.conn, rows)
            self._audit.clear()


class SqlBase:
    """Engines, executors and the run-one-transaction helpers the mixins build on."""

    def __init__(self, url: str) -> None:
        write_engine, read_engine = make_engines(url)
        self._pg = write_engine.dialect.name == "postgresql"
        if self._pg:
            self._writer = Side(write_engine, _PG_THREADS, "jobyard-pg")
            self._reader = self._writer
            self._job_lane = Side(write_engine, _PG_JOB_THREADS, "jobyard-pg-jobs")
            self._on_loop: LoopSide | None = LoopSide(self._job_lane)
        else:
            self._on_loop = None
            self._writer = Side(write_engine, 0, "jobyard-sqlite-w")
            self._reader = Side(read_engine, 0, "jobyard-sqlite-r")
            self._job_lane = self._writer
        self._closed = False
        self._close_lock = threading.Lock()
        self._outages = OutageLog()
        #: Write transactions under way on threads, either lane (see _write_on_loop).
        self._writing = 0

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return "postgresql" if self._pg else "sqlite"

    async def close(self) -> None:
        """Stop the threads and close every pooled connection (idempotent)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        sides = {id(s): s for s in (self._job_lane, self._writer, self._reader)}.values()
        for side in sides:
            await asyncio.to_thread(side.close)
        # Disposed of last: a connection given back to a pool already disposed of would
        # stay open until garbage collection.
        for engine in {id(s.engine): s.engine for s in sides}.values():
            await asyncio.to_thread(engine.dispose)

    # -- running -------------------------------------------------------------------

    def _run_sync(
        self,
        side: Side | LoopSide,
        lock_first: bool,
        read_only: bool,
        fn: Callable[Concatenate[Tx, P], T],
        *args: P.args,
        **kw: P.kwargs,
    ) -> T:
        """Run one transaction; retry serialization failures and stale connections.

        A connection that broke before the commit was sent (a pooled connection the
        server closed when it restarted) took nothing with it: the transaction is run
        once more on a fresh connection, as is a ``read_only`` one whatever the moment.
        Outages that remain become ``DatabaseUnavailable`` (see
        :mod:`jobyard.store.sql.outage`); a write whose connection broke during the
        commit leaves its outcome unknown and is never repeated here.
        """
        attempt = 0
        fresh_retry = True
        while True:
            attempt += 1
            committing = False
            try:
                conn = side.connection()
                if lock_first and not _try_begin_immediate(conn.connection.driver_connection):
                    raise _Busy
                with conn.begin():
                    tx = Tx(conn, self._pg)
                    result = fn(tx, *args, **kw)
                    tx.flush()
                    committing = True
            except (DBAPIError, SATimeoutError, TimeoutError) as exc:
                kind = classify(exc)
                if kind is None:
                    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
                    if attempt < _RETRIES and code in _RETRYABLE_PGCODES:
                        continue
                    raise
                if kind is Outage.LOST and fresh_retry and (read_only or not committing):
                    fresh_retry = False
                    continue
                self._outages.failed(kind, exc)
                raise unavailable(kind, committing=committing and not read_only) from exc
            self._outages.succeeded()
            return result

    # _write and _write_job hand back _write_on's coroutine itself: no frame of their own
    # on every transaction.
    def _write(
        self, fn: Callable[Concatenate[Tx, P], T], *args: P.args, **kw: P.kwargs
    ) -> Coroutine[Any, Any, T]:
        """Run ``fn(tx, ...)`` as one write transaction on the writer side."""
        return self._write_on(self._writer, fn, *args, **kw)

    def _write_job(
        self, fn: Callable[Concatenate[Tx, P], T], *args: P.args, **kw: P.kwargs
    ) -> Coroutine[Any, Any, T]:
        """:meth:`_write` for the job path (submissions, claims, reports): on PostgreSQL,
        on a lane of its own, a single thread with its own connection.

        One thread rather than several: under a burst the job path's transactions then
        run one after the other on one connection (the submissions and claims batch
        while they wait), and each hand-off wakes the same thread and the same
        PostgreSQL backend. Spread over four threads, the same work kept the API
        process's threads waking one another and waiting for the GIL, and left the
        machine ~15 % idle (see docs/benchmarks.md, "One thread for the job path").
        Everything else (reads, maintenance, the console's writes) keeps the other
        threads, so a slow statement there never holds up the job path.
        """
        return self._write_on(self._job_lane, fn, *args, **kw)

    async def _write_on(
        self, side: Side, fn: Callable[Concatenate[Tx, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        if side.executor is not None:
            self._writing += 1
            try:
                return await side.executor.run(
                    lambda: self._run_sync(side, False, False, fn, *args, **kw)
                )
            finally:
                self._writing -= 1
        loop = asyncio.get_running_loop()
        # Inline (SQLite): while another process holds the write lock, let this loop's
        # other work run, then try again.
        deadline = loop.time() + _LOCK_WAIT_SECONDS
        while True:
            try:
                return self._run_sync(side, True, False, fn, *args, **kw)
            except _Busy:
                if loop.time() > deadline:
                    error = TimeoutError(
                        f"SQLite write lock not obtained in {_LOCK_WAIT_SECONDS:.0f} s"
                    )
                    self._outages.failed(Outage.BUSY, error)
                    raise unavailable(Outage.BUSY, committing=False) from error
                await asyncio.sleep(0.0002)

    async def _write_on_loop(
        self, fn: Callable[Concatenate[Tx, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        """:meth:`_write_job`, but run on the calling (event loop's) thread while the server
        is idle: PostgreSQL, no other write under way, an open connection, no outage.

        For the short transactions of one job on an idle server (its submit, its claim):
        a transaction on the writer threads crosses threads twice and takes the GIL back
        after every statement, which on a busy machine costs more than the statements
        (see docs/benchmarks.md, "Idle dispatch through a remote worker"). The loop is
        blocked meanwhile, so only where that costs nobody: no other write is under way
        (a busy server keeps its threads), the connection was opened earlier by a writer
        thread (never connect on the loop) and no outage is going on (a failing database
        answers on the writer threads as usual).
        """
        side = self._job_lane
        loop_side = self._on_loop
        if side.executor is None or loop_side is None or self._writing or self._outages.ongoing:
            return await self._write_job(fn, *args, **kw)
        if not loop_side.ready():
            # Open the connection on the lane's thread, for the next claims on the loop.
            await side.executor.run(loop_side.prepare)
            return await self._write_job(fn, *args, **kw)
        try:
            return self._run_sync(loop_side, False, False, fn, *args, **kw)
        except NotReady:  # broke before anything was committed: on a thread, as usual
            return await self._write_job(fn, *args, **kw)
        except DBAPIError as exc:
            # A lock held elsewhere or a slow statement: PostgreSQL aborted the whole
            # transaction, so running it again on a thread cannot apply it twice.
            if getattr(exc.orig, "sqlstate", None) not in LOOP_ABORTED_PGCODES:
                raise
            return await self._write_job(fn, *args, **kw)

    async def _read(self, fn: Callable[Concatenate[Tx, P], T], *args: P.args, **kw: P.kwargs) -> T:
        """Run ``fn(tx, ...)`` as one read-only transaction on the reader side."""
        side = self._reader
        if side.executor is None:
            return self._run_sync(side, False, True, fn, *args, **kw)
        return await side.executor.run(lambda: self._run_sync(side, False, True, fn, *args, **kw))


# -- SQL helpers -----------------------------------------------------------------------


def status_in(statuses: Iterable[JobStatus], table: Any = jobs) -> ColumnElement[bool]:
    """``<table>.status IN ('A', 'B')`` with the statuses rendered as SQL literals.

    Literals (not bound parameters) let both planners match the partial indexes
    (``WHERE status = 'QUEUED'``, ``WHERE status IN ('INITIALIZING', 'RUNNING')``); the
    values come from :class:`JobStatus`, never from user text.
    """
    ordered = sorted(s.value for s in statuses)
    if len(ordered) == 1:
        single: ColumnElement[bool] = table.c.status == literal_column(f"'{ordered[0]}'")
        return single
    many: ColumnElement[bool] = table.c.status.in_([literal_column(f"'{v}'") for v in ordered])
    return many


def status_is(status: JobStatus, table: Any = jobs) -> ColumnElement[bool]:
    """``<table>.status = 'X'`` with a literal (see :func:`status_in`)."""
    return status_in((status,), table)


# -- pages -----------------------------------------------------------------------------


def check_limit(limit: int) -> int:
    """Validate a page size (1..1000)."""
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", {"limit": limit})
    return limit


# -- row mapping -----------------------------------------------------------------------

_JOB_STATUS_INDEX = [c.name for c in jobs.c].index("status")


def job_from_row(row: Sequence[Any]) -> Job:
    """Map a full ``jobs`` row (columns in table order = :class:`Job` field order)."""
    values = list(row)
    values[_JOB_STATUS_INDEX] = JobStatus(values[_JOB_STATUS_INDEX])
    return Job(*values)


def package_from_row(row: Sequence[Any]) -> Package:
    """Map a ``packages`` row."""
    return Package(*row)


def jobconfig_from_row(row: Sequence[Any]) -> JobConfig:
    """Map a ``jobconfigs`` row."""
    return JobConfig(*row)


def event_from_row(row: Sequence[Any]) -> JobEvent:
    """Map ``(job_id, status, at, actor, reason)``."""
    job_id, status, at, actor, reason = row
    return JobEvent(job_id=job_id, status=JobStatus(status), at=at, actor=actor, reason=reason)


def job_file_from_row(row: Sequence[Any]) -> JobFile:
    """Map a ``job_files`` row."""
    return JobFile(*row)


def token_from_row(row: Sequence[Any]) -> ApiToken:
    """Map ``(id, name, role, created_at, revoked)``."""
    return ApiToken(*row)


def worker_from_row(row: Sequence[Any]) -> WorkerInfo:
    """Map a ``workers`` row (labels NULL, as rows written before 0008: none)."""
    info = WorkerInfo(*row)
    if info.labels is None:
        return replace(info, labels={})
    return info


def upsert(tx: Tx, table: Table) -> Any:
    """The dialect's INSERT with ``ON CONFLICT`` support (same API on both engines)."""
    return pg_insert(table) if tx.pg else sqlite_insert(table)
