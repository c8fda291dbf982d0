"""``jobyard worker`` processes for the benchmarks: tokens, start, wait registered, stop.

Each worker gets its own worker token (made through the API as the server's admin), its
own home under :data:`_common.BENCH_HOMES` (not /tmp: see there) and its own log; it runs
with jobyard's Python and no ``JOBYARD_*`` variable of the caller's environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import BENCH_HOMES, Server


@dataclass
class Worker:
    """One started ``jobyard worker``."""

    process: subprocess.Popen[bytes]
    home: Path
    slots: int

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.process.pid

    @property
    def log(self) -> Path:
        """Its stdout and stderr."""
        return self.home / "worker.log"


def split_slots(total: int, processes: int) -> list[int]:
    """``total`` slots over ``processes`` workers, as evenly as possible (each >= 1)."""
    if processes < 1 or total < processes:
        raise ValueError(f"cannot split {total} slot(s) over {processes} worker process(es)")
    base, extra = divmod(total, processes)
    return [base + (1 if i < extra else 0) for i in range(processes)]


@contextlib.contextmanager
def remote_workers(
    server: Server, slots: Sequence[int], *, pool: str = "default"
) -> Iterator[list[Worker]]:
    """One ``jobyard worker`` per entry of ``slots``, all registered before the block runs.

    Stopped at the end with SIGTERM (a drain: they finish what runs and exit), then
    SIGKILL after 30 s.
    """
    with contextlib.ExitStack() as stack:
        BENCH_HOMES.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBYARD_")}
        workers: list[Worker] = []
        for n, count in enumerate(slots):
            r = httpx.post(
                f"{server.url}/api/v1/worker-tokens",
                json={"name": f"bench-{n}-{os.getpid()}-{time.monotonic_ns()}", "pool": pool},
                headers=server.headers,
                timeout=30,
            )
            r.raise_for_status()
            home = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="jyw-", dir=BENCH_HOMES))
            )
            token_file = home / "token"
            token_file.write_text(r.json()["token"])
            os.chmod(token_file, 0o600)
            log = stack.enter_context((home / "worker.log").open("wb"))
            process = subprocess.Popen(
                [sys.executable, "-m", "jobyard.cli", "worker", "--server", server.url,
                 "--pool", pool, "--token-file", str(token_file), "--slots", str(count),
                 "--home", str(home)],
                env=env, cwd=home, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            stack.callback(_stop, process)
            workers.append(Worker(process, home, count))
        _wait_registered(server, workers)
        yield workers


def _wait_registered(server: Server, workers: list[Worker]) -> None:
    deadline = time.monotonic() + 60
    wanted = {w.pid for w in workers}
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as client:
        while True:
            for w in workers:
                if w.process.poll() is not None:
                    raise RuntimeError(
                        f"jobyard worker exited with {w.process.returncode}:\n"
                        + w.log.read_text(errors="replace")[-3000:]
                    )
            items = client.get("/api/v1/workers").json()["items"]
            if wanted <= {i["pid"] for i in items if i["kind"] == "remote"}:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "jobyard worker(s) not registered within 60 s:\n"
                    + "\n".join(w.log.read_text(errors="replace")[-1500:] for w in workers)
                )
            time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
