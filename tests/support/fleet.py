"""Processes of a multi-host installation on loopback: server replicas and remote workers.

Unlike :func:`tests.support.server.jobyard_server` (one server for the length of a
block), a :class:`Member` can be killed with ``SIGKILL``, stopped with ``SIGSTOP``,
resumed and restarted on the same port and with the same settings, as an operator's
process supervisor would: what the chaos tests need. Each member appends its output to
one log file across restarts (``<name>.log``), named in failures.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.server import clean_env, free_port, jobyard_command

#: How long a replica may take to answer ``/healthz`` after a (re)start.
STARTUP_SECONDS = 60.0


@dataclass
class Member:
    """One process of the fleet, restartable with the same command and environment."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    cwd: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    starts: int = 0

    @property
    def pid(self) -> int | None:
        """The running process's pid (None: not running)."""
        return self.process.pid if self.alive() and self.process is not None else None

    def alive(self) -> bool:
        """Whether the process runs (a stopped one counts as running)."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start (again): output appended to the member's log."""
        if self.alive():
            raise RuntimeError(f"{self.name} is already running")
        self.cwd.mkdir(parents=True, exist_ok=True)
        opener = functools.partial(os.open, mode=0o600)
        with open(self.log, "ab", opener=opener) as out:
            out.write(f"\n=== start {self.starts + 1} at {time.time():.3f}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
            )
        self.starts += 1

    def signal(self, number: int) -> None:
        """Send ``number`` to the process (nothing when it is not running)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(number)

    def kill(self) -> None:
        """``kill -9`` and reap."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (after SIGCONT, in case it was stopped), then SIGKILL past ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def tail(self, lines: int = 60) -> str:
        """The last lines of the member's log."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return f"--- {self.name} ({self.log})\n" + "\n".join(text.splitlines()[-lines:])


def replica(
    root: Path, name: str, env: Mapping[str, str], *, args: Sequence[str] = ()
) -> tuple[Member, str]:
    """A ``jobyard server`` replica (API, scheduler, maintenance; no local slots) on a
    port of its own, kept across restarts; answers the member and its URL."""
    port = free_port()
    home = root / name
    member = Member(
        name=name,
        argv=[*jobyard_command(), "server", *args],
        env=clean_env(
            {
                "JOBYARD_HOME": str(home),
                "JOBYARD_HOST": "127.0.0.1",
                "JOBYARD_PORT": str(port),
                **env,
            }
        ),
        log=root / f"{name}.log",
        cwd=home,
    )
    return member, f"http://127.0.0.1:{port}"


def worker(
    root: Path,
    name: str,
    *,
    server: str | Sequence[str],
    token: str,
    pool: str,
    slots: int,
    labels: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Member:
    """A remote ``jobyard worker`` talking to ``server`` (several: replicas, the first
    preferred, the next used when one fails); its token in the environment (never on the
    command line, which every local user can read)."""
    label_args = [a for k, v in (labels or {}).items() for a in ("--label", f"{k}={v}")]
    servers = [server] if isinstance(server, str) else list(server)
    server_args = [a for url in servers for a in ("--server", url)]
    home = root / name
    return Member(
        name=name,
        argv=[
            *jobyard_command(),
            "worker",
            *server_args,
            "--pool",
            pool,
            "--slots",
            str(slots),
            "--cache-dir",
            str(home / "cache"),
            *label_args,
        ],
        env=clean_env({"JOBYARD_HOME": str(home), "JOBYARD_WORKER_TOKEN": token, **(env or {})}),
        log=root / f"{name}.log",
        cwd=home,
    )


def wait_healthy(member: Member, url: str, timeout: float = STARTUP_SECONDS) -> None:
    """Wait until the replica answers ``/healthz`` (raise with its log if it exits)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while True:
            if not member.alive():
                raise RuntimeError(f"{member.name} exited during startup\n{member.tail()}")
            try:
                if client.get(f"{url}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{member.name} not healthy at {url}\n{member.tail()}")
            time.sleep(0.1)
