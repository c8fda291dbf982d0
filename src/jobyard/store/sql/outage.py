"""Which database errors mean "unreachable right now" rather than "this request is wrong".

A database restart or outage shows up in many shapes, and only these are transient:

* the connection broke under a statement or a commit: the server was shut down
  (``57P01`` admin shutdown, ``57P02`` crash of another backend), the socket closed, the
  server vanished (SQLAlchemy flags these as ``connection_invalidated``);
* a new connection cannot be made: refused, timed out, no route, "the database system
  is starting up / shutting down" (``57P03``), too many connections (``53300``), any
  connection exception of class ``08`` (psycopg reports connection-time failures as
  ``OperationalError`` without an SQLSTATE: only a lasting refusal — bad password, no
  such database or role — is told apart, by its message);
* SQLite: another process kept the database locked past our wait, and SQLAlchemy's
  pool could not hand out a connection in time.

Everything else (constraint violations, syntax, authentication ``28xxx``, a missing
database ``3D000``...) is a real error and keeps its usual answer.
"""

from __future__ import annotations

import enum
import logging
import sqlite3
import threading
import time

import psycopg
from sqlalchemy import exc as sa_exc

from jobyard.core.errors import DatabaseUnavailable

log = logging.getLogger("jobyard.store")

#: SQLSTATEs (besides class 08) of a server that is going away or not accepting yet.
_UNREACHABLE_PGCODES = frozenset({"57P01", "57P02", "57P03", "53300"})

#: Messages of a server that answered a connection attempt with a lasting refusal
#: (configuration errors, not outages). Servers set to another language word these
#: differently: they are then taken for outages (503, retried), never for a 500.
_REFUSED_FOR_GOOD = (
    "password authentication failed",
    "authentication failed for user",
    "no pg_hba.conf entry",
    "no password supplied",
    "does not exist",
    "permission denied",
)

#: Seconds a client is told to wait before trying again (``Retry-After``).
RETRY_AFTER_SECONDS = 2


class Outage(enum.Enum):
    """How a failed database call was transient (see the module docstring)."""

    LOST = "lost"  # an open connection broke: a fresh one may work at once
    UNREACHABLE = "unreachable"  # no connection can be made now
    BUSY = "busy"  # SQLite locked / no pooled connection free in time


def classify(error: BaseException) -> Outage | None:
    """The kind of outage ``error`` shows, or None for a real error."""
    if isinstance(error, sa_exc.TimeoutError | TimeoutError):
        return Outage.BUSY
    orig: BaseException | None = error
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return Outage.LOST
        orig = error.orig
    if isinstance(orig, sqlite3.OperationalError):
        text = str(orig)
        return Outage.BUSY if "locked" in text or "busy" in text else None
    if isinstance(orig, psycopg.Error):
        code = orig.sqlstate
        if code is None:
            # Connecting failed. libpq gives no SQLSTATE here, only text: no answer at
            # all (refused, timed out, closed), a server starting or stopping, or one
            # refusing us for good (bad password, no such database or role).
            if not isinstance(orig, psycopg.OperationalError):
                return None
            text = str(orig)
            if any(phrase in text for phrase in _REFUSED_FOR_GOOD):
                return None
            return Outage.UNREACHABLE
        if code.startswith("08") or code in _UNREACHABLE_PGCODES:
            return Outage.UNREACHABLE
    return None


def unavailable(kind: Outage, *, committing: bool) -> DatabaseUnavailable:
    """The error a caller sees for an outage; ``committing``: the commit was in flight."""
    if committing:
        return DatabaseUnavailable(
            "the database became unreachable while this change was being committed: it "
            "may or may not have been applied; check before repeating it",
            {"committed": "unknown", "retry_after_seconds": RETRY_AFTER_SECONDS},
            committed=None,
            retry_after=RETRY_AFTER_SECONDS,
        )
    if kind is Outage.BUSY:
        message = (
            "the database is busy (locked by another process, or no connection free) and "
            "did not free up in time; retry in a few seconds"
        )
    else:
        message = "the database is unreachable right now; retry in a few seconds"
    return DatabaseUnavailable(
        message,
        {"retry_after_seconds": RETRY_AFTER_SECONDS},
        committed=False,
        retry_after=RETRY_AFTER_SECONDS,
    )


class OutageLog:
    """Logs the start and the end of an outage once each, not every failed call.

    Transactions run on several threads (PostgreSQL): transitions are taken under a
    lock; the common case (no outage) costs one attribute read.
    """

    def __init__(self) -> None:
        self._since: float | None = None
        self._lock = threading.Lock()

    @property
    def ongoing(self) -> bool:
        """True while the last call failed with an outage."""
        return self._since is not None

    def failed(self, kind: Outage, error: BaseException) -> None:
        """A call failed with an outage: log it if it is the first of this outage."""
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        cause = error.orig if isinstance(error, sa_exc.DBAPIError) else error
        first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        log.warning(
            "database %s: %s: %s (answering 503; workers retry)",
            kind.value,
            type(cause).__name__,
            first_line,
        )

    def succeeded(self) -> None:
        """A call succeeded: log the end of the outage, if one was going on."""
        if self._since is None:
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            log.warning("database reachable again after %.1f s", time.monotonic() - since)
