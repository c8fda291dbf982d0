"""Memory of one ``jobyard worker`` holding 500 concurrent ``sleep 60`` jobs.

A ``jobyard server`` (no local slots; embedded SQLite by default, or a fresh database of a
throwaway PostgreSQL cluster with ``--engine postgresql``) and one ``jobyard worker
--slots 500`` (default isolation: as root one uid per job) on loopback. The worker's RSS
is read from ``/proc``:

* **idle**: registered, after a warm-up of a few trivial jobs, nothing running;
* **busy**: ``--jobs`` ad-hoc ``["sleep", "60"]`` jobs submitted at once; once the server
  counts all of them RUNNING (and the worker's process tree holds as many ``sleep``
  programs), ``--samples`` readings a second apart; the server's RUNNING count is
  checked again after the last reading, so every reading saw every job running.

"The worker's RSS" is the worker process plus any process of its own below it (a helper
it forked), never the jobs' programs: a descendant whose executable is the jobs'
program (``sleep``) is counted apart, as are its own children. RSS counts shared pages
(the Python runtime, libraries) once per process; PSS (``/proc/PID/smaps_rollup``) is
printed beside it. Per job: (busy RSS - idle RSS) / jobs. Target: busy RSS < 200 MB.

The jobs are aborted at the end (``POST /api/v1/jobs/{id}/abort``), then the worker and
server stop.

    .venv/bin/python benchmarks/bench_worker_memory.py [--jobs 500] [--samples 10] \\
        [--engine sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from _common import Server, jobyard_up, machine, run_loop, table, verdict
from _remote import remote_workers

TARGET_MB = 200.0
MB = 1024 * 1024


@dataclass
class Reading:
    """One look at the worker's process tree."""

    rss: int  # bytes: the worker and its own helpers
    pss: int  # bytes, same processes
    helpers: int  # processes of the worker's own below it
    jobs: int  # job programs found below it
    jobs_rss: int  # bytes: those programs (not counted above)


def _children_map() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            found.setdefault(ppid, []).append(int(entry.name))
    return found


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _pss_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def _is_job(pid: int, program: str) -> bool:
    try:
        return os.path.realpath(f"/proc/{pid}/exe") == program
    except OSError:
        return False


def read_tree(root: int, program: str) -> Reading:
    """The worker ``root`` and its own helpers, apart from the job programs (``program``)."""
    children = _children_map()
    rss = pss = helpers = jobs = jobs_rss = 0
    todo = [(root, False)]
    while todo:
        pid, in_job = todo.pop()
        with contextlib.suppress(OSError):
            in_job = in_job or (pid != root and _is_job(pid, program))
            kb = _status_kb(pid, "VmRSS")
            if in_job:
                jobs += 1
                jobs_rss += kb * 1024
            else:
                rss += kb * 1024
                pss += _pss_kb(pid) * 1024
                helpers += pid != root
        todo.extend((child, in_job) for child in children.get(pid, []))
    return Reading(rss=rss, pss=pss, helpers=helpers, jobs=jobs, jobs_rss=jobs_rss)


def _running(client: httpx.Client, ids: set[int]) -> int:
    """How many of ``ids`` the server lists RUNNING."""
    seen = 0
    params: dict[str, Any] = {"status": "RUNNING", "limit": 500}
    while True:
        page = client.get("/api/v1/jobs", params=params).json()
        seen += sum(1 for job in page["items"] if job["id"] in ids)
        if not page["next_cursor"]:
            return seen
        params["cursor"] = page["next_cursor"]


async def _abort_all(server: Server, ids: list[int]) -> None:
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(
        base_url=server.url, headers=server.headers, limits=limits, timeout=120
    ) as client:
        await asyncio.gather(*(client.post(f"/api/v1/jobs/{i}/abort") for i in ids))


def measure(server: Server, worker_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """Idle readings, the jobs, busy readings; the figures."""
    program = shutil.which("sleep") or "/bin/sleep"
    program = os.path.realpath(program)
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as client:
        warm = [
            int(client.post("/api/v1/jobs", json={"command": ["true"]}).json()["id"])
            for _ in range(10)
        ]
        deadline = time.monotonic() + 60
        while any(
            client.get(f"/api/v1/jobs/{i}").json()["status"] not in ("FINISHED", "FAILED")
            for i in warm
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("warm-up jobs did not end")
            time.sleep(0.1)
        time.sleep(1.0)
        idle = [read_tree(worker_pid, program) for _ in range(3)]
        t0 = time.monotonic()
        ids = [
            int(client.post("/api/v1/jobs", json={"command": ["sleep", "60"]}).json()["id"])
            for _ in range(args.jobs)
        ]
        submitted = time.monotonic() - t0
        wanted = set(ids)
        deadline = time.monotonic() + 40
        while (n := _running(client, wanted)) < args.jobs:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {n} of {args.jobs} jobs RUNNING after 40 s")
            time.sleep(0.2)
        all_running = time.monotonic() - t0
        busy = []
        for _ in range(args.samples):
            busy.append(read_tree(worker_pid, program))
            time.sleep(1.0)
        still = _running(client, wanted)
    try:
        run_loop(_abort_all(server, ids))
    except httpx.HTTPError as exc:  # the jobs end by themselves within 60 s anyway
        print(f"aborting the jobs: {exc}", file=sys.stderr)
    return {
        "program": program,
        "idle": idle,
        "busy": busy,
        "submitted_s": submitted,
        "all_running_s": all_running,
        "running_after": still,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500, help="concurrent sleep jobs (= slots)")
    parser.add_argument("--samples", type=int, default=10, help="readings, a second apart")
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    print(f"bench_worker_memory: {args.jobs} x sleep 60 on one worker; {machine()}")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        if args.engine == "postgresql":
            from tests.support.pg import start_cluster

            pg = start_cluster()
            stack.callback(pg.stop)
            env["JOBYARD_DATABASE_URL"] = pg.url(pg.create_database())
        server = stack.enter_context(jobyard_up(env=env, command="server"))
        (worker,) = stack.enter_context(remote_workers(server, [args.jobs]))
        found = measure(server, worker.pid, args)
    idle: list[Reading] = found["idle"]
    busy: list[Reading] = found["busy"]
    idle_rss = statistics.median(r.rss for r in idle)
    peak = max(r.rss for r in busy)
    median = statistics.median(r.rss for r in busy)
    rows = [
        ["idle (warmed, nothing running)", f"{idle_rss / MB:.1f}",
         f"{statistics.median(r.pss for r in idle) / MB:.1f}",
         max(r.helpers for r in idle), max(r.jobs for r in idle), "-"],
        [f"{args.jobs} running, median of {len(busy)}", f"{median / MB:.1f}",
         f"{statistics.median(r.pss for r in busy) / MB:.1f}",
         max(r.helpers for r in busy), min(r.jobs for r in busy),
         f"{statistics.median(r.jobs_rss for r in busy) / MB:.1f}"],
        [f"{args.jobs} running, highest", f"{peak / MB:.1f}",
         f"{max(r.pss for r in busy) / MB:.1f}", max(r.helpers for r in busy),
         max(r.jobs for r in busy), f"{max(r.jobs_rss for r in busy) / MB:.1f}"],
    ]  # fmt: skip
    print(
        table(
            f"One jobyard worker --slots {args.jobs}, `jobyard server` on {args.engine}",
            [
                "state",
                "worker RSS (MB)",
                "worker PSS (MB)",
                "worker's own helpers",
                "job programs found",
                "job programs' RSS (MB)",
            ],
            rows,
        )
    )
    print(
        f"\n{args.jobs} submitted in {found['submitted_s']:.1f} s, all RUNNING (server's "
        f"count) {found['all_running_s']:.1f} s after the first submit; RUNNING after the "
        f"last reading: {found['running_after']}; job program: {found['program']}"
    )
    per_job_kb = (peak - idle_rss) / args.jobs / 1024
    print(f"per job: (highest - idle) / {args.jobs} = {per_job_kb:.0f} KB")
    ok = found["running_after"] == args.jobs and min(r.jobs for r in busy) == args.jobs
    print(
        f"worker RSS with {args.jobs} running: {peak / MB:.1f} MB (highest reading); target "
        f"< {TARGET_MB:g} MB: {verdict(peak / MB < TARGET_MB)}"
        + ("" if ok else " (NOT every job was running at every reading)")
    )
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
