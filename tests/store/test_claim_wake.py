"""A claim alone on SQLite looks without the write lock first, unless told work is queued.

Idle worker processes all wake on a submit; the first one told is told "fresh" and
claims at once, the others look first and find nothing without queueing for the lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator

import pytest

from jobyard.core.claims import ClaimRequest
from jobyard.engine.bus import WAKE_STAGGER, Bus
from jobyard.store.factory import open_store
from jobyard.store.protocol import Store

WORKER = "host:1:w"


@pytest.fixture
async def sqlite_store(migrated_sqlite_url: str) -> AsyncIterator[Store]:
    store = await open_store(migrated_sqlite_url, migrate=False)
    yield store
    await store.close()


@pytest.fixture
def write_lock(migrated_sqlite_url: str) -> Iterator[sqlite3.Connection]:
    """Another connection holding SQLite's write lock until the test releases it."""
    conn = sqlite3.connect(migrated_sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    yield conn
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.close()


def _request(look_first: bool) -> ClaimRequest:
    return ClaimRequest("default", 1, 60, ["h" * 64], look_first=look_first)


async def test_a_claim_that_looks_first_does_not_wait_for_the_lock(
    sqlite_store: Store, write_lock: sqlite3.Connection
) -> None:
    answer = await asyncio.wait_for(
        sqlite_store.jobs_report(worker_id=WORKER, claim=_request(look_first=True)), 5
    )
    assert answer.claims == []
    assert write_lock.in_transaction  # it answered while the lock was still held


async def test_a_claim_told_work_is_queued_goes_straight_to_the_write(
    sqlite_store: Store, write_lock: sqlite3.Connection
) -> None:
    claim = asyncio.ensure_future(
        sqlite_store.jobs_report(worker_id=WORKER, claim=_request(look_first=False))
    )
    await asyncio.sleep(0.3)
    assert not claim.done(), "it queues for the write lock"
    write_lock.execute("ROLLBACK")
    answer = await asyncio.wait_for(claim, 10)
    assert answer.claims == []


async def test_the_first_listener_is_told_fresh_the_others_later_not() -> None:
    bus = Bus()
    heard: list[tuple[str, bool]] = []
    bus.on_work(lambda fresh: heard.append(("a", fresh)))
    bus.on_work(lambda fresh: heard.append(("b", fresh)))
    bus.work_available()
    assert heard == [("a", True)]
    await asyncio.sleep(WAKE_STAGGER * 5)
    assert heard == [("a", True), ("b", False)]
    bus.work_available()
    assert heard[-1] == ("b", True)  # the first one told changes each time


async def test_a_waiter_learns_whether_its_wake_up_was_fresh() -> None:
    bus = Bus()
    bus.work_available()
    assert await bus.wait_for_work(1) is True
    bus.work_available(fresh=False)
    assert await bus.wait_for_work(1) is False
    assert await bus.wait_for_work(0.01) is False  # timed out
