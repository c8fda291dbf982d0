"""PostgreSQL LISTEN/NOTIFY as a message channel between the servers of one database.

Transport only: a :class:`PgChannel` sends text payloads on one channel and hands every
payload it hears to a callback; what the payloads mean is the engine's business
(``jobyard.engine.relay``). Each server process holds two connections of its own beside
the store's pool: one that only listens (psycopg 3 async ``notifies()``) and one that
sends, so a send never waits behind the listener nor behind a store transaction, and a
NOTIFY never lengthens a job transaction (PostgreSQL serialises the commits of
transactions that notify).

Both connections come back after the database does (a restart, a network cut): the
listener reconnects with back-off and then calls ``on_connect(reconnected=True)``,
because whatever was notified while it was away is lost; the sender keeps its unsent
payload and sends it on a new connection.

The listener also counts the other listeners of the database (sessions named
``jobyard listener`` in ``pg_stat_activity``) when it connects and every
:data:`CHECK_SECONDS` (which doubles as its liveness check), so that a server alone on
its database need not send anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import psycopg
from sqlalchemy.engine import make_url

log = logging.getLogger("jobyard.notify")

#: Longest payload PostgreSQL accepts (8000 bytes), with room to spare.
MAX_PAYLOAD_BYTES = 7900
#: Back-off between reconnection attempts: first, then doubling up to the last.
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
#: An idle listener checks its connection and counts the other listeners this often (a
#: silent network cut would otherwise go unnoticed until TCP gives up).
CHECK_SECONDS = 2.0
#: What the listening connections are called (``pg_stat_activity.application_name``).
LISTENER_NAME = "jobyard listener"
_OTHER_LISTENERS = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND application_name = %s AND pid <> pg_backend_pid()"
)
#: Seconds to wait for a connection (a vanished host must not hang the loop).
CONNECT_TIMEOUT = 5


def conninfo_of(url: str) -> str:
    """A libpq connection string for a store URL (``postgresql[+driver]://…``)."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


class PgChannel:
    """One LISTEN/NOTIFY channel of one database, kept up through outages."""

    def __init__(
        self,
        url: str,
        channel: str,
        *,
        on_message: Callable[[str], None],
        on_connect: Callable[[bool], None],
        on_listeners: Callable[[int], None],
    ) -> None:
        self._conninfo = conninfo_of(url)
        self._channel = channel
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_listeners = on_listeners
        self._sender: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._send_backoff = 0.0
        #: Set once the listener is listening (for :meth:`wait_listening`).
        self._listening = asyncio.Event()
        #: Times the listener (re)connected; tests and health read it.
        self.connects = 0

    async def _connect(self, name: str) -> psycopg.AsyncConnection[tuple[object, ...]]:
        return await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            application_name=name,  # what pg_stat_activity shows
            connect_timeout=CONNECT_TIMEOUT,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )

    async def wait_listening(self, timeout: float) -> bool:
        """True once the listener listens (within ``timeout`` seconds)."""
        try:
            await asyncio.wait_for(self._listening.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def listen(self) -> None:
        """Listen until cancelled; reconnect with back-off whenever the connection drops."""
        backoff = FIRST_BACKOFF
        while True:
            conn = None
            try:
                conn = await self._connect(LISTENER_NAME)
                await conn.execute(f'LISTEN "{self._channel}"')
                self.connects += 1
                self._listening.set()
                if self.connects > 1:
                    log.info("listening to %s again", self._channel)
                self._on_connect(self.connects > 1)
                backoff = FIRST_BACKOFF
                while True:
                    # Also the liveness check: raises if the connection is gone.
                    row = await (await conn.execute(_OTHER_LISTENERS, (LISTENER_NAME,))).fetchone()
                    others = row[0] if row is not None else 0
                    self._on_listeners(others if isinstance(others, int) else 0)
                    async for note in conn.notifies(timeout=CHECK_SECONDS):
                        self._deliver(note.payload)
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                self._listening.clear()
                log.warning(
                    "notification listener lost its connection (%s); retrying in %.1f s",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                    backoff,
                )
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _deliver(self, payload: str) -> None:
        try:
            self._on_message(payload)
        except Exception:  # one bad message must not stop the listener
            log.exception("cannot handle notification %r", payload[:200])

    async def send(self, payloads: list[str]) -> None:
        """NOTIFY each payload; wait (with back-off) until the database takes them.

        Each payload is sent in autocommit, so it is delivered at once. Sending a payload
        twice (a connection that broke after the server took it) is harmless to
        listeners that treat messages as wake-ups.
        """
        while True:
            try:
                if self._sender is None or self._sender.closed:
                    self._sender = await self._connect("jobyard notifier")
                for payload in payloads:
                    await self._sender.execute("SELECT pg_notify(%s, %s)", (self._channel, payload))
                self._send_backoff = 0.0
                return
            except (psycopg.Error, OSError) as exc:
                sender, self._sender = self._sender, None
                if sender is not None:
                    with contextlib.suppress(Exception):
                        await sender.close()
                self._send_backoff = min(max(self._send_backoff * 2, FIRST_BACKOFF), MAX_BACKOFF)
                log.warning(
                    "cannot send a notification (%s); retrying in %.1f s",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                    self._send_backoff,
                )
                await asyncio.sleep(self._send_backoff)

    async def close(self) -> None:
        """Close the sending connection (the listener ends when its task is cancelled)."""
        sender, self._sender = self._sender, None
        if sender is not None:
            with contextlib.suppress(Exception):
                await sender.close()
