"""Servers on one PostgreSQL wake each other (LISTEN/NOTIFY), real processes.

Replica A is ``jobyard up`` with local slots; replica B is ``jobyard server`` (no slots).
A job submitted through B runs on A's slots: without a wake-up from B, A's idle slots
find it only at their next poll (about a second), so the start latencies below tell the
notification path from the poll. Aborts through B reach A's worker at once instead of at
its next lease renewal (10 s here). The module has its own cluster, which the last test
restarts.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.support.pg import PgCluster
from tests.support.realtime import wait_for
from tests.support.server import RunningServer, jobyard_server

pytestmark = pytest.mark.pg

#: Samples per latency measurement (submitted one after the other).
SAMPLES = 8
#: A's slots renew leases (and so learn of aborts without a wake-up) this rarely.
HEARTBEAT_SECONDS = 10


@dataclass
class Replicas:
    a: RunningServer
    b: RunningServer
    api_a: httpx.Client
    api_b: httpx.Client


@pytest.fixture(scope="module")
def replicas(
    own_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    root = tmp_path_factory.mktemp("replicas")
    name = own_cluster.create_database()
    env = {
        "JOBYARD_DATABASE_URL": own_cluster.url(name),
        "JOBYARD_BLOBS_DIR": str(root / "shared-blobs"),
        "JOBYARD_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
        "JOBYARD_LEASE_SECONDS": str(HEARTBEAT_SECONDS * 4),
        "JOBYARD_RETENTION__ENABLED": "false",
    }
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(jobyard_server(root / "a", workers=2, env=env))
        (root / "b").mkdir()
        (root / "b" / "admin.token").write_text(a.token + "\n")
        b = stack.enter_context(jobyard_server(root / "b", env=env, command_name="server"))
        headers = {"Authorization": f"Bearer {a.token}"}
        api_a = stack.enter_context(httpx.Client(base_url=a.url, headers=headers, timeout=30))
        api_b = stack.enter_context(httpx.Client(base_url=b.url, headers=headers, timeout=30))
        try:
            yield Replicas(a, b, api_a, api_b)
        except BaseException:
            print("--- A stderr\n" + a.stderr_text() + "\n--- B stderr\n" + b.stderr_text())
            raise


def _job(api: httpx.Client, job_id: int) -> dict[str, Any]:
    r = api.get(f"/api/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _submit(api: httpx.Client, command: list[str]) -> int:
    r = api.post("/api/v1/jobs", json={"command": command})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _start_latency(r: Replicas) -> float:
    """Submit a job through B (no slots); seconds from its creation until it ran on A."""
    job_id = _submit(r.api_b, ["/bin/true"])
    job = wait_for(
        lambda: (j := _job(r.api_a, job_id))["status"] in ("FINISHED", "ERROR", "FAILED") and j,
        30,
        f"job {job_id} to end",
    )
    assert job["status"] == "FINISHED", job
    assert job["worker_id"], job
    created = datetime.fromisoformat(job["created_at"])
    started = datetime.fromisoformat(job["started_at"])
    return (started - created).total_seconds()


def _latencies(r: Replicas) -> list[float]:
    return [_start_latency(r) for _ in range(SAMPLES)]


def _check_fast(latencies: list[float], label: str) -> None:
    mean = statistics.mean(latencies)
    print(
        f"{label}: submit through B -> RUNNING on A: mean {mean * 1000:.1f} ms, "
        f"median {statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )
    # Through the poll alone, a start waits 0..1 s (0.5 s on average).
    assert max(latencies) < 1.0, latencies
    assert mean < 0.2, latencies


def test_a_job_submitted_on_a_server_without_slots_starts_at_once(replicas: Replicas) -> None:
    banner = replicas.b.stdout_path.read_text()
    assert "workers:     none here" in banner, banner  # `jobyard server`: no local slots
    _check_fast(_latencies(replicas), "wake-up across replicas")


@pytest.mark.parametrize("through", ["B", "A"])
def test_an_abort_reaches_the_worker_at_once(replicas: Replicas, through: str) -> None:
    """Through B: the notification. Through A itself: every worker process of A is told
    (one holding the job after another that does not used to wait for its renewal)."""
    r = replicas
    api = r.api_b if through == "B" else r.api_a
    # A has two worker processes: four aborts reach both (each holds its own jobs).
    for _ in range(4):
        job_id = _submit(api, ["sleep", "60"])
        wait_for(lambda j=job_id: _job(r.api_a, j)["status"] == "RUNNING", 30, "RUNNING")
        started = time.monotonic()
        answer = api.post(f"/api/v1/jobs/{job_id}/abort")
        took = time.monotonic() - started
        print(f"abort through {through} of a job on A: answered in {took * 1000:.0f} ms")
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "FAILED", answer.text
        # Without the notification A's worker learns of it at its next lease renewal.
        assert took < 1.0, took


def test_wake_ups_work_again_after_a_postgres_restart(
    replicas: Replicas, own_cluster: PgCluster
) -> None:
    r = replicas
    own_cluster.restart("fast")
    fast_in_a_row = 0

    def back_and_fast() -> bool:
        # Three fast starts in a row: each of A's worker processes has claimed once since
        # the restart (the first claim of a process on its stale store connection can
        # take up to its poll, whatever woke it).
        nonlocal fast_in_a_row
        try:
            fast_in_a_row = fast_in_a_row + 1 if _start_latency(r) < 0.2 else 0
        except (AssertionError, httpx.HTTPError):
            fast_in_a_row = 0
        return fast_in_a_row >= 3

    wait_for(back_and_fast, 30, "the servers to answer and wake each other again")
    for server in (r.a, r.b):
        wait_for(
            lambda s=server: "listening to jobyard_events again" in s.stderr_text(),
            10,
            "the listener to say it is back",
        )
    _check_fast(_latencies(r), "after a PostgreSQL restart")
