"""A remote worker's long-poll waiting on an idle server is claimed for by the next
submission, in the submission's own transaction, only while its caller is connected.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from jobyard.core.crypto import Keyrings, encode_key, new_key
from jobyard.engine.bus import Bus
from jobyard.engine.remote_desk import RemoteDesk
from jobyard.settings import Settings
from jobyard.store.factory import open_store
from jobyard.store.protocol import Store
from tests.store.conftest import new_job


@pytest.fixture
async def sqlite_store(migrated_sqlite_url: str) -> AsyncIterator[Store]:
    store = await open_store(migrated_sqlite_url, migrate=False)
    yield store
    await store.close()


async def _long_poll_gets_a_submitted_job(
    tmp_path: Path, store: Store, present: Callable[[], bool]
) -> tuple[dict[str, Any], Any]:
    bus = Bus()
    settings = Settings(workers=0, home=tmp_path, secret_key=encode_key(new_key()))
    desk = RemoteDesk(settings, store, bus, Keyrings())

    async def gone() -> bool:
        return False

    poll = asyncio.ensure_future(
        desk.acquire(
            worker_id="host:1:w", pool="default", labels={}, free=2, wait_seconds=10,
            gone=gone, present=present,
        )
    )  # fmt: skip
    for _ in range(400):  # until it waits (its first claim found nothing)
        await asyncio.sleep(0.005)
        if bus._work._waiters:  # type: ignore[attr-defined]
            break
    job = await store.job_insert(new_job(submitted_by=None), actor="t", reason=None)
    bus.work_available()
    assignments, outcomes = await asyncio.wait_for(poll, 10)
    assert outcomes == []
    assert [a["job"]["id"] for a in assignments] == [job.id]
    return assignments[0], await store.job_get(job.id)


async def test_a_waiting_long_poll_gets_the_job_in_the_submits_transaction(
    tmp_path: Path, sqlite_store: Store
) -> None:
    _assignment, job = await _long_poll_gets_a_submitted_job(tmp_path, sqlite_store, lambda: True)
    assert job.worker_id == "host:1:w"
    assert job.acquired_at == job.created_at  # claimed in the submission's transaction


async def test_a_caller_that_hung_up_is_not_claimed_for_by_the_submission(
    tmp_path: Path, sqlite_store: Store
) -> None:
    _assignment, job = await _long_poll_gets_a_submitted_job(tmp_path, sqlite_store, lambda: False)
    # Claimed afterwards, by the long-poll's own claim (which checks the caller first).
    assert job.acquired_at is not None and job.created_at is not None
    assert job.acquired_at > job.created_at
