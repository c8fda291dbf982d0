"""Shared plumbing of the benchmark scripts: a ``jobyard up`` subprocess, stats, tables.

Benchmarks print figures; they are not tests. Each script starts what it needs on a
temporary home and a free port, and cleans up after itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[1]
#: Where benchmark servers keep their homes: under the checkout's ``var/`` (gitignored),
#: like the default home of ``make run``. Not the system's temporary folder: on the VM
#: these figures come from, creating a file under /tmp costs ~230 us of kernel CPU
#: against ~6 us in the checkout, and a job creates its log file and folders.
BENCH_HOMES = Path(os.environ.get("JOBYARD_BENCH_HOMES", ROOT / "var" / "bench"))
if str(ROOT) not in sys.path:  # so that ``tests.support`` (the PostgreSQL helper) imports
    sys.path.insert(0, str(ROOT))

T = TypeVar("T")

TERMINAL = frozenset({"FINISHED", "ERROR", "FAILED", "CANCELLED"})
UNFINISHED = ("WAITING", "SEQUENCED", "QUEUED", "INITIALIZING", "RUNNING")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running ``jobyard up``."""

    url: str
    token: str
    home: Path
    process: subprocess.Popen[bytes]

    @property
    def headers(self) -> dict[str, str]:
        """The admin bearer header."""
        return {"Authorization": f"Bearer {self.token}"}


@contextlib.contextmanager
def jobyard_up(
    *,
    workers: int | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    command: str = "up",
) -> Iterator[Server]:
    """Run ``jobyard up`` on a temporary home (or ``home``) and a free port.

    ``workers=None`` keeps the default slot count (2 x cores, 2..8). No ``JOBYARD_*``
    variable of the caller's environment leaks in. ``command="server"`` runs ``jobyard
    server`` instead (no local slots: jobs run on ``jobyard worker`` processes only).
    """
    with contextlib.ExitStack() as stack:
        if home is None:
            BENCH_HOMES.mkdir(parents=True, exist_ok=True)
            home = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="jy-", dir=BENCH_HOMES))
            )
        port = free_port()
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("JOBYARD_")}
        child_env.update(
            {"JOBYARD_HOME": str(home), "JOBYARD_HOST": "127.0.0.1", "JOBYARD_PORT": str(port)}
        )
        if workers is not None:
            child_env["JOBYARD_WORKERS"] = str(workers)
        child_env.update(env or {})
        log = (home / "server.log").open("wb")
        stack.callback(log.close)
        process = subprocess.Popen(
            [sys.executable, "-m", "jobyard.cli", command],
            env=child_env,
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stack.callback(_stop, process)
        url = f"http://127.0.0.1:{port}"
        token = _wait_healthy(url, home, process)
        yield Server(url=url, token=token, home=home, process=process)


def _wait_healthy(url: str, home: Path, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    token_file = home / "admin.token"
    with httpx.Client(timeout=2) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"jobyard up exited with {process.returncode}:\n"
                    + (home / "server.log").read_text(errors="replace")[-3000:]
                )
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"{url}/healthz").status_code == 200 and token_file.exists():
                    return token_file.read_text().strip()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"jobyard up did not answer {url}/healthz within 60 s:\n"
                    + (home / "server.log").read_text(errors="replace")[-3000:]
                )
            time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def process_cpu(pid: int) -> tuple[float, float]:
    """``(own, children)`` CPU seconds of a process (children: reaped ones, e.g. jobs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime) / tick, (cutime + cstime) / tick


def machine_busy() -> tuple[int, int]:
    """``(busy, total)`` jiffies of the whole machine so far (from /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


class LeanClient:
    """A minimal keep-alive HTTP/1.1 JSON client for load generation.

    httpx costs ~4 ms of CPU per request on a small VM, which on two cores makes the
    load generator the bottleneck; this costs a few tenths of a millisecond. It speaks
    just what jobyard answers to JSON calls (``Content-Length`` bodies).
    """

    def __init__(self, url: str, token: str, connections: int) -> None:
        parsed = httpx.URL(url)
        self._host, self._port = parsed.host, parsed.port or 80
        self._head = (
            f"Host: {self._host}:{self._port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
        ).encode()
        self._size = connections
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None = None
        self._all: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> LeanClient:
        self._idle = asyncio.Queue()
        for _ in range(self._size):
            reader, writer = await asyncio.open_connection(self._host, self._port)
            self._all.append(writer)
            self._idle.put_nowait((reader, writer))
        return self

    async def __aexit__(self, *_exc: object) -> None:
        for writer in self._all:
            writer.close()
        for writer in self._all:
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def request(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        """``(status, decoded JSON body)``."""
        assert self._idle is not None, "use as an async context manager"
        payload = b"" if body is None else json.dumps(body).encode()
        reader, writer = await self._idle.get()
        try:
            writer.write(
                f"{method} {path} HTTP/1.1\r\n".encode()
                + self._head
                + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length = next(
                int(line.split(":", 1)[1])
                for line in lines[1:]
                if line.lower().startswith("content-length:")
            )
            data = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        self._idle.put_nowait((reader, writer))
        return status, json.loads(data) if data else None


# -- figures ---------------------------------------------------------------------------


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed (a cheaper load generator)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(values_s: Sequence[float], ps: Sequence[float] = (50, 90, 99)) -> dict[str, str]:
    """``{"p50": "1.23", ...}`` in milliseconds, plus mean and max."""
    out = {f"p{p:g}": f"{percentile(values_s, p) * 1000:.2f}" for p in ps}
    out["mean"] = f"{statistics.fmean(values_s) * 1000:.2f}" if values_s else "nan"
    out["max"] = f"{max(values_s) * 1000:.2f}" if values_s else "nan"
    return out


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table under a title (pastes straight into docs/benchmarks.md)."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([f"\n### {title}\n", line(cells[0]), sep, *(line(r) for r in cells[1:])])


def machine() -> str:
    """One line about where the figures come from."""
    model = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                model = text.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} CPU(s), {model}; Python {platform.python_version()}; "
        f"{platform.system()} {platform.release()}"
    )


def verdict(ok: bool) -> str:
    """``met`` / ``MISSED``."""
    return "met" if ok else "MISSED"
