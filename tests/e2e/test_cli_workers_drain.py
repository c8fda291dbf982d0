"""``JOBYARD_WORKER_LABELS`` and ``jobyard workers drain`` against a real ``jobyard up``
subprocess (one local worker process labelled ``gpu=1``): the worker registers its
labels and runs a job requiring them; drained from the CLI, it finishes nothing new,
shows ``draining``, and a job submitted then waits QUEUED saying no worker serves it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.cli import ok, run_cli
from tests.support.server import RunningServer, server_fixture

server = server_fixture(
    scope="module",
    workers=1,
    env={
        "JOBYARD_WORKER_PROCESSES": "1",
        "JOBYARD_WORKER_LABELS": "gpu=1",
        "JOBYARD_HEARTBEAT_SECONDS": "0.5",
    },
)


def _api(server: RunningServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    )


def _worker(server: RunningServer, want: str) -> dict[str, Any]:
    """The server's one worker once its health is ``want`` (deadline 30 s)."""
    deadline = time.monotonic() + 30
    with _api(server) as api:
        while True:
            items: list[dict[str, Any]] = api.get("/api/v1/workers").json()["items"]
            if len(items) == 1 and items[0]["health"] == want:
                return items[0]
            assert time.monotonic() < deadline, items
            time.sleep(0.05)


def _job(server: RunningServer, job_id: int, want: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    with _api(server) as api:
        while True:
            job: dict[str, Any] = api.get(f"/api/v1/jobs/{job_id}").json()
            if job["status"] in want:
                return job
            assert time.monotonic() < deadline, job
            time.sleep(0.05)


def test_labelled_local_worker_runs_its_jobs_then_drains_from_the_cli(
    server: RunningServer, tmp_path: Path
) -> None:
    worker = _worker(server, "healthy")
    assert worker["labels"] == {"gpu": "1"}
    env = server.client_env()
    listed = ok(run_cli(["workers", "list"], env, tmp_path)).stdout
    assert "LABELS" in listed and "gpu=1" in listed
    spec = tmp_path / "jobs.yaml"
    spec.write_text(
        "jobconfigs:\n  - name: train\n    command: [/bin/true]\n    labels: {gpu: 1}\n"
    )
    applied = ok(run_cli(["apply", "-f", str(spec)], env, tmp_path))
    assert "warning" not in applied.stderr, applied.stderr
    shown = ok(run_cli(["jobconfigs", "show", "train"], env, tmp_path)).stdout
    assert "gpu=1" in shown
    ran = int(ok(run_cli(["run", "train", "-q"], env, tmp_path)).stdout.strip())
    assert _job(server, ran, {"FINISHED"})["worker_id"] == worker["id"]

    drained = ok(run_cli(["workers", "drain", worker["id"]], env, tmp_path))
    assert f"worker {worker['id']} asked to drain" in drained.stderr
    assert _worker(server, "draining")["id"] == worker["id"]
    missing = run_cli(["workers", "drain", "nobody:1:x"], env, tmp_path)
    assert missing.returncode != 0 and "worker nobody:1:x does not exist" in missing.stderr

    # Once its heartbeat took the request, the only worker serves nothing: a new job
    # waits QUEUED and says so.
    deadline = time.monotonic() + 30
    while not _worker(server, "draining")["draining"]:
        assert time.monotonic() < deadline, "the worker never reported draining"
        time.sleep(0.05)
    waiting = int(ok(run_cli(["run", "train", "-q"], env, tmp_path)).stdout.strip())
    assert _job(server, waiting, {"QUEUED"})["worker_id"] is None
    shown = ok(run_cli(["jobs", "show", str(waiting)], env, tmp_path))
    assert "no worker serves pool 'default'" in shown.stdout + shown.stderr
    listed = ok(run_cli(["workers", "list"], env, tmp_path)).stdout
    assert "draining" in listed
