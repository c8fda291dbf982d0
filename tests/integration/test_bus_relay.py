"""The bus relay between two servers' buses, on a real PostgreSQL (no server around it).

Each event kind crosses from one bus to the other; a server ignores its own messages;
many events in one burst travel in few notifications (split under PostgreSQL's payload
limit); a listener whose connection is cut comes back and wakes every waiter once; what
a server dropped while it counted no other listener still wakes the others' waiters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest

from jobyard.engine.bus import Bus
from jobyard.engine.relay import BusRelay
from jobyard.store.notify import LISTENER_NAME

pytestmark = pytest.mark.pg


class Server:
    """One bus with its relay, recording the aborts its 'workers' were asked for and
    its listener's counts of the other listeners."""

    def __init__(self, url: str) -> None:
        self.bus = Bus()
        self.relay = BusRelay(self.bus, url)
        self.aborts: list[tuple[int, str]] = []
        self.bus.on_abort(self._abort)
        #: Every count of the other listeners the relay's listener made, in order.
        self.counts: list[int] = []
        channel = self.relay._channel
        report = channel._on_listeners

        def counted(others: int) -> None:
            self.counts.append(others)
            report(others)

        channel._on_listeners = counted

    def _abort(self, job_id: int, reason: str) -> bool:
        self.aborts.append((job_id, reason))
        return False


@pytest.fixture
async def servers(pg_url: str) -> AsyncIterator[tuple[Server, Server]]:
    a, b = Server(pg_url), Server(pg_url)
    await a.relay.start()
    await b.relay.start()
    # Each knows of the other (B's count at connection, A's through B's hello).
    await _until(lambda: a.relay.peers == 1 and b.relay.peers == 1)
    await _settle(a, b)
    try:
        yield a, b
    finally:
        await a.relay.stop()
        await b.relay.stop()


async def _until(check: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.005)


async def _settle(*servers: Server) -> None:
    """Let every message sent so far land, then consume the wake-ups they left.

    A server whose count of other listeners went from none to some tells them to wake
    everything once (A on B's hello, B on its first count): a test waiting for one
    wake-up must not get that one. A job change sent by each server after that lands
    after it (one session's notifications arrive in order), so once every server heard
    every other's, nothing sent earlier is still on its way.
    """
    for number, sender in enumerate(servers):
        marker = -1 - number
        others = [s for s in servers if s is not sender]
        waiting = [asyncio.create_task(s.bus.wait_job(marker, 5.0)) for s in others]
        await asyncio.sleep(0)
        sender.bus.job_changed(marker)
        assert all(await asyncio.gather(*waiting))
    for server in servers:
        await server.bus.wait_for_work(0.0)
        await server.bus.wait_schedules_changed(0.0)


async def _counted(server: Server) -> None:
    """Wait for the next count of the other listeners by ``server``'s listener."""
    counts = len(server.counts)
    await _until(lambda: len(server.counts) > counts, timeout=10.0)


def _cut_listeners(pg_url: str) -> int:
    """Terminate every listener of the database; return how many there were."""
    with psycopg.connect(pg_url, autocommit=True) as admin:
        cut = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            (LISTENER_NAME,),
        ).fetchall()
    return len(cut)


async def test_every_event_kind_reaches_the_other_server(servers: tuple[Server, Server]) -> None:
    a, b = servers
    loop = asyncio.get_running_loop()
    # Work queued on A wakes B's idle workers.
    waiting = asyncio.create_task(b.bus.wait_for_work(5.0))
    await asyncio.sleep(0)
    started = loop.time()
    a.bus.work_available()
    assert await waiting is True
    print(f"work queued on A woke B's waiter after {(loop.time() - started) * 1000:.1f} ms")
    # A job ending on A wakes its followers on B (and B's live lists).
    follower = asyncio.create_task(b.bus.wait_job(42, 5.0))
    any_job = asyncio.create_task(b.bus.wait_any_job(5.0))
    await asyncio.sleep(0)
    a.bus.job_changed(42)
    assert await follower is True
    assert await any_job is True
    # An abort through A reaches B's workers.
    a.bus.request_abort(7, "aborted by alice")
    await _until(lambda: b.aborts == [(7, "aborted by alice")])
    # Schedules changed through B wake A's scheduler.
    scheduler = asyncio.create_task(a.bus.wait_schedules_changed(5.0))
    await asyncio.sleep(0)
    b.bus.schedules_changed()
    assert await scheduler is True
    # Nobody acted twice on their own events: A's abort hook was not called by its own
    # message, B's scheduler event was only set locally (and consumed by nobody).
    assert a.aborts == [(7, "aborted by alice")]  # the local call, not the echo


async def test_a_server_alone_sends_nothing(pg_url: str) -> None:
    alone = Server(pg_url)
    await alone.relay.start()
    try:
        await _until(lambda: alone.relay.sent == 1)  # its hello
        assert alone.relay.peers == 0
        alone.bus.work_available()
        alone.bus.job_changed(1)
        alone.bus.request_abort(1, "aborted by alice")
        alone.bus.schedules_changed()
        await asyncio.sleep(0.05)
        assert alone.relay.sent == 1
        # A second server says hello: the first one sends from then on.
        other = Server(pg_url)
        await other.relay.start()
        try:
            await _until(lambda: alone.relay.peers == 1 and other.relay.peers == 1)
            await _settle(alone, other)
            waiting = asyncio.create_task(other.bus.wait_for_work(5.0))
            await asyncio.sleep(0)
            alone.bus.work_available()
            assert await waiting is True
        finally:
            await other.relay.stop()
    finally:
        await alone.relay.stop()


async def test_a_burst_is_coalesced_and_split_under_the_payload_limit(
    servers: tuple[Server, Server],
) -> None:
    a, b = servers
    reason = "aborted by " + "x" * 150
    for job_id in range(1, 301):
        a.bus.work_available()
        a.bus.job_changed(job_id)
        a.bus.request_abort(job_id, reason)
    await _until(lambda: len(b.aborts) == 300)
    assert [job_id for job_id, _ in b.aborts] == list(range(1, 301))
    assert {r for _, r in b.aborts} == {reason}
    # 300 aborts of ~170 bytes need several payloads under 8000 bytes, not 900 messages.
    assert 2 <= a.relay.sent <= 20, a.relay.sent


async def test_the_listener_comes_back_and_wakes_everyone(
    servers: tuple[Server, Server], pg_url: str
) -> None:
    a, b = servers
    follower = asyncio.create_task(b.bus.wait_job(99, 30.0))
    work = asyncio.create_task(b.bus.wait_for_work(30.0))
    await asyncio.sleep(0)
    connects = b.relay.listener_connects
    assert _cut_listeners(pg_url) == 2  # A's and B's
    # Back within the first back-off steps; what was missed meanwhile: everyone wakes.
    await _until(lambda: b.relay.listener_connects > connects, timeout=10.0)
    assert await asyncio.wait_for(follower, 1.0) is True
    await asyncio.wait_for(work, 1.0)
    # And messages flow again, once each knows of the other again (as at start: the
    # count at connection, or the other's hello), past the wake-ups of the reconnection.
    await _until(lambda: a.relay.listener_connects > 1, timeout=10.0)
    await _counted(a)
    await _counted(b)
    await _until(lambda: a.relay.peers == 1 and b.relay.peers == 1)
    await _settle(a, b)
    waiting = asyncio.create_task(a.bus.wait_for_work(5.0))
    await asyncio.sleep(0)
    b.bus.work_available()
    assert await waiting is True


async def test_malformed_notifications_are_ignored(
    servers: tuple[Server, Server], pg_url: str
) -> None:
    a, b = servers
    hostile = [
        "garbage",
        "[1, 2, 3]",
        '{"r": "x", "j": "abc"}',
        '{"r": "x", "j": 5}',
        '{"r": "x", "a": [[1]]}',
        '{"r": "x", "a": [["1; DROP TABLE jobs", "reason"]]}',
        '{"r": "x", "j": [1.5e400]}',
    ]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for payload in hostile:
            conn.execute("SELECT pg_notify('jobyard_events', %s)", (payload,))
    # The listener is still there and still applies well-formed messages, in order: the
    # hostile ones went first and changed nothing.
    waiting = asyncio.create_task(b.bus.wait_job(5, 5.0))
    await asyncio.sleep(0)
    a.bus.job_changed(5)
    assert await waiting is True
    assert b.aborts == []
    assert b.relay.listener_connects == 1


async def test_what_a_server_alone_dropped_wakes_a_server_that_starts(pg_url: str) -> None:
    """A server that starts listens before its hello reaches the one already there,
    which until then counts no listener and drops its events: it makes up for them
    with a wake-everything when it hears the hello."""
    alone = Server(pg_url)
    await alone.relay.start()
    newcomer = Server(pg_url)
    try:
        await _counted(alone)  # the next count is 2 s away: only the hello tells it
        assert alone.relay.peers == 0
        follower = asyncio.create_task(newcomer.bus.wait_job(5, 30.0))
        await asyncio.sleep(0)
        await newcomer.relay.start()  # returns as soon as it listens
        # Its hello cannot have reached the first server yet: a job ending there now is
        # dropped, not sent.
        assert alone.relay.peers == 0
        alone.bus.job_changed(5)
        assert await asyncio.wait_for(follower, 3.0) is True
    finally:
        await newcomer.relay.stop()
        await alone.relay.stop()


async def test_what_the_first_server_back_dropped_wakes_the_other(
    servers: tuple[Server, Server], pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both listeners cut: A is back first and counts no listener; B listens again and
    wakes its own waiters, which look at the database and wait again; work queued and
    a job ended on A before B's hello reaches A must still wake them (they would
    otherwise wait for their poll)."""
    a, b = servers
    # B's listener reconnects only when let, so that A is back first.
    gate = asyncio.Event()
    connect = b.relay._channel._connect

    async def held(name: str) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if name == LISTENER_NAME:
            await gate.wait()
        return await connect(name)

    monkeypatch.setattr(b.relay._channel, "_connect", held)
    # The moment B listens again (its reconnection wakes everyone there), its waiters
    # wait again and events happen on A, before anything can cross the database.
    waiters: list[asyncio.Task[bool]] = []
    peers_of_a: list[int] = []
    wake_everyone = b.bus.wake_everyone

    async def worker() -> bool:
        await b.bus.wait_for_work(0.0)  # the reconnection's wake-up: nothing queued
        return await b.bus.wait_for_work(30.0)

    def on_a() -> None:
        peers_of_a.append(a.relay.peers)
        a.bus.work_available()
        a.bus.job_changed(77)

    def back() -> None:
        wake_everyone()
        if not waiters:  # B's reconnection, not a later wake-everything
            waiters.append(asyncio.create_task(worker()))
            waiters.append(asyncio.create_task(b.bus.wait_job(77, 30.0)))
            asyncio.get_running_loop().call_soon(on_a)

    monkeypatch.setattr(b.bus, "wake_everyone", back)
    connects = a.relay.listener_connects
    assert _cut_listeners(pg_url) == 2
    await _until(lambda: a.relay.listener_connects > connects, timeout=10.0)
    await _counted(a)
    await _until(lambda: a.relay.peers == 0)
    gate.set()
    await _until(lambda: len(waiters) == 2, timeout=10.0)
    done, _ = await asyncio.wait(waiters, timeout=3.0)
    assert peers_of_a == [0]  # A had not heard of B: it dropped both events
    assert len(done) == 2, "B's waiters did not hear of what A dropped"
    worker_woken, follower_woken = (task.result() for task in waiters)
    assert worker_woken is False  # a wake-everything: look before claiming
    assert follower_woken is True
