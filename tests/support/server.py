"""A real ``jobyard up`` as a subprocess, for end-to-end tests of the CLI and other clients.

Use :func:`jobyard_server` as a context manager, or :func:`server_fixture` to declare a
pytest fixture in a test module::

    server = server_fixture(scope="module", workers=2)

    def test_something(server: RunningServer) -> None:
        url, token, home = server

The server gets its own ``JOBYARD_HOME`` (a temporary folder) and a free port; no
``JOBYARD_*`` variable of the developer's environment leaks into it. Startup waits for
``/healthz`` with a deadline and fails with the server's stderr; at the end the server
gets SIGTERM (then SIGKILL), and its stderr is printed if a test that used it failed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from tests.support.unprivileged import UserRuntime

#: How long ``jobyard up`` may take to answer ``/healthz``.
STARTUP_SECONDS = 60.0
#: How long it may take to stop after SIGTERM (running jobs are aborted on the way out).
SHUTDOWN_SECONDS = 30.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def jobyard_command() -> list[str]:
    """How to run the CLI of the code under test (this interpreter, never a PATH lookup)."""
    return [sys.executable, "-m", "jobyard.cli"]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment without ``JOBYARD_*``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBYARD_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class RunningServer:
    """A started server; unpacks as ``url, token, home``."""

    url: str
    token: str
    home: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    stdout_path: Path = field(repr=False)
    stderr_path: Path = field(repr=False)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.url, self.token, self.home))

    def client_env(self, **extra: str) -> dict[str, str]:
        """Environment for a CLI subprocess talking to this server."""
        return clean_env({"JOBYARD_SERVER": self.url, "JOBYARD_TOKEN": self.token, **extra})

    def stderr_text(self, max_lines: int = 300) -> str:
        """The last lines the server wrote to stderr."""
        try:
            lines = self.stderr_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-max_lines:])


def _wait_healthy(
    url: str, home: Path, process: subprocess.Popen[bytes], stderr_path: Path, deadline: float
) -> str:
    token_file = home / "admin.token"
    last_error = "no answer yet"
    with httpx.Client(timeout=2.0) as client:
        while True:
            code = process.poll()
            if code is not None:
                raise RuntimeError(
                    f"jobyard up exited with code {code} during startup:\n"
                    + stderr_path.read_text(encoding="utf-8", errors="replace")
                )
            try:
                response = client.get(f"{url}/healthz")
                if response.status_code == 200 and token_file.exists():
                    token = token_file.read_text(encoding="utf-8").strip()
                    if token:
                        return token
                last_error = f"HTTP {response.status_code}, token file: {token_file.exists()}"
            except httpx.TransportError as exc:
                last_error = repr(exc)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"jobyard up did not become healthy at {url} ({last_error}):\n"
                    + stderr_path.read_text(encoding="utf-8", errors="replace")
                )
            time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=SHUTDOWN_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def jobyard_server(
    home: Path,
    *,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    startup_seconds: float = STARTUP_SECONDS,
    as_user: UserRuntime | None = None,
    command_name: str = "up",
    port: int | None = None,
) -> Iterator[RunningServer]:
    """Run ``jobyard up`` with ``JOBYARD_HOME=home`` on a free port until the block ends.

    ``as_user``: run it as that unprivileged user (``home`` must be theirs).
    ``command_name``: ``"server"`` runs ``jobyard server`` (no local slots) instead.
    ``port``: that port instead of a free one (a restart on the same address).
    """
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    server_env = clean_env(
        {
            "JOBYARD_HOME": str(home),
            "JOBYARD_HOST": "127.0.0.1",
            "JOBYARD_PORT": str(port),
            "JOBYARD_WORKERS": str(workers),
            **(env or {}),
        }
    )
    command = [*jobyard_command(), command_name, *args]
    if as_user is not None:
        command = as_user.command(command_name, *args)
        server_env = as_user.env(server_env, home)
    stdout_path = home.with_name(home.name + ".stdout.log")
    stderr_path = home.with_name(home.name + ".stderr.log")
    # 0600: the first start prints the admin token.
    opener = functools.partial(os.open, mode=0o600)
    with (
        open(stdout_path, "wb", opener=opener) as out,
        open(stderr_path, "wb", opener=opener) as err,
    ):
        process = subprocess.Popen(
            command,
            env=server_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=home,
        )
    try:
        token = _wait_healthy(url, home, process, stderr_path, time.monotonic() + startup_seconds)
        yield RunningServer(url, token, home, process, stdout_path, stderr_path)
    finally:
        _stop(process)


def _report(request: pytest.FixtureRequest, server: RunningServer) -> None:
    """Print the server's stderr past pytest's capture (teardown output is otherwise hidden)."""
    text = server.stderr_text() or "(empty)"
    title = f"jobyard up stderr ({server.url}, home {server.home})"
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_sep("-", title)
            reporter.write_line(text)
        else:  # pragma: no cover - only with -p no:terminal
            sys.stderr.write(f"--- {title}\n{text}\n")


def server_fixture(
    *,
    scope: str = "module",
    name: str = "server",
    workers: int = 2,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
) -> Callable[..., Any]:
    """A pytest fixture (named ``name``) yielding a :class:`RunningServer`.

    When a test failed while the server ran, its stderr is printed at teardown.
    """

    def _server(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[RunningServer]:
        home = tmp_path_factory.mktemp("jobyard-home")
        failed_before = request.session.testsfailed
        with jobyard_server(home, workers=workers, env=env, args=args) as server:
            yield server
            if request.session.testsfailed > failed_before:
                _report(request, server)

    return pytest.fixture(scope=scope, name=name)(_server)  # type: ignore[call-overload, no-any-return]
