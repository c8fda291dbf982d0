"""Wake-ups between the servers of one PostgreSQL database (LISTEN/NOTIFY).

Each server's :class:`~jobyard.engine.bus.Bus` is its fast path: a submit wakes the
server's own idle slots within a millisecond, exactly as with one server. The
:class:`BusRelay` adds the other servers: it hears every event of its bus (work queued,
a job changed or ended, an abort requested, schedules changed), coalesces what arrives
while a notification is on its way (or within :data:`FLUSH_GAP` of the last one) into
the next one, and sends it on the channel; it applies what other servers send to its
bus, and ignores its own messages (each names its server). A server alone on its
database sends nothing (the listener counts the others; a server that starts says
hello, an empty message, so the others start sending at once).

So a job submitted through a server without slots wakes the slots of another server, a
log follower on server A sees the end of a job run by server B at once, and an abort
through A reaches the worker of B without waiting for its next lease renewal.

A server that counts no other listener drops its events. After both listeners were cut
(a PostgreSQL restart), the one back first counts none, and would drop unheard what
happens until the other's hello reaches it, although the other listens already. So
when its count goes from none to some (by a count or a message), a server tells the
others to wake everything once (``"e": 1``, coalesced with whatever else is pending),
which covers whatever it dropped. That happens once per such change (a server starting
beside others, the server back first after an outage), never on an ordinary hello, and
costs nothing per event.

Messages are compact JSON: ``{"r": server, "w": 1, "j": [ids], "a": [[id, reason]],
"s": 1, "e": 1}`` (absent keys: nothing of that kind). Everything in them is a wake-up:
the database stays the source of truth, so a lost message only costs the receivers their
poll interval — and after the listener lost its connection it wakes everything once. A
wake-everything cannot replay dropped aborts: a worker learns of those at its next lease
renewal, as without notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from jobyard.engine.bus import Bus
from jobyard.store.notify import MAX_PAYLOAD_BYTES, PgChannel

log = logging.getLogger("jobyard.relay")

#: The LISTEN/NOTIFY channel the servers of one database share.
CHANNEL = "jobyard_events"
#: Shortest time between two notifications of one server (seconds). A burst of submits
#: and ends then costs a few hundred notifications a second, not two per job; a lone
#: event after a quiet spell is sent at once.
FLUSH_GAP = 0.005
#: Longest abort reason carried (the reason is recorded in the database anyway).
MAX_REASON = 200


class BusRelay:
    """Sends one bus's events to the other servers and applies theirs to it."""

    def __init__(self, bus: Bus, database_url: str) -> None:
        self._bus = bus
        #: This server's id in messages (its own messages come back to its listener).
        self.server = uuid.uuid4().hex[:12]
        self._own_prefix = '{"r":"' + self.server + '"'
        self._channel = PgChannel(
            database_url,
            CHANNEL,
            on_message=self._received,
            on_connect=self._connected,
            on_listeners=self._listeners,
        )
        #: Other servers listening on the database (0: nothing is sent at all).
        self.peers = 0
        #: A message is due even without events (a hello, a wake-everything).
        self._due = False
        #: The next message tells the others to wake everything (see _peers_appeared).
        self._everyone = False
        self._work = False
        self._schedules = False
        self._jobs: dict[int, None] = {}  # ordered set
        self._aborts: list[tuple[int, str]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._last_flush = -FLUSH_GAP
        self._listener: asyncio.Task[None] | None = None
        #: Messages sent and applied since start (health, tests).
        self.sent = 0
        self.applied = 0

    # -- lifecycle ---------------------------------------------------------------
    async def start(self, *, listening_timeout: float = 5.0) -> None:
        """Listen, attach to the bus; wait a little for the first connection.

        A server that starts while the database is unreachable still starts (its store
        would have failed first anyway); the listener keeps trying in the background.
        """
        self._listener = asyncio.create_task(self._channel.listen(), name="relay-listener")
        self._bus.relay_to(self)
        if not await self._channel.wait_listening(listening_timeout):
            log.warning("not listening to other servers yet; retrying in the background")

    async def stop(self) -> None:
        """Detach from the bus, send what is pending (briefly), stop listening."""
        self._bus.relay_to(None)
        if self._flushing is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._flushing), 2.0)
            self._flushing.cancel()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        await self._channel.close()

    @property
    def listener_connects(self) -> int:
        """How many times the listener has (re)connected."""
        return self._channel.connects

    def _connected(self, reconnected: bool) -> None:
        """Say hello (other servers start sending to this one at once); after a lost
        connection, wake every waiter here: their events may have been missed."""
        self._due = True
        self._schedule_flush()
        if reconnected:
            self._bus.wake_everyone()

    def _listeners(self, others: int) -> None:
        if others and not self.peers:
            self._peers_appeared()
        self.peers = others

    def _peers_appeared(self) -> None:
        """The count went from no other listener to some: events raised here while it
        was none were dropped, and some may concern waiters of the servers now heard
        of (one that listened again before its hello reached this one, one that
        started). Tell them all to wake everything, once: they re-read the database."""
        self._due = self._everyone = True
        self._schedule_flush()

    # -- the bus's events (Relay protocol) -----------------------------------------
    # Alone on the database (no other listener), a server sends nothing: one attribute
    # test per event. A server that starts says hello, so the others know at once.
    def work(self) -> None:
        """Work may have been queued here."""
        if self.peers:
            self._work = True
            self._schedule_flush()

    def job(self, job_id: int) -> None:
        """A job changed here."""
        if self.peers:
            self._jobs[job_id] = None
            self._schedule_flush()

    def abort(self, job_id: int, reason: str) -> None:
        """An abort was requested here."""
        if self.peers:
            self._aborts.append((job_id, reason[:MAX_REASON]))
            self._schedule_flush()

    def schedules(self) -> None:
        """Schedules changed here."""
        if self.peers:
            self._schedules = True
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        # One send at a time: what arrives meanwhile goes with the next one, so a burst
        # of submissions costs a notification per round trip, not per job.
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._due or self._work or self._schedules or self._jobs or self._aborts:
            # The first events after a quiet spell go at once; under load, at most one
            # notification per FLUSH_GAP carries everything raised meanwhile.
            wait = self._last_flush + FLUSH_GAP - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_flush = loop.time()
            payloads = self._take()
            try:
                await self._channel.send(payloads)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cannot notify the other servers")
                return
            self.sent += len(payloads)

    def _take(self) -> list[str]:
        """The pending events as payloads (several when they exceed one's size)."""
        base: dict[str, Any] = {"r": self.server}
        if self._work:
            base["w"] = 1
        if self._schedules:
            base["s"] = 1
        if self._everyone:
            base["e"] = 1
        jobs, aborts = list(self._jobs), self._aborts
        self._due = self._work = self._schedules = self._everyone = False
        self._jobs = {}
        self._aborts = []
        payloads: list[str] = []
        message = dict(base)
        size = len(_encode(message))
        for key, items in (("a", [[i, r] for i, r in aborts]), ("j", jobs)):
            for item in items:
                cost = len(_encode(item)) + 8
                if size + cost > MAX_PAYLOAD_BYTES and (message.get("a") or message.get("j")):
                    payloads.append(_encode(message))
                    message = {"r": self.server}
                    size = len(_encode(message))
                message.setdefault(key, []).append(item)
                size += cost
        payloads.append(_encode(message))
        return payloads

    # -- other servers' events -------------------------------------------------------
    def _received(self, payload: str) -> None:
        if payload.startswith(self._own_prefix):
            return  # our own message: this server acted on it already
        try:
            message = json.loads(payload)
            jobs = [int(i) for i in message.get("j", ())]
            aborts = [(int(i), str(r)) for i, r in message.get("a", ())]
        except (ValueError, TypeError, AttributeError, OverflowError):
            log.warning("ignored a malformed notification: %r", payload[:200])
            return
        self.applied += 1
        if not self.peers:  # a hello (or any message) before the next count
            self.peers = 1  # until that count says otherwise
            self._peers_appeared()
        self._bus.apply_remote(
            work=bool(message.get("w")),
            jobs=jobs,
            aborts=aborts,
            schedules=bool(message.get("s")),
        )
        if message.get("e"):
            self._bus.wake_everyone()


def _encode(message: object) -> str:
    return json.dumps(message, separators=(",", ":"))
