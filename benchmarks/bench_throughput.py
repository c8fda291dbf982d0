"""Burst throughput of ``jobyard up`` on embedded SQLite with the default slots.

A burst of ``--jobs`` trivial jobs (``["true"]``) is submitted through the API by
``--concurrency`` concurrent requests (httpx AsyncClient), then the script waits until
none is left unfinished. Three runs:

* ad-hoc jobs, ``POST /api/v1/jobs`` (no sequencing limit), default local slots;
* a jobconfig with ``max_concurrent = 0``, ``POST /api/v1/jobconfigs/{id}/run``;
* ad-hoc jobs on a server with **no workers**: the API's submit capacity alone (the
  jobs stay queued).

Figures: submit rate (requests/s while submitting), end-to-end jobs/s from the first
``created_at`` to the last ``ended_at`` of the burst (server clock), and where the CPU
went: the server process itself (one Python process: its Python work is bound to one
core by the GIL), the job programs it ran, the load generator (this script), and how
busy the whole machine was. Target: >= 300 jobs/s end to end.

``--isolation auto,none`` measures the bursts with workers once per job sandbox mode
(``JOBYARD_ISOLATION``; ``auto`` is the default: one uid per job as root), one server
per mode, alternating ``--rounds`` times so that both see the same machine.

    .venv/bin/python benchmarks/bench_throughput.py [--jobs 1000] [--concurrency 32] \
        [--isolation auto,none] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from _common import (
    UNFINISHED,
    LeanClient,
    Server,
    jobyard_up,
    machine,
    machine_busy,
    process_cpu,
    run_loop,
    table,
    verdict,
)

TARGET_JOBS_PER_S = 300.0
#: Load generator for the submits: "lean" (a minimal HTTP/1.1 client) or "httpx".
CLIENT = "lean"


@dataclass
class Burst:
    """What one burst measured."""

    label: str
    jobs: int
    submit_s: float
    span_s: float | None  # first created -> last ended (None: jobs were not run)
    server_cpu_s: float
    children_cpu_s: float
    client_cpu_s: float
    machine_busy: float
    statuses: str

    def row(self) -> list[object]:
        """A table row."""
        per_job = 1000 / self.jobs
        return [
            self.label,
            self.jobs,
            f"{self.jobs / self.submit_s:.0f}",
            "-" if self.span_s is None else f"{self.span_s:.2f}",
            "-" if self.span_s is None else f"{self.jobs / self.span_s:.0f}",
            f"{self.server_cpu_s * per_job:.2f}",
            f"{self.children_cpu_s * per_job:.2f}",
            f"{self.client_cpu_s * per_job:.2f}",
            f"{self.machine_busy * 100:.0f} %",
            self.statuses,
        ]


HEADER = [
    "run",
    "jobs",
    "submit req/s",
    "first created -> last ended (s)",
    "end-to-end jobs/s",
    "server CPU ms/job",
    "job programs CPU ms/job",
    "load generator CPU ms/job",
    "machine busy",
    "end statuses",
]


async def _submit_all(
    server: Server,
    client: httpx.AsyncClient,
    path: str,
    body: dict[str, Any],
    count: int,
    concurrency: int,
) -> tuple[list[int], float]:
    ids: list[int] = []
    remaining = iter(range(count))

    async def with_httpx() -> None:
        for _ in remaining:
            r = await client.post(path, json=body)
            r.raise_for_status()
            ids.append(int(r.json()["id"]))

    async def with_lean(lean: LeanClient) -> None:
        for _ in remaining:
            status, answer = await lean.request("POST", path, body)
            if status != 201:
                raise RuntimeError(f"POST {path}: {status} {answer}")
            ids.append(int(answer["id"]))

    t0 = time.perf_counter()
    if CLIENT == "httpx":
        await asyncio.gather(*(with_httpx() for _ in range(concurrency)))
    else:
        async with LeanClient(server.url, server.token, concurrency) as lean:
            t0 = time.perf_counter()
            await asyncio.gather(*(with_lean(lean) for _ in range(concurrency)))
    return ids, time.perf_counter() - t0


async def _wait_all_ended(client: httpx.AsyncClient, timeout: float) -> None:
    params = [("status", s) for s in UNFINISHED] + [("limit", "1")]
    deadline = time.monotonic() + timeout
    while True:
        r = await client.get("/api/v1/jobs", params=params)
        r.raise_for_status()
        if not r.json()["items"]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs still unfinished after {timeout} s")
        await asyncio.sleep(0.05)


async def _records(client: httpx.AsyncClient, ids: list[int]) -> list[dict[str, Any]]:
    wanted, lowest = set(ids), min(ids)
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        page = (await client.get("/api/v1/jobs", params=params)).json()
        found.extend(job for job in page["items"] if job["id"] in wanted)
        if not page["next_cursor"] or (page["items"] and page["items"][-1]["id"] <= lowest):
            return found
        params["cursor"] = page["next_cursor"]


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


async def burst(
    server: Server,
    label: str,
    path: str,
    body: dict[str, Any],
    count: int,
    concurrency: int,
    *,
    run_jobs: bool = True,
) -> Burst:
    """Submit ``count`` jobs, wait for them to end (if ``run_jobs``), measure."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=server.url, headers=server.headers, limits=limits, timeout=120
    ) as client:
        own0, children0 = process_cpu(server.process.pid)
        busy0, mine0 = machine_busy(), time.process_time()
        ids, submit_s = await _submit_all(server, client, path, body, count, concurrency)
        if run_jobs:
            await _wait_all_ended(client, timeout=600)
        own1, children1 = process_cpu(server.process.pid)
        busy1, mine1 = machine_busy(), time.process_time()
        jobs = await _records(client, ids)
    if len(jobs) != count:
        raise RuntimeError(f"found {len(jobs)} of {count} jobs")
    span = None
    if run_jobs:
        span = max(_ts(j["ended_at"]) for j in jobs) - min(_ts(j["created_at"]) for j in jobs)
    statuses = Counter(job["status"] for job in jobs)
    return Burst(
        label=label,
        jobs=count,
        submit_s=submit_s,
        span_s=span,
        server_cpu_s=own1 - own0,
        children_cpu_s=children1 - children0,
        client_cpu_s=mine1 - mine0,
        machine_busy=(busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
        statuses=" ".join(f"{k}={v}" for k, v in sorted(statuses.items())),
    )


async def _warm(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers) as client:
        for _ in range(20):
            (await client.post("/api/v1/jobs", json={"command": ["true"]})).raise_for_status()
        await _wait_all_ended(client, timeout=60)


async def run(
    count: int, concurrency: int, modes: list[str], rounds: int
) -> tuple[list[Burst], int]:
    """The bursts per isolation mode, then without workers; (results, default slots)."""
    results = []
    slots = -1
    for round_no in range(1, rounds + 1):
        for mode in modes:
            tag = f" [isolation {mode}{f', round {round_no}' if rounds > 1 else ''}]"
            with jobyard_up(env={"JOBYARD_ISOLATION": mode}) as server:
                slots = _slots(server)
                await _warm(server)
                adhoc = {"command": ["true"]}
                results.append(
                    await burst(
                        server,
                        "ad-hoc POST /jobs" + tag,
                        "/api/v1/jobs",
                        adhoc,
                        count,
                        concurrency,
                    )
                )
                async with httpx.AsyncClient(base_url=server.url, headers=server.headers) as client:
                    jc = await client.post(
                        "/api/v1/jobconfigs",
                        json={"name": "burst", "command": ["true"], "max_concurrent": 0},
                    )
                    jc.raise_for_status()
                run_path = f"/api/v1/jobconfigs/{jc.json()['id']}/run"
                results.append(
                    await burst(server, "jobconfig .../run" + tag, run_path, {}, count, concurrency)
                )
    with jobyard_up(workers=0) as server:
        results.append(
            await burst(
                server,
                "ad-hoc POST /jobs, no workers",
                "/api/v1/jobs",
                {"command": ["true"]},
                count,
                concurrency,
                run_jobs=False,
            )
        )
    return results, slots


def _slots(server: Server) -> int:
    """The slot count from the startup banner (printed just after /healthz answers)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in (server.home / "server.log").read_text(errors="replace").splitlines():
            if "local slot" in line:
                return int(line.split("workers:")[1].split()[0])
        time.sleep(0.05)
    return -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--client",
        choices=["lean", "httpx"],
        default="lean",
        help="load generator for the submits (httpx costs ~10x more CPU per request)",
    )
    parser.add_argument(
        "--isolation", default="auto", help="job sandbox modes to measure, e.g. auto,none"
    )
    parser.add_argument("--rounds", type=int, default=1, help="alternations of the modes")
    args = parser.parse_args()
    global CLIENT
    CLIENT = args.client
    print(
        f"bench_throughput: {args.jobs} jobs per burst, {args.concurrency} concurrent "
        f"submitters ({args.client} client); {machine()}"
    )
    modes = [m.strip() for m in args.isolation.split(",") if m.strip()]
    results, slots = run_loop(run(args.jobs, args.concurrency, modes, args.rounds))
    title = f"Burst throughput, SQLite, {slots} local slots, {args.client} load generator"
    print(table(title, HEADER, [r.row() for r in results]))
    for result in results:
        if result.span_s is None:
            continue
        rate = result.jobs / result.span_s
        print(
            f"{result.label}: {rate:.0f} jobs/s end to end; target >= {TARGET_JOBS_PER_S:g}: "
            f"{verdict(rate >= TARGET_JOBS_PER_S)}"
        )


if __name__ == "__main__":
    main()
