"""The bus relay between two servers' buses, on a real PostgreSQL (no server around it).

Each event kind crosses from one bus to the other; a server ignores its own messages;
many events in one burst travel in few notifications (split under PostgreSQL's payload
limit); a listener whose connection is cut comes back and wakes every waiter once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest

from jobyard.engine.bus import Bus
from jobyard.engine.relay import BusRelay

pytestmark = pytest.mark.pg


class Server:
    """One bus with its relay, recording the aborts its 'workers' were asked for."""

    def __init__(self, url: str) -> None:
        self.bus = Bus()
        self.relay = BusRelay(self.bus, url)
        self.aborts: list[tuple[int, str]] = []
        self.bus.on_abort(self._abort)

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
            await _until(lambda: alone.relay.peers == 1)
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
    with psycopg.connect(pg_url, autocommit=True) as admin:
        cut = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'jobyard listener' AND datname = current_database()"
        ).fetchall()
    assert len(cut) == 2, cut  # A's and B's listeners
    # Back within the first back-off steps; what was missed meanwhile: everyone wakes.
    await _until(lambda: b.relay.listener_connects > connects, timeout=10.0)
    assert await asyncio.wait_for(follower, 1.0) is True
    await asyncio.wait_for(work, 1.0)
    # And messages flow again, once each knows of the other again (as at start: the
    # count at connection, or the other's hello; a server that counted no listener
    # sends nothing until then).
    await _until(lambda: a.relay.listener_connects > 1, timeout=10.0)
    await _until(lambda: a.relay.peers == 1 and b.relay.peers == 1)
    await a.bus.wait_for_work(0.0)  # the wake-up A got on reconnecting
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
