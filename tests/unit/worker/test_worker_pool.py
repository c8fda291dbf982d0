"""WorkerPool: acquisition within slots, lease renewal, aborts, lost leases, drain, stop."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time

import pytest
from worker_fakes import RecordingBackend, make_assignment, pid_gone, wait_until

from jobyard.core.jobs import JobStatus
from jobyard.worker.pool import WorkerPool, new_worker_id
from jobyard.worker.runner import RunnerOptions
from jobyard.worker.workspace import Workspace


def make_pool(backend: RecordingBackend, workspace: Workspace, **kw: object) -> WorkerPool:
    params: dict[str, object] = {
        "slots": 2,
        "options": RunnerOptions(abort_grace_seconds=2.0, pipe_close_timeout=2.0),
        "heartbeat_seconds": 0.05,
        "idle_wait_seconds": 0.2,
    }
    params.update(kw)
    return WorkerPool(backend, workspace=workspace, **params)  # type: ignore[arg-type]


async def test_worker_id_is_unique_and_readable() -> None:
    first, second = new_worker_id(), new_worker_id()
    assert first != second
    assert re.fullmatch(rf"{re.escape(socket.gethostname())}:{os.getpid()}:[0-9a-f]{{8}}", first)


async def test_runs_jobs_within_its_slots(backend: RecordingBackend, workspace: Workspace):
    pool = make_pool(backend, workspace, slots=2)
    runner = asyncio.create_task(pool.run())
    for i in range(1, 7):
        backend.submit(make_assignment(i, ["sh", "-c", "sleep 0.05"]))
    await backend.wait_ended(list(range(1, 7)))
    assert all(e.status is JobStatus.FINISHED for e in backend.ended.values())
    assert backend.max_concurrent_seen <= 2
    await pool.drain()
    await asyncio.wait_for(runner, 5)
    assert backend.heartbeats[-1] == (0, True)


async def test_picks_up_work_submitted_while_idle(backend: RecordingBackend, workspace: Workspace):
    pool = make_pool(backend, workspace, idle_wait_seconds=30)
    runner = asyncio.create_task(pool.run())
    await wait_until(lambda: len(backend.heartbeats) >= 1)
    started = time.monotonic()
    backend.submit(make_assignment(1, ["true"]))
    await backend.wait_ended([1])
    assert time.monotonic() - started < 5, "woken by the submit, not the 30 s idle wait"
    await pool.drain()
    await runner


async def test_abort_requested_through_renewal(backend: RecordingBackend, workspace: Workspace):
    pool = make_pool(backend, workspace)
    runner = asyncio.create_task(pool.run())
    backend.submit(make_assignment(1, ["sleep", "300"]))
    await wait_until(lambda: 1 in backend.running)
    backend.abort_requested.add(1)
    await backend.wait_ended([1])
    assert backend.ended[1].status is JobStatus.FAILED
    assert backend.ended[1].reason == "aborted: abort requested"
    await pool.drain()
    await runner


async def test_abort_method_is_immediate(backend: RecordingBackend, workspace: Workspace):
    pool = make_pool(backend, workspace, heartbeat_seconds=60)
    runner = asyncio.create_task(pool.run())
    backend.submit(make_assignment(1, ["sleep", "300"]))
    await wait_until(lambda: 1 in backend.running)
    assert pool.held_job_ids == [1]
    assert pool.abort(99, "not here") is False
    assert pool.abort(1, "requested by alice") is True
    await backend.wait_ended([1], timeout=3)
    assert backend.ended[1].reason == "aborted: requested by alice"
    await pool.drain()
    await runner


async def test_lost_lease_kills_without_reporting(backend: RecordingBackend, workspace: Workspace):
    pool = make_pool(backend, workspace)
    runner = asyncio.create_task(pool.run())
    backend.submit(make_assignment(1, ["sleep", "300"]))
    await wait_until(lambda: 1 in backend.running)
    pid = backend.running[1]
    assert pid is not None
    backend.leases_lost.add(1)
    await wait_until(lambda: pool.running == 0)
    assert pid_gone(pid)
    assert 1 not in backend.ended
    # Nothing was reported, but the backend still hears that the pool is done with it.
    await wait_until(lambda: backend.forgotten == [1])
    await pool.drain()
    await runner


async def test_leases_expire_when_renewals_keep_failing(
    backend: RecordingBackend, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
):
    pool = make_pool(backend, workspace, lease_seconds=0.2)
    runner = asyncio.create_task(pool.run())
    backend.submit(make_assignment(1, ["sleep", "300"]))
    await wait_until(lambda: 1 in backend.running)

    async def unreachable(**_kw: object) -> dict[int, bool]:
        raise ConnectionError("control plane unreachable")

    monkeypatch.setattr(backend, "renew", unreachable)
    await wait_until(lambda: pool.running == 0)
    assert 1 not in backend.ended
    await pool.drain()
    await runner


async def test_drain_lets_running_jobs_finish(backend: RecordingBackend, workspace: Workspace):
    pool = make_pool(backend, workspace, slots=1)
    runner = asyncio.create_task(pool.run())
    backend.submit(make_assignment(1, ["sh", "-c", "sleep 0.3"]))
    await wait_until(lambda: 1 in backend.running)
    drained = asyncio.create_task(pool.drain())
    backend.submit(make_assignment(2, ["true"]))
    await asyncio.wait_for(drained, 5)
    assert backend.ended[1].status is JobStatus.FINISHED
    assert 2 not in backend.ended, "a draining worker takes no new job"
    assert [j.id for j in backend.queue] == [2]
    assert runner.done()
    assert (0, True) in backend.heartbeats


async def test_a_requested_drain_finishes_running_jobs_then_run_returns(
    backend: RecordingBackend, workspace: Workspace
):
    """The heartbeat's answer asks for the drain (a remote worker: it then exits)."""
    pool = make_pool(backend, workspace, slots=2)
    runner = asyncio.create_task(pool.run())
    backend.submit(make_assignment(1, ["sh", "-c", "sleep 0.5"]))
    await wait_until(lambda: 1 in backend.running)
    backend.drain_requested = True
    await wait_until(lambda: pool.drain_requested)
    backend.submit(make_assignment(2, ["true"]))
    await asyncio.wait_for(runner, 5)
    assert backend.ended[1].status is JobStatus.FINISHED
    assert 2 not in backend.ended and [j.id for j in backend.queue] == [2]
    assert backend.heartbeats[-1] == (0, True)


async def test_a_requested_drain_without_exit_idles_until_stopped(
    backend: RecordingBackend, workspace: Workspace
):
    """Local slots of jobyard up: drained, they stay up (heartbeating as draining)."""
    pool = make_pool(backend, workspace, slots=1, exit_on_drain=False)
    runner = asyncio.create_task(pool.run())
    backend.submit(make_assignment(1, ["sh", "-c", "sleep 0.3"]))
    await wait_until(lambda: 1 in backend.running)
    backend.drain_requested = True
    await wait_until(lambda: pool.draining)
    backend.submit(make_assignment(2, ["true"]))
    await backend.wait_ended([1])
    beats = len(backend.heartbeats)
    await wait_until(lambda: len(backend.heartbeats) > beats + 3)  # still beating, idle
    assert not runner.done() and 2 not in backend.ended
    assert backend.heartbeats[-1] == (0, True)
    await asyncio.wait_for(pool.stop(), 5)
    await asyncio.wait_for(runner, 5)
    assert [j.id for j in backend.queue] == [2]


async def test_stop_aborts_running_jobs(backend: RecordingBackend, workspace: Workspace):
    pool = make_pool(backend, workspace, slots=3)
    runner = asyncio.create_task(pool.run())
    for i in (1, 2, 3):
        backend.submit(make_assignment(i, ["sleep", "300"]))
    await wait_until(lambda: len(backend.running) == 3)
    await asyncio.wait_for(pool.stop(), 5)
    assert {e.reason for e in backend.ended.values()} == {"aborted: worker shutting down"}
    assert {e.status for e in backend.ended.values()} == {JobStatus.FAILED}
    assert runner.done()
    for pid in backend.running.values():
        assert pid is not None and pid_gone(pid)


async def test_cancelled_run_still_ends_its_jobs(backend: RecordingBackend, workspace: Workspace):
    pool = make_pool(backend, workspace)
    runner = asyncio.create_task(pool.run())
    backend.submit(make_assignment(1, ["sleep", "300"]))
    await wait_until(lambda: 1 in backend.running)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert backend.ended[1].reason == "aborted: worker shutting down"


async def test_throughput_of_trivial_jobs(backend: RecordingBackend, workspace: Workspace):
    """Not a benchmark (see benchmarks/); a smoke test that many jobs flow through."""
    pool = make_pool(backend, workspace, slots=4)
    runner = asyncio.create_task(pool.run())
    count = 200
    started = time.monotonic()
    for i in range(1, count + 1):
        backend.submit(make_assignment(i, ["true"]))
    await backend.wait_ended(list(range(1, count + 1)), timeout=60)
    elapsed = time.monotonic() - started
    assert all(e.status is JobStatus.FINISHED for e in backend.ended.values())
    await pool.drain()
    await runner
    assert not workspace.jobs_root.exists(), "no job folder left; the emptied root tidied away"
    print(f"{count / elapsed:.0f} trivial jobs/s through the pool (fake control plane)")
