"""Where a job's CPU goes: per-process CPU per job under a burst, optionally py-spy profiles.

Starts ``jobyard up`` (default settings, SQLite, default sandbox), warms it, then submits
``--jobs`` trivial ``["true"]`` jobs through ``POST /api/v1/jobs`` (or a jobconfig's
``/run`` with ``--jobconfig``) from ``--concurrency`` keep-alive connections and waits
until all ended. Prints CPU milliseconds per job of the API process, each worker process
(own CPU, without the job programs they reaped), the job programs, and the load generator.

With ``--py-spy DIR`` every jobyard process is sampled by ``py-spy record`` (if installed
in the venv) during the burst; the flame graphs (SVG) and raw collapsed stacks land in DIR.

With ``--remote SLOTS`` the jobs take the remote path instead: ``jobyard server`` (no
local slots) and one ``jobyard worker --slots SLOTS`` on this host (``--remote-processes
N``: N workers sharing the slots), reported as "api" and "remote worker N"; use it with
``--postgres`` for the deployment the remote workers are made for.

With ``--no-worker`` only the submits are measured: ``jobyard server`` with no slots
anywhere, so every job stays QUEUED; the burst ends with the last submit's answer. It
gives the API process's (and PostgreSQL's) CPU per submit without the claims and reports.

    .venv/bin/python benchmarks/profile_job_path.py [--jobs 3000] [--py-spy /tmp/prof] \
        [--postgres] [--remote 8 [--remote-processes 1] | --no-worker]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from _common import UNFINISHED, LeanClient, Server, jobyard_up, machine, process_cpu, run_loop
from _remote import remote_workers, split_slots


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


async def _submit(
    server: Server, path: str, body: object, count: int, conc: int, *, wait: bool = True
) -> float:
    remaining = iter(range(count))

    async def one(lean: LeanClient) -> None:
        for _ in remaining:
            status, answer = await lean.request("POST", path, body)
            if status != 201:
                raise RuntimeError(f"POST {path}: {status} {answer}")

    async with LeanClient(server.url, server.token, conc) as lean:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(lean) for _ in range(conc)))
        if wait:
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
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="run on a fresh database of a throwaway PostgreSQL cluster (server processes "
        "of PostgreSQL reported as 'postgres')",
    )
    parser.add_argument(
        "--remote",
        type=int,
        metavar="SLOTS",
        help="run the jobs on jobyard worker processes (this many slots) of a jobyard server",
    )
    parser.add_argument("--remote-processes", type=int, default=1, help="with --remote")
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="submits only: jobyard server with no slots anywhere (jobs stay QUEUED)",
    )
    parser.add_argument(
        "--s3",
        action="store_true",
        help="blobs in a bucket of a local S3 server (moto, from the tests' support)",
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="a server setting"
    )
    args = parser.parse_args()
    print(machine())
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        pg_pid: int | None = None
        if args.postgres:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.support.pg import start_cluster

            pg = start_cluster()
            stack.callback(pg.stop)
            env["JOBYARD_DATABASE_URL"] = pg.url(pg.create_database())
            pg_pid = _postmaster_pid(pg.datadir)
        if args.s3:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.support.s3 import AWS_ENV, start_s3

            s3 = start_s3()
            stack.callback(s3.stop)
            env.update(AWS_ENV)
            env["JOBYARD_BLOBS_URL"] = f"s3://{s3.new_bucket()}/bench"
            env["JOBYARD_S3_ENDPOINT_URL"] = s3.endpoint
        env.update(dict(item.split("=", 1) for item in args.env))
        remote: dict[str, int] = {}
        if args.no_worker:
            server = stack.enter_context(jobyard_up(env=env, command="server"))
        elif args.remote:
            server = stack.enter_context(jobyard_up(env=env, command="server"))
            workers = stack.enter_context(
                remote_workers(server, split_slots(args.remote, args.remote_processes))
            )
            remote = {f"remote worker {n}": w.pid for n, w in enumerate(workers)}
        else:
            server = stack.enter_context(jobyard_up(env=env))
        _profile(args, server, pg_pid, remote)


def _http_calls(server: Server) -> dict[str, tuple[float, float]]:
    """``{"METHOD route status": (count, seconds)}`` of the server's request histogram."""
    found: dict[str, list[float]] = {}
    text = httpx.get(f"{server.url}/metrics", headers=server.headers, timeout=30).text
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        for suffix, at in (("_count{", 0), ("_sum{", 1)):
            if name.startswith("jobyard_http_request_duration_seconds" + suffix):
                labels = dict(
                    part.split("=", 1) for part in name.split("{", 1)[1].rstrip("}").split(",")
                )
                key = " ".join(labels[k].strip('"') for k in ("method", "route", "status"))
                found.setdefault(key, [0.0, 0.0])[at] = float(value)
    return {k: (v[0], v[1]) for k, v in found.items()}


def _postmaster_pid(data_dir: Path) -> int:
    """The PostgreSQL server's pid (first line of its pid file)."""
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def _tree_cpu(pid: int) -> tuple[float, float]:
    """``(own, 0)`` CPU seconds of ``pid``, its live children (PostgreSQL's backends) and
    the children it reaped, as one figure."""
    own, reaped = process_cpu(pid)
    total = own + reaped
    for child in _children(pid):
        with contextlib.suppress(OSError):
            total += sum(process_cpu(child))
    return total, 0.0


def _profile(
    args: argparse.Namespace, server: Server, pg_pid: int | None, remote: dict[str, int]
) -> None:
    """Submit the burst and print each process's CPU per job (``remote``: the pids of
    ``jobyard worker`` processes running the jobs)."""
    path, body = run_loop(_path(server, args.jobconfig))
    wait = not args.no_worker
    run_loop(_submit(server, path, body, 50, 8, wait=wait))  # warm-up
    _http_calls(server)  # FastAPI builds a route's state at its first call: not in the burst
    pids = {"api": server.process.pid}
    for n, pid in enumerate(_children(server.process.pid)):
        pids[f"worker {n}"] = pid
    pids.update(remote)
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
    if pg_pid is not None:
        before["postgres"] = _tree_cpu(pg_pid)
    calls0 = _http_calls(server)
    mine0 = time.process_time()
    elapsed = run_loop(_submit(server, path, body, args.jobs, args.concurrency, wait=wait))
    mine = time.process_time() - mine0
    calls1 = _http_calls(server)
    after = {name: process_cpu(pid) for name, pid in pids.items()}
    if pg_pid is not None:
        after["postgres"] = _tree_cpu(pg_pid)
    for proc in spies:
        proc.send_signal(signal.SIGINT)
    for proc in spies:
        proc.wait(timeout=60)
    per_job = 1000 / args.jobs
    print(
        f"\n{args.jobs} jobs in {elapsed:.2f} s = {args.jobs / elapsed:.0f} jobs/s "
        f"({'submit only' if args.no_worker else 'submit + run'}, "
        f"{'jobconfig' if args.jobconfig else 'ad-hoc'})\n"
    )
    print("| process | own CPU ms/job | reaped children CPU ms/job |")
    print("|---|---|---|")
    total = 0.0
    for name in after:
        own = (after[name][0] - before[name][0]) * per_job
        kids = (after[name][1] - before[name][1]) * per_job
        total += own + kids
        print(f"| {name} | {own:.2f} | {kids:.2f} |")
    print(f"| load generator | {mine * per_job:.2f} | |")
    print(f"| **all** | **{total + mine * per_job:.2f}** | |")
    print("\n| HTTP calls in the burst (server's /metrics) | calls per job | mean ms |")
    print("|---|---|---|")
    for key, (count, seconds) in sorted(calls1.items()):
        n = count - calls0.get(key, (0.0, 0.0))[0]
        if n:
            spent = seconds - calls0.get(key, (0.0, 0.0))[1]
            print(f"| {key} | {n / args.jobs:.3f} | {spent / n * 1000:.2f} |")
    if args.py_spy:
        print(f"\npy-spy profiles in {args.py_spy}")


if __name__ == "__main__":
    main()
