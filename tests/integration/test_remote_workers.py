"""Remote workers end to end: a real ``jobyard up`` and ``jobyard worker`` processes.

Jobs run on the worker (the server has no local slots), their log streamed while they
run, their outputs uploaded, their packages downloaded once per host; leases expire for
a killed or stopped worker, and a worker that comes back cannot overwrite what the
server decided meanwhile.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.helpers import MANIFEST, make_zip
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

    def wait(
        self, job_id: int, statuses: set[str] = TERMINAL, timeout: float = 30
    ) -> dict[str, Any]:
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


def test_a_package_is_downloaded_once_per_host_even_for_jobs_starting_together(
    server: RunningServer, api: Api, tmp_path: Path
) -> None:
    data = make_zip({"jobyard.toml": MANIFEST, "main.sh": 'echo "level=$LEVEL"\n'})
    r = api.http.post("/api/v1/packages", files={"file": ("etl.zip", data)})
    assert r.status_code == 201, r.text
    pkg = r.json()
    r = api.http.post(
        "/api/v1/jobconfigs",
        json={"name": "etl", "package_id": pkg["id"], "entrypoint": "main"},
    )
    assert r.status_code == 201, r.text
    jc = r.json()
    token = _worker_token(server)
    with remote_worker(
        server.url, token, tmp_path / "w1", slots=4, wait_registered=server.token
    ) as worker:
        jobs = [api.http.post(f"/api/v1/jobconfigs/{jc['id']}/run").json() for _ in range(4)]
        for job in jobs:
            assert api.wait(job["id"])["status"] == "FINISHED"
            assert "level=manifest" in api.log(job["id"])
        cached = worker.cache_dir / "packages" / pkg["sha256"]
        assert cached.is_file()
        first = cached.stat()
        again = api.http.post(f"/api/v1/jobconfigs/{jc['id']}/run").json()
        assert api.wait(again["id"])["status"] == "FINISHED"
        assert cached.stat().st_ino == first.st_ino  # a cache hit: not downloaded again
        assert [p.name for p in (worker.cache_dir / "packages").iterdir()] == [pkg["sha256"]]
        assert worker.stderr_text().count(f"package/{pkg['sha256']}") <= 1


def test_a_worker_takes_jobs_of_its_pool_only_and_no_more_than_its_slots(
    server: RunningServer, api: Api, tmp_path: Path
) -> None:
    token = _worker_token(server, pool="gpu")
    with remote_worker(
        server.url, token, tmp_path / "w1", pool="gpu", slots=2, wait_registered=server.token
    ):
        other = api.run(["/bin/true"])  # pool "default": nobody serves it
        stamp = "/usr/bin/python3 -c 'import time; print(time.time())'"
        script = f'echo "from=$({stamp})"; sleep 1; echo "to=$({stamp})"'
        jobs = [api.run(["/bin/sh", "-c", script], pool="gpu") for _ in range(5)]
        spans = []
        for job in jobs:
            assert api.wait(job["id"], timeout=60)["status"] == "FINISHED"
            text = api.log(job["id"])
            spans.append((_stamp(text, "from="), _stamp(text, "to=")))
        # The programs' own clocks: never more than 2 of them ran at once.
        most = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
        assert most == 2, spans
        assert api.job(other["id"])["status"] == "QUEUED"


def _stamp(log: str, prefix: str) -> float:
    for line in log.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[2].startswith(prefix):
            return float(parts[2][len(prefix) :])
    raise AssertionError(f"{prefix!r} not in {log!r}")


def test_a_token_of_another_pool_is_refused(server: RunningServer, tmp_path: Path) -> None:
    token = _worker_token(server, pool="gpu")
    with remote_worker(server.url, token, tmp_path / "w1", pool="default") as worker:
        assert worker.wait(timeout=30) != 0
        assert "pool 'gpu'" in worker.stderr_text()


def test_sigterm_drains_the_worker(server: RunningServer, api: Api, tmp_path: Path) -> None:
    token = _worker_token(server)
    with remote_worker(
        server.url, token, tmp_path / "w1", slots=1, wait_registered=server.token
    ) as worker:
        job = api.run(["/bin/sh", "-c", "echo started; sleep 2; echo finished"])
        api.wait_log(job["id"], "started")
        worker.signal(signal.SIGTERM)
        # Submitted once the worker says it drains: a job submitted before could be
        # claimed ahead by it (and then end FAILED worker lost, not stay QUEUED).
        deadline = time.monotonic() + 30
        while not any(w["draining"] for w in api.http.get("/api/v1/workers").json()["items"]):
            assert time.monotonic() < deadline, "the worker never said it drains"
            time.sleep(0.05)
        later = api.run(["/bin/true"])
        assert worker.wait(timeout=30) == 0
        done = api.job(job["id"])
        assert done["status"] == "FINISHED", done
        assert "finished" in api.log(job["id"])
        assert api.job(later["id"])["status"] == "QUEUED"  # taken by nobody
        listed = api.http.get("/api/v1/workers").json()["items"]
        assert [w["draining"] for w in listed if w["kind"] == "remote"] == [True]


def test_a_killed_worker_loses_its_jobs_after_the_lease(
    server: RunningServer, api: Api, tmp_path: Path
) -> None:
    token = _worker_token(server)
    with remote_worker(server.url, token, tmp_path / "w1", wait_registered=server.token) as worker:
        job = api.run(["/bin/sh", "-c", "echo started; sleep 120"])
        api.wait_log(job["id"], "started")
        worker.signal(signal.SIGKILL)
        worker.wait(timeout=10)
        done = api.wait(job["id"], timeout=30)
        assert done["status"] == "FAILED"
        assert "worker lost" in (done["status_reason"] or "")


def test_a_worker_back_after_its_lease_cannot_overwrite_the_job(
    server: RunningServer, api: Api, tmp_path: Path
) -> None:
    token = _worker_token(server)
    with remote_worker(server.url, token, tmp_path / "w1", wait_registered=server.token) as worker:
        # The program outlives the worker's pause: it ends (late line, output file) while
        # the worker is stopped, so the worker has all of it to report when it is back.
        script = 'echo started; sleep 2; echo late-line; echo late > "$LOCAL_JOB_OUT_DIR/late.txt"'
        job = api.run(["/bin/sh", "-c", script])
        api.wait_log(job["id"], "started")
        worker.signal(signal.SIGSTOP)  # partitioned: no renewals, no reports
        failed = api.wait(job["id"], timeout=30)
        assert failed["status"] == "FAILED"
        assert "worker lost" in (failed["status_reason"] or "")
        worker.signal(signal.SIGCONT)
        # Back, the worker learns it lost the job (its renewal, or a report refused 409).
        deadline = time.monotonic() + 30
        while not any(
            sign in worker.stderr_text() for sign in ("lost the lease", "not recorded", "409")
        ):
            assert time.monotonic() < deadline, worker.stderr_text()
            time.sleep(0.1)
        after = api.job(job["id"])
        assert (after["status"], after["status_reason"]) == ("FAILED", failed["status_reason"])
        assert "late-line" not in api.log(job["id"])
        assert api.outputs(job["id"]) == []


def test_a_job_ending_while_the_server_restarts_is_reported_when_it_is_back(
    tmp_path: Path,
) -> None:
    port = free_port()
    home = tmp_path / "home"
    env = {**FAST, "JOBYARD_LEASE_SECONDS": "30"}
    with jobyard_server(home, workers=0, env=env, port=port) as first:
        token = _worker_token(first)
        api = Api(first)
        with remote_worker(
            first.url, token, tmp_path / "w1", wait_registered=first.token
        ) as worker:
            job = api.run(["/bin/sh", "-c", "echo started; sleep 3; echo after-restart"])
            api.wait_log(job["id"], "started")
            first.process.send_signal(signal.SIGKILL)  # no orderly stop: jobs untouched
            first.process.wait(timeout=10)
            time.sleep(4)  # the program ends while no server answers
            with jobyard_server(home, workers=0, env=env, port=port) as second:
                again = Api(second)
                done = again.wait(job["id"], timeout=60)
                assert done["status"] == "FINISHED", done
                assert "after-restart" in again.log(job["id"])
                assert worker.process.poll() is None
                again.http.close()
        api.http.close()


def test_many_short_jobs_all_end_as_they_ran(
    server: RunningServer, api: Api, tmp_path: Path
) -> None:
    """A program that ends at once: its end report must not overtake its RUNNING one
    (two HTTP calls may land in either order; an end first would be refused)."""
    token = _worker_token(server)
    with remote_worker(server.url, token, tmp_path / "w1", slots=4, wait_registered=server.token):
        jobs = [api.run(["/bin/true"]) for _ in range(120)]
        states = [api.wait(job["id"], timeout=120)["status"] for job in jobs]
        assert states == ["FINISHED"] * len(jobs)


def test_a_remote_job_gets_its_payload_files(
    server: RunningServer, api: Api, tmp_path: Path
) -> None:
    token = _worker_token(server)
    with remote_worker(server.url, token, tmp_path / "w1", wait_registered=server.token) as worker:
        job = api.run(["/bin/sh", "-c", 'cat "$JOB_PAYLOAD_DIR/data.txt"'], hold=True)
        assert job["status"] == "WAITING"
        r = api.http.post(
            f"/api/v1/jobs/{job['id']}/payload",
            files={"file": ("data.txt", b"payload-content-42\n")},
        )
        assert r.status_code == 201, r.text
        assert api.http.post(f"/api/v1/jobs/{job['id']}/release").status_code == 200
        done = api.wait(job["id"])
        assert done["status"] == "FINISHED", (done, api.log(job["id"]))
        assert "payload-content-42" in api.log(job["id"])
        # The download was for this job only: nothing of it is left on the worker host.
        leftovers = list((worker.home / "worker" / "state").rglob("*"))
        assert not [p for p in leftovers if p.is_file()], leftovers


def test_a_long_log_arrives_whole(server: RunningServer, api: Api, tmp_path: Path) -> None:
    """More than one log piece (256 KiB each): every line arrives, in order, once."""
    token = _worker_token(server)
    with remote_worker(server.url, token, tmp_path / "w1", wait_registered=server.token):
        script = "import sys\nfor i in range(20000): print(f'line-{i:05d}-' + 'x' * 40)"
        job = api.run(["/usr/bin/python3", "-c", script])
        assert api.wait(job["id"])["status"] == "FINISHED"
        lines = [line.split(" ", 2)[2] for line in api.log(job["id"]).splitlines()]
        assert lines == [f"line-{i:05d}-" + "x" * 40 for i in range(20000)]


def _remote_worker_id(api: Api, pid: int) -> str:
    listed = api.http.get("/api/v1/workers").json()["items"]
    (found,) = [w for w in listed if w["kind"] == "remote" and w["pid"] == pid]
    return str(found["id"])


def test_jobs_requiring_labels_run_only_on_workers_having_them(
    server: RunningServer, api: Api, tmp_path: Path
) -> None:
    token = _worker_token(server)
    r = api.http.post(
        "/api/v1/jobconfigs",
        json={
            "name": "needs-gpu",
            "command": ["/bin/sh", "-c", "echo on-gpu"],
            "labels": {"gpu": "a100"},
        },
    )
    assert r.status_code == 201, r.text
    jc = r.json()
    with remote_worker(
        server.url, token, tmp_path / "plain", wait_registered=server.token
    ) as plain:
        job = api.http.post(f"/api/v1/jobconfigs/{jc['id']}/run").json()
        ordinary = api.run(["/bin/true"])
        assert api.wait(ordinary["id"])["status"] == "FINISHED"  # the worker does take jobs
        waiting = api.job(job["id"])
        assert waiting["status"] == "QUEUED", waiting  # but not this one
        assert "gpu=a100" in waiting["waiting_reason"]["message"], waiting
        with remote_worker(
            server.url,
            token,
            tmp_path / "gpu",
            args=["--label", "gpu=a100", "--label", "zone=b"],
            wait_registered=server.token,
        ) as gpu:
            done = api.wait(job["id"], timeout=30)
            assert done["status"] == "FINISHED", done
            assert done["worker_id"] == _remote_worker_id(api, gpu.process.pid)
            assert done["worker_id"] != _remote_worker_id(api, plain.process.pid)
            listed = api.http.get("/api/v1/workers").json()["items"]
            assert {"gpu": "a100", "zone": "b"} in [w["labels"] for w in listed]


def test_a_drain_asked_by_an_admin_finishes_the_job_and_the_worker_exits(
    server: RunningServer, api: Api, tmp_path: Path
) -> None:
    token = _worker_token(server)
    with remote_worker(
        server.url, token, tmp_path / "w1", slots=2, wait_registered=server.token
    ) as worker:
        job = api.run(["/bin/sh", "-c", "echo started; sleep 2; echo finished"])
        api.wait_log(job["id"], "started")
        worker_id = _remote_worker_id(api, worker.process.pid)
        r = api.http.post(f"/api/v1/workers/{worker_id}/drain")
        assert r.status_code == 202, r.text
        assert worker.wait(timeout=30) == 0  # it finished its job, then left
        done = api.job(job["id"])
        assert done["status"] == "FINISHED", done
        assert "finished" in api.log(job["id"])
        later = api.run(["/bin/true"])
        time.sleep(0.5)
        assert api.job(later["id"])["status"] == "QUEUED"  # nobody took it
        assert "drain" in worker.stderr_text()
