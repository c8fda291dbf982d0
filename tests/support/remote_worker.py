"""``jobyard worker`` subprocesses for tests: a worker token, a started worker, its end."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.server import clean_env, jobyard_command


def create_worker_token(url: str, admin_token: str, name: str, pool: str | None = None) -> str:
    """A new worker token (through the API, as an admin)."""
    r = httpx.post(
        f"{url}/api/v1/worker-tokens",
        json={"name": name, "pool": pool},
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=10,
    )
    if r.status_code != 201:
        raise AssertionError(f"worker token not created: {r.status_code} {r.text}")
    return str(r.json()["token"])


@dataclass
class RemoteWorker:
    """A started ``jobyard worker``."""

    process: subprocess.Popen[bytes]
    home: Path
    stderr_path: Path
    cache_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.cache_dir = self.home / "worker" / "cache"

    def stderr_text(self) -> str:
        """What the worker wrote to stderr so far."""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the worker process."""
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the worker to exit; its exit code."""
        return self.process.wait(timeout=timeout)


def write_token_file(folder: Path, token: str) -> Path:
    """A 0600 file holding ``token``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "worker.token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return path


@contextlib.contextmanager
def remote_worker(
    url: str,
    token: str,
    home: Path,
    *,
    pool: str = "default",
    slots: int = 2,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    token_on_argv: bool = False,
    wait_registered: str | None = None,
) -> Iterator[RemoteWorker]:
    """Run ``jobyard worker`` until the block ends (SIGTERM, then SIGKILL).

    The token goes in a 0600 file (``--token-file``), or on the command line with
    ``token_on_argv``. ``wait_registered``: an admin token to wait with until the worker
    is listed by the server.
    """
    home.mkdir(parents=True, exist_ok=True)
    command = [
        *jobyard_command(),
        "worker",
        "--server",
        url,
        "--pool",
        pool,
        "--slots",
        str(slots),
        "--home",
        str(home),
        *args,
    ]
    if token_on_argv:
        command += ["--token", token]
    else:
        command += [
            "--token-file",
            str(write_token_file(home.parent / f"{home.name}.secret", token)),
        ]
    stderr_path = home.with_name(home.name + ".worker.log")
    opener = functools.partial(os.open, mode=0o600)
    with open(stderr_path, "wb", opener=opener) as err:
        process = subprocess.Popen(
            command,
            env=clean_env(dict(env or {})),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=home,
        )
    worker = RemoteWorker(process, home, stderr_path)
    try:
        if wait_registered is not None:
            _wait_registered(url, wait_registered, process.pid, worker)
        yield worker
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_registered(url: str, admin_token: str, pid: int, worker: RemoteWorker) -> None:
    deadline = time.monotonic() + 30
    headers = {"Authorization": f"Bearer {admin_token}"}
    while True:
        if worker.process.poll() is not None:
            raise AssertionError(f"jobyard worker exited:\n{worker.stderr_text()}")
        r = httpx.get(f"{url}/api/v1/workers", headers=headers, timeout=10)
        if r.status_code == 200 and any(
            w["kind"] == "remote" and w["pid"] == pid for w in r.json()["items"]
        ):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"jobyard worker did not register:\n{worker.stderr_text()}")
        time.sleep(0.05)
