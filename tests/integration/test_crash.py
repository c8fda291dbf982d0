"""``kill -9`` of ``jobyard up`` in the middle of work, then a restart on the same home.

The server runs as a real subprocess. When it is killed, the programs of its jobs run in
their own sessions and survive as orphans (the realistic case). The restarted server must:

* end the jobs the dead server's workers held (INITIALIZING and RUNNING) as FAILED with a
  "worker lost" reason, and kill their orphaned programs;
* run every job that was SEQUENCED or QUEUED at the kill, exactly once;
* leave histories that are valid paths of the status model.

Each job program appends ``$JOB_ID`` to a marker file when it starts (one line per
execution), writes its pid to ``pids/<id>``, then blocks until a "go" file exists. The
test creates that file only after it has checked the orphans, so nothing can end before
the test has looked at it, and no timing assumption is needed. The snapshot of the
statuses at the kill is read from the dead server's SQLite file.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import signal
import sqlite3
import subprocess
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobyard.core.jobs import INITIAL, TERMINAL, TRANSITIONS, JobStatus
from tests.support.server import clean_env, free_port, jobyard_command

DEADLINE = 45.0
#: Files in the package of the job that must be INITIALIZING at the kill. Unpacking it
#: (and copying the tree into the job folder) takes a couple of seconds: that is the
#: window in which the server is killed.
INIT_PACKAGE_FILES = 8_000

JOB_SCRIPT = (
    'echo "$JOB_ID" >> "$MARKS"; '
    'echo $$ > "$PIDS/$JOB_ID.tmp" && mv "$PIDS/$JOB_ID.tmp" "$PIDS/$JOB_ID"; '
    'while [ ! -e "$GO" ]; do sleep 0.05; done'
)


@dataclass
class Server:
    """A ``jobyard up`` subprocess."""

    process: subprocess.Popen[bytes]
    url: str
    token: str
    stderr_path: Path

    def client(self) -> httpx.Client:
        """An authenticated client."""
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def stderr(self) -> str:
        """What the server wrote to stderr so far."""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")


def _start(home: Path, name: str) -> Server:
    port = free_port()
    env = clean_env(
        {
            "JOBYARD_HOME": str(home),
            "JOBYARD_HOST": "127.0.0.1",
            "JOBYARD_PORT": str(port),
            "JOBYARD_WORKERS": "2",
            "JOBYARD_LEASE_SECONDS": "3",
            "JOBYARD_HEARTBEAT_SECONDS": "0.5",
            "JOBYARD_MAINTENANCE_SECONDS": "0.5",
            "JOBYARD_ABORT_GRACE_SECONDS": "1",
        }
    )
    stderr_path = home.parent / f"{name}.stderr.log"
    with (home.parent / f"{name}.stdout.log").open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [*jobyard_command(), "up"],
            env=env,
            cwd=home.parent,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    token_file = home / "admin.token"
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=2) as probe:
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"jobyard up exited with {process.returncode}:\n"
                    + stderr_path.read_text(errors="replace")
                )
            with contextlib.suppress(httpx.TransportError):
                if probe.get(f"{url}/healthz").status_code == 200 and token_file.exists():
                    break
            if time.monotonic() > deadline:
                process.kill()
                raise AssertionError("jobyard up did not answer /healthz in 60 s")
            time.sleep(0.05)
    return Server(process, url, token_file.read_text().strip(), stderr_path)


def _stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


def _wait_for(what: str, check: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _job_process_alive(pid: int, job_id: int) -> bool:
    """True if ``pid`` is a live (not zombie) process running job ``job_id``'s program."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and f"JOB_ID={job_id}".encode() in environ.split(b"\0")


def _many_files_zip(count: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(count):
            zf.writestr(f"d{i % 64}/f{i}.txt", "x")
    return buf.getvalue()


def _statuses_in_db(db: Path) -> dict[int, tuple[str, int | None]]:
    """``{job_id: (status, pid)}`` read straight from the (dead) server's database."""
    conn = sqlite3.connect(db)
    try:
        return {
            row[0]: (row[1], row[2]) for row in conn.execute("SELECT id, status, pid FROM jobs")
        }
    finally:
        conn.close()


def _check_history(client: httpx.Client, job: dict[str, Any]) -> None:
    events = client.get(f"/api/v1/jobs/{job['id']}/events").json()["items"]
    path = [JobStatus(e["status"]) for e in events]
    assert path, f"job {job['id']} has no events"
    assert path[0] in INITIAL, (job["id"], path)
    for before, after in itertools.pairwise(path):
        assert after in TRANSITIONS[before], f"job {job['id']}: {before} -> {after} in {path}"
    assert path[-1] == JobStatus(job["status"]), (job["id"], path, job["status"])
    assert path[-1] in TERMINAL, (job["id"], path)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers started by the test; each is stopped (or already dead) at the end."""
    started: list[Server] = []
    yield started
    for server in reversed(started):
        _stop(server)


def test_kill_9_and_restart(tmp_path: Path, servers: list[Server]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    marks, pids, go = tmp_path / "runs.txt", tmp_path / "pids", tmp_path / "go"
    pids.mkdir()
    macros = {"MARKS": str(marks), "PIDS": str(pids), "GO": str(go)}
    command = ["sh", "-c", JOB_SCRIPT]
    try:
        _scenario(home, marks, pids, go, macros, command, servers)
    finally:
        go.touch()  # any program still blocked (on a failure path) now exits by itself


def _scenario(
    home: Path,
    marks: Path,
    pids: Path,
    go: Path,
    macros: dict[str, str],
    command: list[str],
    servers: list[Server],
) -> None:
    first = _start(home, "first")
    servers.append(first)
    with first.client() as c:
        package = c.post(
            "/api/v1/packages",
            files={"file": ("many.zip", _many_files_zip(INIT_PACKAGE_FILES), "application/zip")},
        )
        assert package.status_code == 201, package.text

        def jobconfig(name: str, max_concurrent: int, **extra: Any) -> int:
            body = {
                "name": name,
                "command": command,
                "macros": macros,
                "max_concurrent": max_concurrent,
                **extra,
            }
            r = c.post("/api/v1/jobconfigs", json=body)
            assert r.status_code == 201, r.text
            return int(r.json()["id"])

        def run(jobconfig_id: int) -> int:
            r = c.post(f"/api/v1/jobconfigs/{jobconfig_id}/run")
            assert r.status_code == 201, r.text
            return int(r.json()["id"])

        def status(job_id: int) -> str:
            return str(c.get(f"/api/v1/jobs/{job_id}").json()["status"])

        sequenced_jc = jobconfig("one-at-a-time", 1)
        init_jc = jobconfig("big-package", 1, package_id=package.json()["id"])
        unlimited_jc = jobconfig("unlimited", 0)

        # Slot 1: the first job of a max_concurrent=1 jobconfig, RUNNING; three behind it.
        sequenced = [run(sequenced_jc) for _ in range(4)]
        _wait_for("the first sequenced job to run", (pids / str(sequenced[0])).exists)
        # Slot 2: a job preparing a big package (INITIALIZING for a while). Submitted
        # before the unlimited ones, it has the lowest seq, so slot 2 takes it first.
        init_job = run(init_jc)
        queued = [run(unlimited_jc) for _ in range(4)]
        _wait_for("the package job to initialize", lambda: status(init_job) == "INITIALIZING")
        os.kill(first.process.pid, signal.SIGKILL)  # the server only, not its job programs
        first.process.wait(timeout=30)

    at_kill = _statuses_in_db(home / "jobyard.db")
    expected = {
        sequenced[0]: "RUNNING",
        init_job: "INITIALIZING",
        **{j: "SEQUENCED" for j in sequenced[1:]},
        **{j: "QUEUED" for j in queued},
    }
    assert {j: s for j, (s, _pid) in at_kill.items()} == expected, first.stderr()
    running_pid = int((pids / str(sequenced[0])).read_text())
    assert at_kill[sequenced[0]][1] == running_pid
    assert _job_process_alive(running_pid, sequenced[0]), "the orphan should outlive the server"

    second = _start(home, "second")
    servers.append(second)
    with second.client() as c:
        # (a) jobs held by the dead server's workers: FAILED "worker lost", orphan killed.
        for job_id in (sequenced[0], init_job):
            job = c.get(f"/api/v1/jobs/{job_id}").json()
            assert job["status"] == "FAILED", job
            assert "worker lost" in (job["status_reason"] or ""), job
        _wait_for(
            f"the orphaned program of job {sequenced[0]} (pid {running_pid}) to be killed",
            lambda: not _job_process_alive(running_pid, sequenced[0]),
            timeout=10,
        )
        go.touch()

        # (b) every SEQUENCED/QUEUED job runs to FINISHED.
        def all_ended() -> list[dict[str, Any]] | None:
            jobs = [c.get(f"/api/v1/jobs/{j}").json() for j in sorted(expected)]
            return jobs if all(job["status"] in TERMINAL for job in jobs) else None

        ended = _wait_for("every job to end", all_ended)
        by_id = {job["id"]: job for job in ended}
        for job_id in [*sequenced[1:], *queued]:
            assert by_id[job_id]["status"] == "FINISHED", by_id[job_id]
        # Sequencing held across the restart: the max_concurrent=1 jobs ran in order.
        starts = [by_id[j]["started_at"] for j in sequenced[1:]]
        assert starts == sorted(starts), starts

        # (d) histories are paths of the status model.
        for job in ended:
            _check_history(c, job)

    # (b, c) exactly once: every job id appears once in the markers, the FAILED
    # INITIALIZING job never started its program.
    runs = Counter(int(line) for line in marks.read_text().split())
    assert runs == Counter([sequenced[0], *sequenced[1:], *queued]), runs
    assert all(n == 1 for n in runs.values()), runs
