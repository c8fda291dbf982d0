"""Where a job's CPU goes: per-process CPU per job under a burst, optionally py-spy profiles.

Starts ``jobyard up`` (default settings, SQLite, default sandbox), warms it, then submits
``--jobs`` trivial ``["true"]`` jobs through ``POST /api/v1/jobs`` (or a jobconfig's
``/run`` with ``--jobconfig``) from ``--concurrency`` keep-alive connections and waits
until all ended. Prints CPU milliseconds per job of the API process, each worker process
(own CPU, without the job programs they reaped), the job programs, and the load generator.

With ``--py-spy DIR`` every jobyard process is sampled by ``py-spy record`` (if installed
in the venv) during the burst; the flame graphs (SVG) and raw collapsed stacks land in DIR.

    .venv/bin/python benchmarks/profile_job_path.py [--jobs 3000] [--py-spy /tmp/prof]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from _common import UNFINISHED, LeanClient, Server, jobyard_up, machine, process_cpu, run_loop


def _children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (the worker processes of a server)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


async def _wait_ended(server: Server) -> None:
    params = [("status", s) for s in UNFINISHED] + [("limit", "1")]
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers) as client:
        while True:
            if not (await client.get("/api/v1/jobs", params=params)).json()["items"]:
                return
            await asyncio.sleep(0.05)


async def _submit(server: Server, path: str, body: object, count: int, conc: int) -> float:
    remaining = iter(range(count))

    async def one(lean: LeanClient) -> None:
        for _ in remaining:
            status, answer = await lean.request("POST", path, body)
            if status != 201:
                raise RuntimeError(f"POST {path}: {status} {answer}")

    async with LeanClient(server.url, server.token, conc) as lean:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(lean) for _ in range(conc)))
        await _wait_ended(server)
        return time.perf_counter() - t0


async def _path(server: Server, jobconfig: bool) -> tuple[str, object]:
    if not jobconfig:
        return "/api/v1/jobs", {"command": ["true"]}
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers) as client:
        r = await client.post(
            "/api/v1/jobconfigs", json={"name": "prof", "command": ["true"], "max_concurrent": 0}
        )
        r.raise_for_status()
        return f"/api/v1/jobconfigs/{r.json()['id']}/run", {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--jobconfig", action="store_true", help="submit via a jobconfig")
    parser.add_argument("--py-spy", type=Path, help="folder for py-spy profiles")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args()
    print(machine())
    with jobyard_up() as server:
        path, body = run_loop(_path(server, args.jobconfig))
        run_loop(_submit(server, path, body, 50, 8))  # warm-up
        pids = {"api": server.process.pid}
        for n, pid in enumerate(_children(server.process.pid)):
            pids[f"worker {n}"] = pid
        spies = []
        spy = Path(sys.executable).with_name("py-spy")
        if args.py_spy:
            args.py_spy.mkdir(parents=True, exist_ok=True)
            if not spy.exists():
                sys.exit("py-spy is not installed in this venv: .venv/bin/pip install py-spy")
            for name, pid in pids.items():
                stem = args.py_spy / name.replace(" ", "-")
                for fmt, suffix in (("raw", ".txt"), ("flamegraph", ".svg")):
                    spies.append(
                        subprocess.Popen(
                            [
                                str(spy),
                                "record",
                                "-p",
                                str(pid),
                                "-r",
                                str(args.rate),
                                "-f",
                                fmt,
                                "--gil",
                                "-o",
                                f"{stem}{suffix}",
                                "--nonblocking",
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    )
            time.sleep(1.0)
        before = {name: process_cpu(pid) for name, pid in pids.items()}
        mine0 = time.process_time()
        elapsed = run_loop(_submit(server, path, body, args.jobs, args.concurrency))
        mine = time.process_time() - mine0
        after = {name: process_cpu(pid) for name, pid in pids.items()}
        for proc in spies:
            proc.send_signal(signal.SIGINT)
        for proc in spies:
            proc.wait(timeout=60)
    per_job = 1000 / args.jobs
    print(
        f"\n{args.jobs} jobs in {elapsed:.2f} s = {args.jobs / elapsed:.0f} jobs/s "
        f"(submit + run, {'jobconfig' if args.jobconfig else 'ad-hoc'})\n"
    )
    print("| process | own CPU ms/job | reaped children CPU ms/job |")
    print("|---|---|---|")
    total = 0.0
    for name in pids:
        own = (after[name][0] - before[name][0]) * per_job
        kids = (after[name][1] - before[name][1]) * per_job
        total += own + kids
        print(f"| {name} | {own:.2f} | {kids:.2f} |")
    print(f"| load generator | {mine * per_job:.2f} | |")
    print(f"| **all** | **{total + mine * per_job:.2f}** | |")
    if args.py_spy:
        print(f"\npy-spy profiles in {args.py_spy}")


if __name__ == "__main__":
    main()
