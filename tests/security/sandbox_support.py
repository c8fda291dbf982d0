"""A real server per sandbox mode, a second user, and a hostile job program, for the
sandbox attacker suite (``test_sandbox.py``).

Two servers: ``root`` (as CI runs it: isolation ``uid``) and ``unprivileged`` (``jobyard
up`` started as ``nobody`` through ``runuser``: isolation ``namespace``, or the announced
fallback ``none`` where namespaces are not available). Jobs report what they tried as
``RESULT {json}`` lines in their log; the tests read them through the API.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.jobs import JOB_PYTHON
from tests.support.server import RunningServer, jobyard_server
from tests.support.unprivileged import UserRuntime, user_home, user_runtime

PASSWORD = "sandbox attacker password"
TERMINAL = {"FINISHED", "ERROR", "FAILED", "CANCELLED"}

#: The attacker's program: ``python3 -c ATTACK <what>`` with inputs in its environment.
ATTACK = r"""
import json, os, signal, socket, sys, time, urllib.error, urllib.request

def report(kind, target, ok, detail=""):
    line = {"kind": kind, "target": str(target), "ok": ok, "detail": str(detail)[:200]}
    print("RESULT " + json.dumps(line), flush=True)

def try_read(path):
    try:
        with open(path, "rb") as fh:
            data = fh.read(1 << 16)
        report("read", path, True, data[:40].hex())
        return True
    except OSError as exc:
        report("read", path, False, exc.strerror)
        return False

def try_write(path):
    try:
        with open(path, "ab") as fh:
            fh.write(b"")
        report("write", path, True)
    except OSError as exc:
        report("write", path, False, exc.strerror)

def try_list(path):
    try:
        names = os.listdir(path)
        report("list", path, True, ",".join(sorted(names))[:200])
        return names
    except OSError as exc:
        report("list", path, False, exc.strerror)
        return None

what = sys.argv[1]
if what == "files":
    for path in json.loads(os.environ["TARGET_FILES"]):
        try_read(path)
        try_write(path)
    for path in json.loads(os.environ["TARGET_DIRS"]):
        try_list(path)
        try:
            open(os.path.join(path, "planted-by-attacker"), "wb").close()
            report("create", path, True)
        except OSError as exc:
            report("create", path, False, exc.strerror)
elif what == "walk":
    here = os.path.realpath(os.getcwd())
    mine = {os.environ[k] for k in ("LOCAL_JOB_SPEC_DIR", "LOCAL_JOB_OUT_DIR", "JOB_PAYLOAD_DIR")}
    mine.add(os.environ.get("TMPDIR", ""))
    folder = os.path.dirname(here)
    while folder not in ("/", ""):
        for name in try_list(folder) or []:
            path = os.path.join(folder, name)
            if path in mine or os.path.islink(path):
                continue
            if os.path.isdir(path):
                for inner in (try_list(path) or [])[:50]:
                    inner_path = os.path.join(path, inner)
                    if os.path.isfile(inner_path) and not os.path.islink(inner_path):
                        try_read(inner_path)
            elif os.path.isfile(path):
                try_read(path)
        folder = os.path.dirname(folder)
elif what == "proc":
    for pid in json.loads(os.environ["TARGET_PIDS"]):
        for part in ("environ", "mem", "maps"):
            try_read(f"/proc/{pid}/{part}")
        for part in ("cwd", "root", "fd"):
            try_list(f"/proc/{pid}/{part}")
        try:
            os.readlink(f"/proc/{pid}/cwd")
            report("readlink", f"/proc/{pid}/cwd", True)
        except OSError as exc:
            report("readlink", f"/proc/{pid}/cwd", False, exc.strerror)
        for sig in (0, signal.SIGTERM, signal.SIGSTOP):
            try:
                os.kill(pid, sig)
                report("signal", f"{pid}:{int(sig)}", True)
            except OSError as exc:
                report("signal", f"{pid}:{int(sig)}", False, exc.strerror)
    try:  # every process this job may signal, whoever it is
        os.kill(-1, signal.SIGCONT)
        report("signal", "-1:18", True)
    except OSError as exc:
        report("signal", "-1:18", False, exc.strerror)
elif what == "escape":
    marker = os.environ["MARKER"]
    os.system(f"setsid sleep {marker} >/dev/null 2>&1 &")
    os.system(f"( sleep {marker} >/dev/null 2>&1 & ) ")
    os.system(f"nohup sleep {marker} >/dev/null 2>&1 &")
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", marker])
        os._exit(0)
    time.sleep(0.3)
    report("escape", "started", True)
elif what == "link":
    out = os.environ["LOCAL_JOB_OUT_DIR"]
    for i, path in enumerate(json.loads(os.environ["TARGET_FILES"])):
        try:
            os.link(path, os.path.join(out, f"hard-{i}"))
            report("hardlink", path, True)
        except OSError as exc:
            report("hardlink", path, False, exc.strerror)
        os.symlink(path, os.path.join(out, f"soft-{i}"))
elif what == "legit":
    spec, out = os.environ["LOCAL_JOB_SPEC_DIR"], os.environ["LOCAL_JOB_OUT_DIR"]
    payload = os.environ["JOB_PAYLOAD_DIR"]
    package_text = open(os.path.join(spec, "data.txt")).read().strip()
    report("package", "data.txt", package_text == "from-the-package")
    report("payload", "input.csv", open(os.path.join(payload, "input.csv")).read() == "a,b\n")
    with open(os.path.join(out, "result.txt"), "w") as fh:
        fh.write("made by the job\n")
    with open(os.path.join(os.environ["TMPDIR"], "scratch"), "w") as fh:
        fh.write("temp")
    api = os.environ["JOBYARD_API_URL"]
    req = urllib.request.Request(f"{api}/api/v1/jobconfigs/{os.environ['JOB_CONFIG_ID']}")
    req.add_header("Authorization", "Bearer " + os.environ["SESSION_ID"])
    with urllib.request.urlopen(req, timeout=10) as answer:
        own = json.load(answer)["id"] == int(os.environ["JOB_CONFIG_ID"])
        report("session", "own jobconfig", own)
    host, port = api.split("//")[1].rsplit(":", 1)
    with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
        report("network", api, True)
elif what == "api":
    api, token = os.environ["JOBYARD_API_URL"], os.environ["SESSION_ID"]
    for method, path, body in json.loads(os.environ["CALLS"]):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(api + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + token)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                report("api", f"{method} {path}", True, answer.status)
        except urllib.error.HTTPError as exc:
            report("api", f"{method} {path}", False, exc.code)
elif what == "victim":
    with open(os.path.join(os.environ["LOCAL_JOB_SPEC_DIR"], "victim-secret.txt"), "w") as fh:
        fh.write("victim data")
    with open(os.path.join(os.environ["LOCAL_JOB_OUT_DIR"], "victim-output.txt"), "w") as fh:
        fh.write("victim output")
    print(f"SPEC={os.environ['LOCAL_JOB_SPEC_DIR']}", flush=True)
    print(f"PID={os.getpid()}", flush=True)
    time.sleep(300)
"""


@dataclass
class Sandboxed:
    """A running server in one sandbox mode, with its admin and the attacker."""

    name: str
    server: RunningServer
    admin: httpx.Client
    mallory: httpx.Client
    mode: str
    banner: str

    @property
    def home(self) -> Path:
        """The server's JOBYARD_HOME."""
        return self.server.home

    def jobconfig(self, client: httpx.Client, name: str, what: str, **extra: Any) -> int:
        """A jobconfig running :data:`ATTACK` with argument ``what``."""
        body = {"name": name, "command": [JOB_PYTHON, "-c", ATTACK, what], **extra}
        r = client.post("/api/v1/jobconfigs", json=body)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def run(self, client: httpx.Client, jobconfig_id: int, **body: Any) -> int:
        """Submit a job of the jobconfig; its id."""
        r = client.post(f"/api/v1/jobconfigs/{jobconfig_id}/run", json=body)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def wait(
        self, job_id: int, statuses: set[str] = TERMINAL, timeout: float = 60
    ) -> dict[str, Any]:
        """The job once it is in one of ``statuses``."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.admin.get(f"/api/v1/jobs/{job_id}").json()
            if job["status"] in statuses:
                return dict(job)
            assert time.monotonic() < deadline, f"job {job_id} stuck in {job['status']}"
            time.sleep(0.05)

    def log(self, job_id: int) -> str:
        """The job's log (as the admin)."""
        r = self.admin.get(f"/api/v1/jobs/{job_id}/log")
        assert r.status_code == 200, r.text
        return r.text

    def results(self, job_id: int) -> list[dict[str, Any]]:
        """The ``RESULT`` lines the attacker's job printed."""
        found = []
        for line in self.log(job_id).splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[1] == "out" and parts[2].startswith("RESULT "):
                found.append(json.loads(parts[2][len("RESULT ") :]))
        return found

    def log_value(self, job_id: int, key: str, timeout: float = 30) -> str:
        """Wait for ``KEY=value`` in the job's output; the value."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log(job_id).splitlines():
                parts = line.split(" ", 2)
                if len(parts) == 3 and parts[2].startswith(key + "="):
                    return parts[2][len(key) + 1 :]
            assert time.monotonic() < deadline, f"job {job_id} never printed {key}"
            time.sleep(0.05)


def _client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _sandbox_line(server: RunningServer) -> tuple[str, str]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = server.stdout_path.read_text(errors="replace")
        for line in text.splitlines():
            if line.strip().startswith("isolation:"):
                mode = line.split("isolation:", 1)[1].split()[0]
                return mode, text
        time.sleep(0.05)
    raise AssertionError("the start banner does not say how jobs are isolated")


@dataclass
class _How:
    runtime: UserRuntime | None
    home: Path


def _how(name: str, tmp: Path) -> _How:
    if name == "root":
        if os.geteuid() != 0:
            pytest.skip("the uid sandbox needs a root server (CI runs as root)")
        # A home whose parents are searchable (unlike pytest's): job folders then live
        # inside it, and the home itself is searchable by job uids (0711) — the harder
        # case for the sandbox. (Under pytest's folders they go to /var/tmp instead.)
        parent = Path(tempfile.mkdtemp(prefix="jobyard-sandbox-", dir="/tmp"))
        parent.chmod(0o711)  # searchable, as /var/lib is; not listable
        return _How(None, parent / "home")
    if os.geteuid() != 0:  # already unprivileged: run the server as we are
        return _How(None, tmp / "home")
    runtime = user_runtime()
    if isinstance(runtime, str):
        pytest.fail(f"cannot run jobyard as an unprivileged user: {runtime}")
    return _How(runtime, user_home(runtime) / "home")


def start_sandboxed(name: str, tmp: Path) -> Iterator[Sandboxed]:
    """Run a server as ``root`` or ``unprivileged``; yield it with its two users."""
    how = _how(name, tmp)
    if how.runtime is not None:
        how.home.mkdir(mode=0o700)
        os.chown(how.home, how.runtime.uid, how.runtime.gid)
    env = {"JOBYARD_ISOLATION": "auto", "JOBYARD_ABORT_GRACE_SECONDS": "2"}
    with jobyard_server(how.home, workers=4, env=env, as_user=how.runtime) as server:
        mode, banner = _sandbox_line(server)
        admin = _client(server.url, server.token)
        r = admin.post(
            "/api/v1/users", json={"name": "mallory", "role": "user", "password": PASSWORD}
        )
        assert r.status_code == 201, r.text
        with httpx.Client(base_url=server.url) as anon:
            login = anon.post("/api/v1/login", json={"name": "mallory", "password": PASSWORD})
        assert login.status_code == 200, login.text
        mallory = _client(server.url, login.json()["access_token"])
        try:
            yield Sandboxed(name, server, admin, mallory, mode, banner)
        finally:
            admin.close()
            mallory.close()
    if how.home.parent != tmp:
        shutil.rmtree(how.home.parent, ignore_errors=True)
