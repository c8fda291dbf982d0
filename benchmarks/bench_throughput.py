"""Burst throughput of ``jobyard up`` on embedded SQLite with the default slots.

A burst of ``--jobs`` trivial jobs (``["true"]``) is submitted through the API by
``--concurrency`` concurrent requests (httpx AsyncClient), then the script waits until
none is left unfinished. Two paths:

* ad-hoc jobs: ``POST /api/v1/jobs`` (no sequencing limit);
* a jobconfig with ``max_concurrent = 0``: ``POST /api/v1/jobconfigs/{id}/run``.

Figures: submit rate (requests/s while submitting) and end-to-end jobs/s, from the
first ``created_at`` to the last ``ended_at`` of the burst (server clock), with the
client's wall time alongside. Target: >= 300 jobs/s end to end.

    .venv/bin/python benchmarks/bench_throughput.py [--jobs 1000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from datetime import datetime
from typing import Any

import httpx
from _common import UNFINISHED, Server, jobyard_up, machine, table, verdict

TARGET_JOBS_PER_S = 300.0


async def _submit_all(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], count: int, concurrency: int
) -> tuple[list[int], float]:
    ids: list[int] = []
    remaining = iter(range(count))

    async def submitter() -> None:
        for _ in remaining:
            r = await client.post(path, json=body)
            r.raise_for_status()
            ids.append(int(r.json()["id"]))

    t0 = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(concurrency)))
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
    wanted = set(ids)
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        page = (await client.get("/api/v1/jobs", params=params)).json()
        found.extend(job for job in page["items"] if job["id"] in wanted)
        if not page["next_cursor"] or (page["items"] and page["items"][-1]["id"] <= min(ids)):
            return found
        params["cursor"] = page["next_cursor"]


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


async def burst(
    server: Server, path: str, body: dict[str, Any], count: int, concurrency: int
) -> list[object]:
    """One burst; returns a table row."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=server.url, headers=server.headers, limits=limits, timeout=120
    ) as client:
        t0 = time.perf_counter()
        ids, submit_s = await _submit_all(client, path, body, count, concurrency)
        await _wait_all_ended(client, timeout=600)
        wall_s = time.perf_counter() - t0
        jobs = await _records(client, ids)
    if len(jobs) != count:
        raise RuntimeError(f"found {len(jobs)} of {count} jobs")
    statuses = Counter(job["status"] for job in jobs)
    span_s = max(_ts(j["ended_at"]) for j in jobs) - min(_ts(j["created_at"]) for j in jobs)
    return [
        path,
        count,
        f"{count / submit_s:.0f}",
        f"{span_s:.2f}",
        f"{count / span_s:.0f}",
        f"{count / wall_s:.0f}",
        " ".join(f"{k}={v}" for k, v in sorted(statuses.items())),
    ]


async def run(count: int, concurrency: int) -> tuple[list[list[object]], int]:
    """Both bursts on one fresh server; returns (rows, slots)."""
    async with asyncio.timeout(1800):
        with jobyard_up() as server:
            async with httpx.AsyncClient(base_url=server.url, headers=server.headers) as c:
                warm = [(await c.post("/api/v1/jobs", json={"command": ["true"]})).json()["id"]]
                await _wait_all_ended(c, timeout=60)
                jc = await c.post(
                    "/api/v1/jobconfigs",
                    json={"name": "burst", "command": ["true"], "max_concurrent": 0},
                )
                jc.raise_for_status()
                slots = _slots(server)
            del warm
            rows = [
                await burst(server, "/api/v1/jobs", {"command": ["true"]}, count, concurrency),
                await burst(
                    server, f"/api/v1/jobconfigs/{jc.json()['id']}/run", {}, count, concurrency
                ),
            ]
    return rows, slots


def _slots(server: Server) -> int:
    for line in (server.home / "server.log").read_text(errors="replace").splitlines():
        if "local slot" in line:
            return int(line.split("workers:")[1].split()[0])
    return -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    print(
        f"bench_throughput: {args.jobs} jobs per burst, {args.concurrency} concurrent "
        f"submitters; {machine()}"
    )
    rows, slots = asyncio.run(run(args.jobs, args.concurrency))
    header = [
        "path",
        "jobs",
        "submit req/s",
        "first created -> last ended (s)",
        "end-to-end jobs/s",
        "client wall jobs/s",
        "end statuses",
    ]
    print(table(f"Burst throughput, SQLite, {slots} local slots", header, rows))
    for row in rows:
        rate = float(str(row[4]))
        print(
            f"{row[0]}: {rate:.0f} jobs/s end to end; target >= {TARGET_JOBS_PER_S:g}: "
            f"{verdict(rate >= TARGET_JOBS_PER_S)}"
        )


if __name__ == "__main__":
    main()
