"""WorkerPool: renewals that fail because the database is unreachable drop no job."""

from __future__ import annotations

import asyncio

import pytest
from worker_fakes import RecordingBackend, make_assignment, wait_until

from jobyard.core.errors import DatabaseUnavailable
from jobyard.core.jobs import JobStatus
from jobyard.worker.pool import WorkerPool
from jobyard.worker.runner import RunnerOptions
from jobyard.worker.workspace import Workspace


async def test_an_unreachable_database_is_not_a_lost_lease(
    backend: RecordingBackend, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = WorkerPool(
        backend,
        workspace=workspace,
        slots=1,
        options=RunnerOptions(abort_grace_seconds=2.0, pipe_close_timeout=2.0),
        heartbeat_seconds=0.05,
        lease_seconds=0.2,
        idle_wait_seconds=0.2,
    )
    runner = asyncio.create_task(pool.run())
    backend.submit(make_assignment(1, ["sh", "-c", "sleep 1.5"]))
    await wait_until(lambda: 1 in backend.running)
    renew = backend.renew
    failures = 0

    async def database_down(**_kw: object) -> dict[int, bool]:
        nonlocal failures
        failures += 1
        raise DatabaseUnavailable("the database is unreachable right now")

    # Renewals fail for several lease periods: the control plane cannot sweep either
    # (it does not count this time), so the job keeps running and reports its end.
    monkeypatch.setattr(backend, "renew", database_down)
    await wait_until(lambda: failures >= 10)
    assert pool.running == 1
    monkeypatch.setattr(backend, "renew", renew)
    await backend.wait_ended([1])
    assert backend.ended[1].status is JobStatus.FINISHED
    await pool.drain()
    await runner
