"""The connections and threads a store runs its transactions on (see
:mod:`jobyard.store.sql.base`): a :class:`Side` is an engine with its threads, each
keeping a connection; :class:`LoopSide` is the one connection used on the event loop's
own thread."""

from __future__ import annotations

import threading

from sqlalchemy import Connection, Engine

from jobyard.store.sql.threads import StoreThreads


class Side:
    """An engine with its threads (none: inline); each thread keeps one connection.

    A connection per thread (instead of a pool checkout per call) saves a checkout,
    a reset and a return on every transaction.
    """

    def __init__(self, engine: Engine, threads: int, name: str) -> None:
        self.engine = engine
        self.executor = StoreThreads(threads, name) if threads else None
        self._local = threading.local()
        self._opened: list[Connection] = []
        self._lock = threading.Lock()

    def connection(self) -> Connection:
        """This thread's connection (opened on first use, reopened after a failure)."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            fresh = self.engine.connect()
            with self._lock:
                if conn is not None:
                    conn.close()
                    self._opened.remove(conn)
                self._opened.append(fresh)
            self._local.conn = conn = fresh
        return conn

    def close(self) -> None:
        """Stop the threads, then close their connections (the engine, which other sides
        may share, is disposed of by the store once every side is closed)."""
        if self.executor is not None:
            self.executor.shutdown()
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()


class LoopSide:
    """One more connection of the writer's engine, for the transactions run on the event
    loop's thread (see :meth:`SqlBase._write_on_loop`); opened on a writer thread."""

    def __init__(self, side: Side) -> None:
        self._side = side
        self._conn: Connection | None = None
        self._preparing = False

    def ready(self) -> bool:
        """True while the connection is open and usable."""
        conn = self._conn
        return conn is not None and not conn.closed and not conn.invalidated

    def prepare(self) -> None:
        """Open (or reopen) the connection: call it on a writer thread, not the loop."""
        if self._preparing or self.ready():
            return
        self._preparing = True
        try:
            fresh = self._side.engine.connect()
            # The loop must never wait long on this connection: a lock held elsewhere
            # or a slow statement aborts the transaction (nothing committed), which
            # is then run on a writer thread (see SqlBase._write_on_loop).
            fresh.exec_driver_sql(f"SET lock_timeout = '{LOOP_LOCK_TIMEOUT_MS}ms'")
            fresh.exec_driver_sql(f"SET statement_timeout = '{LOOP_STATEMENT_TIMEOUT_MS}ms'")
            fresh.commit()
            with self._side._lock:
                old, self._conn = self._conn, fresh
                if old is not None and old in self._side._opened:
                    self._side._opened.remove(old)
                    old.close()
                self._side._opened.append(fresh)
        finally:
            self._preparing = False

    def connection(self) -> Connection:
        """The open connection; ``NotReady`` when it broke (never connects here)."""
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            raise NotReady
        return conn


#: Limits of a transaction on the event loop's connection: past them PostgreSQL aborts
#: it (lock_not_available, query_canceled) and it runs again on a writer thread.
LOOP_LOCK_TIMEOUT_MS = 50
LOOP_STATEMENT_TIMEOUT_MS = 500
LOOP_ABORTED_PGCODES = frozenset({"55P03", "57014"})


class NotReady(Exception):
    """The loop's connection broke: run the transaction on a writer thread instead."""
