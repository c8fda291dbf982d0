"""A job on a worker host cannot read the worker token.

A root ``jobyard up`` (no local slots) and a root ``jobyard worker`` (isolation ``uid``:
every job runs as a uid of its own), the worker given its token the worst way, on the
command line, and the best way, in a 0600 file. A job looks everywhere a token could
be: every process's command line and environment, its own environment, the token file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_remote_workers import Api
from tests.support.remote_worker import create_worker_token, remote_worker
from tests.support.server import RunningServer, jobyard_server

#: Prints where it found a worker token (``found=none`` when nowhere).
HUNT = r"""
import glob, os
needle = ("jy" + "w_").encode()  # not spelled out: this program's own argv holds it
found = []
for proc in glob.glob("/proc/[0-9]*"):
    for name in ("cmdline", "environ"):
        try:
            with open(proc + "/" + name, "rb") as fh:
                if needle in fh.read():
                    found.append(proc + "/" + name)
        except OSError:
            pass
found += ["env:" + k for k, v in os.environ.items() if needle.decode() in v]
for path in os.environ["TOKEN_PATHS"].split(":"):
    try:
        with open(path) as fh:
            fh.read()
        found.append("file:" + path)
    except OSError:
        pass
print("found=" + (",".join(found) or "none"), flush=True)
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    if os.geteuid() != 0:
        pytest.skip("the uid sandbox needs a root worker")
    with jobyard_server(tmp_path / "home", workers=0) as running:
        yield running


@pytest.mark.parametrize("on_argv", [True, False], ids=["token-on-argv", "token-file"])
def test_a_job_cannot_read_the_worker_token(
    server: RunningServer, tmp_path: Path, on_argv: bool
) -> None:
    token = create_worker_token(server.url, server.token, "host")
    home = tmp_path / "worker"
    api = Api(server)
    try:
        _hunt(server, api, token, home, on_argv)
    finally:
        api.http.close()


def _hunt(server: RunningServer, api: Api, token: str, home: Path, on_argv: bool) -> None:
    with remote_worker(
        server.url,
        token,
        home,
        token_on_argv=on_argv,
        env={"JOBYARD_ISOLATION": "uid"},
        wait_registered=server.token,
    ) as worker:
        # The worker's own command line no longer holds the token (re-executed).
        cmdline = Path(f"/proc/{worker.process.pid}/cmdline").read_bytes()
        assert b"jyw_" not in cmdline
        assert (b"--token-fd" in cmdline) is on_argv
        paths = ":".join([str(home.parent / f"{home.name}.secret" / "worker.token")])
        job = api.run(["/usr/bin/python3", "-c", HUNT], macros={"TOKEN_PATHS": paths})
        done = api.wait(job["id"], timeout=60)
        log = api.log(job["id"])
        assert done["status"] == "FINISHED", (done, log, worker.stderr_text())
        assert "found=none" in log, log
        assert "jyw_" not in log


def test_the_worker_refuses_a_token_file_others_may_read(
    server: RunningServer, tmp_path: Path
) -> None:
    token = create_worker_token(server.url, server.token, "host")
    with remote_worker(server.url, token, tmp_path / "worker") as worker:
        token_file = tmp_path / "worker.secret" / "worker.token"
        # The file was 0600 when the worker read it: it runs. Now open it up and restart.
        assert worker.process.poll() is None
    os.chmod(token_file, 0o644)
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "jobyard.cli", "worker", "--server", server.url,
         "--token-file", str(token_file), "--home", str(tmp_path / "worker")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "chmod 600" in result.stderr
    with httpx.Client() as client:  # the refused token stays valid for a good worker
        r = client.get(f"{server.url}/healthz")
        assert r.status_code == 200
