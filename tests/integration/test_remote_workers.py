"""Remote workers end to end: a real ``jobyard up`` and ``jobyard worker`` processes.

Jobs run on the worker (the server has no local slots), their log streamed while they
run, their outputs uploaded, their packages downloaded once per host; leases expire for
a killed or stopped worker, and a worker that comes back cannot overwrite what the
server decided meanwhile.
"""

from __future__ import annotations

import io
import signal
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.remote_worker import create_worker_token, remote_worker
from tests.support.server import RunningServer, free_port, jobyard_server

#: Short leases so lost workers are noticed quickly.
FAST = {
    "JOBYARD_LEASE_SECONDS": "3",
    "JOBYARD_HEARTBEAT_SECONDS": "0.5",
    "JOBYARD_MAINTENANCE_SECONDS": "0.5",
}
TERMINAL = {"FINISHED", "ERROR", "FAILED", "CANCELLED"}


class Api:
    """A synchronous admin client of a server subprocess."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.http = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
        )

    def run(self, command: list[str], **extra: Any) -> dict[str, Any]:
        r = self.http.post("/api/v1/jobs", json={"command": command, **extra})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def job(self, job_id: int) -> dict[str, Any]:
        r = self.http.get(f"/api/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait(self, job_id: int, statuses: set[str] = TERMINAL, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            assert time.monotonic() < deadline, f"job {job_id} stuck in {job['status']}: {job}"
            time.sleep(0.05)

    def log(self, job_id: int) -> str:
        r = self.http.get(f"/api/v1/jobs/{job_id}/log")
        return r.text if r.status_code == 200 else ""

    def wait_log(self, job_id: int, needle: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.log(job_id)
            if needle in text:
                return text
            assert time.monotonic() < deadline, f"{needle!r} not in the log of job {job_id}: {text}"
            time.sleep(0.05)

    def outputs(self, job_id: int) -> list[dict[str, Any]]:
        r = self.http.get(f"/api/v1/jobs/{job_id}/outputs")
        assert r.status_code == 200, r.text
        body = r.json()
        return list(body["items"] if isinstance(body, dict) else body)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    with jobyard_server(tmp_path / "home", workers=0, env=FAST) as running:
        yield running


@pytest.fixture
def api(server: RunningServer) -> Iterator[Api]:
    client = Api(server)
    yield client
    client.http.close()


def _worker_token(server: RunningServer, pool: str | None = None) -> str:
    return create_worker_token(server.url, server.token, "test-host", pool)


def test_a_job_runs_on_a_remote_worker_with_its_log_streamed_and_outputs(
    server: RunningServer, api: Api, tmp_path: Path
) -> None:
    r = api.http.put(
        "/api/v1/macros/account/REMOTE_SECRET", json={"value": "s3cr3t-value", "secure": True}
    )
    assert r.status_code == 200, r.text
    token = _worker_token(server)
    with remote_worker(server.url, token, tmp_path / "w1", wait_registered=server.token):
        script = (
            'echo "secret=$REMOTE_SECRET"; echo first-line; '
            'while [ ! -e "$LOCAL_JOB_OUT_DIR/../go" ]; do sleep 0.05; done; '
            'echo done > "$LOCAL_JOB_OUT_DIR/result.txt"; echo last-line'
        )
        # The job waits for a file nobody creates: it is aborted after its log is seen.
        job = api.run(["/bin/sh", "-c", script.replace("../go", "never")], timeout=0)
        running = api.wait(job["id"], {"RUNNING"})
        assert running["worker_id"] and running["worker_id"].count(":") == 2
        text = api.wait_log(job["id"], "first-line")  # streamed while the job runs
        assert api.job(job["id"])["status"] == "RUNNING"
        assert "s3cr3t-value" not in text and "secret=" in text
        r = api.http.post(f"/api/v1/jobs/{job['id']}/abort")
        assert r.status_code == 200, r.text
        aborted = api.wait(job["id"])
        assert aborted["status"] == "FAILED"

        ok = api.run(["/bin/sh", "-c", 'echo hello; echo out > "$LOCAL_JOB_OUT_DIR/result.txt"'])
        done = api.wait(ok["id"])
        assert done["status"] == "FINISHED", done
        assert "hello" in api.log(ok["id"])
        names = [o["name"] for o in api.outputs(ok["id"])]
        assert names == ["result.txt"]
        r = api.http.get(f"/api/v1/jobs/{ok['id']}/outputs/result.txt")
        assert r.status_code == 200 and r.text == "out\n"
        macros = api.http.get(f"/api/v1/jobs/{job['id']}/macros").json()
        assert macros["resolved"] is True  # the record travelled with the assignment
