"""A remote worker claims jobs ahead of its free slots, within a bound, and loses none.

Jobs claimed ahead are held like running ones (their leases renewed); a worker that
drains ends them FAILED ``worker lost`` at once, and a killed worker's are failed by the
server when their lease expires. An end report may travel in the same call as its job's
RUNNING report, which the server applies first.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from jobyard.core.jobs import JobStatus
from jobyard.worker.http_backend import NOT_STARTED_REASON, HttpBackend
from tests.integration.conftest import Env, ServerFactory
from tests.integration.test_remote_workers import Api
from tests.integration.test_remote_workers import api as api  # the same fixtures
from tests.integration.test_remote_workers import server as server
from tests.support.remote_worker import create_worker_token, remote_worker
from tests.support.server import RunningServer

SLEEPER = ["/bin/sh", "-c", "echo started; sleep 4"]


async def _backend(env: Env, tmp_path: Path, *, slots: int, prefetch: int) -> HttpBackend:
    r = await env.client.post("/api/v1/worker-tokens", json={"name": "prefetching"})
    assert r.status_code == 201, r.text
    backend = HttpBackend(
        env.url,
        str(r.json()["token"]),
        pool="default",
        slots=slots,
        state_dir=tmp_path / "state",
        cache_dir=tmp_path / "cache",
        wait_seconds=2.0,
        prefetch=prefetch,
    )
    await backend.heartbeat(worker_id="w-1", running=0, draining=False)
    return backend


async def _held(env: Env) -> dict[int, str]:
    r = await env.client.get("/api/v1/jobs", params={"limit": "100"})
    assert r.status_code == 200, r.text
    return {
        j["id"]: j["status"]
        for j in r.json()["items"]
        if j["status"] in ("INITIALIZING", "RUNNING") and j.get("worker_id") == "w-1"
    }


async def test_jobs_claimed_ahead_are_bounded_renewed_and_ended_on_drain(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    env = await start_server(workers=0)
    backend = await _backend(env, tmp_path, slots=1, prefetch=2)
    try:
        ids = []
        for _ in range(6):
            r = await env.client.post("/api/v1/jobs", json={"command": ["/bin/true"]})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        free = [1]
        got = await backend.acquire(
            worker_id="w-1", pool="default", limit=1, free_now=lambda: free[0]
        )
        assert len(got) == 1
        free[0] = 0  # the slot is taken by that job
        deadline = time.monotonic() + 10
        while backend.claimed_ahead < 2:
            assert time.monotonic() < deadline, "nothing claimed ahead"
            await asyncio.sleep(0.02)
        # With its slot busy and 2 claimed ahead, the worker claims nothing more.
        for _ in range(10):
            assert len(await _held(env)) == 3
            assert backend.claimed_ahead == 2
            await asyncio.sleep(0.1)
        leases = await backend.renew(worker_id="w-1", job_ids=[got[0].id])
        assert set(leases) == set(await _held(env))  # the ones ahead are renewed too
        ahead = set(leases) - {got[0].id}
        backend.stop_acquiring()  # a drain: the ones ahead never start
        await backend.close()
        for job_id in ahead:
            r = await env.client.get(f"/api/v1/jobs/{job_id}")
            assert r.json()["status"] == "FAILED"
            assert r.json()["status_reason"] == NOT_STARTED_REASON
        assert set(await _held(env)) == {got[0].id}
    finally:
        await backend.close()


async def test_an_end_goes_without_waiting_for_its_running_answer(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    env = await start_server(workers=0)
    backend = await _backend(env, tmp_path, slots=1, prefetch=0)
    try:
        r = await env.client.post("/api/v1/jobs", json={"command": ["/bin/true"]})
        job_id = r.json()["id"]
        (job,) = await backend.acquire(worker_id="w-1", pool="default", limit=1)
        await backend.prepare(job)
        running = backend.set_running(job_id, worker_id="w-1", pid=None)
        # The RUNNING answer is not awaited (not even scheduled) before the end.
        await asyncio.wait_for(
            backend.end(
                job_id,
                worker_id="w-1",
                status=JobStatus.FINISHED,
                exit_code=0,
                reason=None,
            ),
            10,
        )
        assert await running is True
        done = (await env.client.get(f"/api/v1/jobs/{job_id}")).json()
        assert done["status"] == "FINISHED", done
        assert done["started_at"] is not None
    finally:
        await backend.close()


def _claimed_ahead(api: Api, first: int, count: int) -> list[dict[str, object]]:
    """``count`` jobs submitted, waited for until one is INITIALIZING behind ``first``."""
    later = [api.run(SLEEPER) for _ in range(count)]
    deadline = time.monotonic() + 30
    while True:
        held = [api.job(j["id"]) for j in later]
        if any(j["status"] == "INITIALIZING" and j["worker_id"] for j in held):
            assert api.job(first)["status"] == "RUNNING"
            return held
        assert time.monotonic() < deadline, f"no job claimed ahead: {held}"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_job_claimed_ahead_ends_worker_lost_when_the_worker_goes(
    server: RunningServer, api: Api, tmp_path: Path, signum: signal.Signals
) -> None:
    token = create_worker_token(server.url, server.token, "test-host", None)
    with remote_worker(
        server.url,
        token,
        tmp_path / "w1",
        slots=1,
        args=["--prefetch", "1"],
        wait_registered=server.token,
    ) as worker:
        first = api.run(SLEEPER)
        api.wait_log(first["id"], "started")
        held = _claimed_ahead(api, first["id"], 3)
        worker.signal(signum)
        code = worker.wait(timeout=30)
        ahead = [j for j in held if j["status"] == "INITIALIZING"]
        assert len(ahead) == 1  # slots + prefetch held at most
        ended = api.wait(int(str(ahead[0]["id"])), timeout=30)
        assert ended["status"] == "FAILED"
        assert "worker lost" in (ended["status_reason"] or "")
        if signum == signal.SIGTERM:
            assert code == 0
            assert api.job(first["id"])["status"] == "FINISHED"  # the running one finished
        else:
            assert api.wait(first["id"], timeout=30)["status"] == "FAILED"
        others = [j for j in held if j["status"] == "QUEUED"]
        assert all(api.job(int(str(j["id"])))["status"] == "QUEUED" for j in others)
