"""``kill -9`` of ``jobyard up`` in the middle of work, then a restart on the same home.

The server runs as a real subprocess. When it is killed, the programs of its jobs run in
their own sessions and survive as orphans (the realistic case). The restarted server must:

* end the jobs the dead server's workers held (INITIALIZING and RUNNING) as FAILED with a
  "worker lost" reason, and kill their orphaned programs;
* run every job that was SEQUENCED or QUEUED at the kill, exactly once;
* leave histories that are valid paths of the status model.

A second scenario kills the server in the window between a worker spawning a program
and recording RUNNING (pid not stored yet); that orphan must be killed as well.

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
from tests.support.jobs import shared_folder
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


@dataclass
class Marks:
    """Where job programs leave traces, and the file that lets them finish."""

    runs: Path
    pids: Path
    go: Path

    @property
    def macros(self) -> dict[str, str]:
        """The macros :data:`JOB_SCRIPT` reads."""
        return {"MARKS": str(self.runs), "PIDS": str(self.pids), "GO": str(self.go)}

    def pid(self, job_id: int) -> int | None:
        """The pid job ``job_id``'s program wrote, if it started."""
        path = self.pids / str(job_id)
        return int(path.read_text()) if path.exists() else None

    def counts(self) -> Counter[int]:
        """How many times each job id started a program."""
        text = self.runs.read_text() if self.runs.exists() else ""
        return Counter(int(line) for line in text.split())


@pytest.fixture
def marks() -> Iterator[Marks]:
    """Marker files; at the end "go" is created so that any program left exits by itself.

    They live in a folder every job uid may write (jobs run sandboxed, each as its own
    uid): the runs file and the pids folder are open to all.
    """
    with shared_folder() as shared:
        found = Marks(shared / "runs.txt", shared / "pids", shared / "go")
        found.pids.mkdir(mode=0o777)
        os.chmod(found.pids, 0o777)
        found.runs.touch(mode=0o666)
        os.chmod(found.runs, 0o666)
        try:
            yield found
        finally:
            found.go.touch()


class Api:
    """The few calls the scenarios make, asserting success."""

    def __init__(self, client: httpx.Client, marks: Marks) -> None:
        self.client = client
        self.marks = marks

    def upload_many_files(self, count: int) -> int:
        """A package whose preparation (unpack + copy) keeps a job INITIALIZING a while."""
        r = self.client.post(
            "/api/v1/packages",
            files={"file": ("many.zip", _many_files_zip(count), "application/zip")},
        )
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def jobconfig(self, name: str, max_concurrent: int, **extra: Any) -> int:
        """A jobconfig running :data:`JOB_SCRIPT`."""
        body = {
            "name": name,
            "command": ["sh", "-c", JOB_SCRIPT],
            "macros": self.marks.macros,
            "max_concurrent": max_concurrent,
            **extra,
        }
        r = self.client.post("/api/v1/jobconfigs", json=body)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def run(self, jobconfig_id: int) -> int:
        """Submit a job; its id."""
        r = self.client.post(f"/api/v1/jobconfigs/{jobconfig_id}/run")
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def job(self, job_id: int) -> dict[str, Any]:
        """The job record."""
        r = self.client.get(f"/api/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def status(self, job_id: int) -> str:
        """The job's status."""
        return str(self.job(job_id)["status"])


def _kill_9(server: Server) -> None:
    """SIGKILL the server process only: its job programs (own sessions) live on."""
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=30)


def test_kill_9_and_restart(tmp_path: Path, servers: list[Server], marks: Marks) -> None:
    """RUNNING and INITIALIZING jobs end FAILED, the others run once, after ``kill -9``."""
    home = tmp_path / "home"
    home.mkdir()
    first = _start(home, "first")
    servers.append(first)
    with first.client() as client:
        api = Api(client, marks)
        package_id = api.upload_many_files(INIT_PACKAGE_FILES)
        sequenced_jc = api.jobconfig("one-at-a-time", 1)
        init_jc = api.jobconfig("big-package", 1, package_id=package_id)
        unlimited_jc = api.jobconfig("unlimited", 0)

        # Slot 1: the first job of a max_concurrent=1 jobconfig, RUNNING; three behind it.
        sequenced = [api.run(sequenced_jc) for _ in range(4)]
        _wait_for("the first sequenced job to run", lambda: marks.pid(sequenced[0]))
        # Slot 2: a job preparing a big package (INITIALIZING for a while). Submitted
        # before the unlimited ones, it has the lowest seq, so slot 2 takes it first.
        init_job = api.run(init_jc)
        queued = [api.run(unlimited_jc) for _ in range(4)]
        _wait_for("the package job to initialize", lambda: api.status(init_job) == "INITIALIZING")
        _kill_9(first)

    at_kill = _statuses_in_db(home / "jobyard.db")
    expected = {
        sequenced[0]: "RUNNING",
        init_job: "INITIALIZING",
        **{j: "SEQUENCED" for j in sequenced[1:]},
        **{j: "QUEUED" for j in queued},
    }
    assert {j: s for j, (s, _pid) in at_kill.items()} == expected, first.stderr()
    running_pid = marks.pid(sequenced[0])
    assert running_pid is not None and at_kill[sequenced[0]][1] == running_pid
    assert _job_process_alive(running_pid, sequenced[0]), "the orphan should outlive the server"

    second = _start(home, "second")
    servers.append(second)
    with second.client() as client:
        api = Api(client, marks)
        # (a) jobs held by the dead server's workers: FAILED "worker lost", orphan killed.
        for job_id in (sequenced[0], init_job):
            job = api.job(job_id)
            assert job["status"] == "FAILED", job
            assert "worker lost" in (job["status_reason"] or ""), job
        _wait_for(
            f"the orphaned program of job {sequenced[0]} (pid {running_pid}) to be killed",
            lambda: not _job_process_alive(running_pid, sequenced[0]),
            timeout=10,
        )
        marks.go.touch()

        # (b) every SEQUENCED/QUEUED job runs to FINISHED.
        def all_ended() -> list[dict[str, Any]] | None:
            jobs = [api.job(j) for j in sorted(expected)]
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
            _check_history(client, job)

    # (b, c) exactly once: every job id appears once in the markers; the INITIALIZING
    # job never started its program.
    runs = marks.counts()
    assert runs == Counter([sequenced[0], *sequenced[1:], *queued]), runs
    assert all(n == 1 for n in runs.values()), runs


def test_kill_9_after_spawn_before_running(
    tmp_path: Path, servers: list[Server], marks: Marks
) -> None:
    """The program started but RUNNING is not recorded yet: its orphan is killed too.

    A worker spawns the program, then records RUNNING with its pid. A crash in between
    leaves the job INITIALIZING with no pid while the program runs on. The window is made
    wide and deterministic by holding SQLite's write lock from outside while the job
    initializes: the worker spawns the program, then waits for the lock. (A worker that
    writes to the store before spawning simply does not start the program meanwhile;
    the test accepts that too.)
    """
    home = tmp_path / "home"
    home.mkdir()
    first = _start(home, "first")
    servers.append(first)
    with first.client() as client:
        api = Api(client, marks)
        jobconfig = api.jobconfig(
            "slow-start", 1, package_id=api.upload_many_files(INIT_PACKAGE_FILES // 3)
        )
        job_id = api.run(jobconfig)
        _wait_for("the job to initialize", lambda: api.status(job_id) == "INITIALIZING")
        lock = sqlite3.connect(home / "jobyard.db", isolation_level=None, timeout=30)
        try:
            lock.execute("BEGIN IMMEDIATE")  # the server's writes now wait (busy timeout 10 s)
            with contextlib.suppress(AssertionError):  # a program that never starts is fine
                _wait_for("the program to start", lambda: marks.pid(job_id), timeout=7)
            _kill_9(first)
            lock.execute("ROLLBACK")
        finally:
            lock.close()

    status_at_kill, _pid = _statuses_in_db(home / "jobyard.db")[job_id]
    assert status_at_kill == "INITIALIZING", status_at_kill
    pid = marks.pid(job_id)
    if pid is not None:
        assert _job_process_alive(pid, job_id), "the orphan should outlive the server"

    second = _start(home, "second")
    servers.append(second)
    with second.client() as client:
        job = Api(client, marks).job(job_id)
        assert job["status"] == "FAILED", job
        assert "worker lost" in (job["status_reason"] or ""), job
        if pid is not None:
            # The job is recorded as ended: its program must not go on running.
            _wait_for(
                f"the orphaned program of job {job_id} (pid {pid}) to be killed",
                lambda: not _job_process_alive(pid, job_id),
                timeout=10,
            )
        _check_history(client, job)
    assert marks.counts() in (Counter(), Counter([job_id]))
