"""Processes of the peer benchmark: start each in its own session, stop it and its group.

Every process ``bench_peers.py`` starts (``redis-server``, the Celery or RQ workers, the
load generator) leads its own session, so that stopping it can also kill whatever it
forked (prefork children, RQ work horses, a job's program) without touching anything
else; the stops are callbacks of an ``ExitStack``, so they run on errors and Ctrl-C too.
Each runs with this folder as its working directory (the worker modules live here).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import free_port


def stop_group(process: subprocess.Popen[bytes], sig: int, grace: float) -> None:
    """Stop ``process`` with ``sig``, then kill whatever is left of its session."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    # The process led its own session: its group holds its children (prefork children,
    # RQ work horses, the program of a job); nothing else of ours is in it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def spawn(
    stack: contextlib.ExitStack,
    cmd: list[str],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    sig: int = signal.SIGTERM,
    grace: float = 20,
    stdout: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session, stderr (and stdout unless ``stdout``) to ``log``.

    On leaving ``stack`` it gets ``sig``, ``grace`` seconds to exit, then its group is
    killed.
    """
    err = stack.enter_context(log.open("wb"))
    out = stack.enter_context(stdout.open("wb")) if stdout is not None else err
    process = subprocess.Popen(
        cmd,
        cwd=Path(__file__).resolve().parent,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        start_new_session=True,
    )
    stack.callback(stop_group, process, sig, grace)
    return process


def resp(port: int, *args: str) -> bytes:
    """One Redis command over a fresh connection; the raw first reply line."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args
    )
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(payload)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.strip()


def resp_int(port: int, *args: str) -> int:
    """A Redis command answering an integer (``LLEN``, ``SCARD``)."""
    reply = resp(port, *args)
    if not reply.startswith(b":"):
        raise RuntimeError(f"redis answered {reply!r} to {args}")
    return int(reply[1:])


def wait_for(what: str, check: Any, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``check()`` until true (60 s at most); fail with ``log`` if ``process`` exits."""
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"{what}: exited with {process.returncode}:\n"
                + log.read_text(errors="replace")[-3000:]
            )
        with contextlib.suppress(OSError, RuntimeError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{what}: not ready within 60 s:\n" + log.read_text(errors="replace")[-3000:]
            )
        time.sleep(0.05)


@contextlib.contextmanager
def redis_server(stack: contextlib.ExitStack, folder: Path) -> Iterator[int]:
    """``redis-server`` on a free loopback port, its files in ``folder``, no persistence."""
    port = free_port()
    log = folder / "redis.log"
    process = spawn(
        stack,
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
        log,
    )
    wait_for("redis-server", lambda: resp(port, "PING") == b"+PONG", process, log)
    yield port
