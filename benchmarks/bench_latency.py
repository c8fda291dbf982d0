"""Idle submit -> RUNNING latency of ``jobyard up`` on embedded SQLite.

One ad-hoc ``{"command": ["true"]}`` job at a time through ``POST /api/v1/jobs``; wait
for it to end; read ``created_at`` (the submit transaction), ``acquired_at`` (a worker
claimed it: INITIALIZING) and ``started_at`` (its program runs: RUNNING) from the job
record. The server is idle between samples, so this is the latency a lone job sees.

Target: p50 of ``started_at - created_at`` <= 10 ms.

    .venv/bin/python benchmarks/bench_latency.py [--samples 200] [--warmup 10]
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime

import httpx
from _common import TERMINAL, Server, jobyard_up, machine, summary_ms, table, verdict

TARGET_P50_MS = 10.0


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def run(samples: int, warmup: int, isolation: str = "auto") -> dict[str, list[float]]:
    """Submit ``warmup + samples`` jobs one by one; return the measured intervals (s)."""
    with jobyard_up(env={"JOBYARD_ISOLATION": isolation}) as server:
        return sample(server, samples, warmup)


def sample(server: Server, samples: int, warmup: int) -> dict[str, list[float]]:
    """The measurement of :func:`run` on a running server (also used by the peer benchmark)."""
    found: dict[str, list[float]] = {
        "created -> INITIALIZING (acquired)": [],
        "created -> RUNNING (started)": [],
        "created -> ended": [],
        "client: POST /jobs round trip": [],
    }
    with httpx.Client(base_url=server.url, headers=server.headers) as c:
        for i in range(warmup + samples):
            t0 = time.perf_counter()
            r = c.post("/api/v1/jobs", json={"command": ["true"]})
            rtt = time.perf_counter() - t0
            r.raise_for_status()
            job_id = r.json()["id"]
            deadline = time.monotonic() + 30
            while True:
                job = c.get(f"/api/v1/jobs/{job_id}").json()
                if job["status"] in TERMINAL:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"job {job_id} did not end: {job}")
                time.sleep(0.002)
            if job["status"] != "FINISHED":
                raise RuntimeError(f"job {job_id} ended {job['status']}: {job['status_reason']}")
            if i < warmup:
                continue
            created = _ts(job["created_at"])
            found["created -> INITIALIZING (acquired)"].append(_ts(job["acquired_at"]) - created)
            found["created -> RUNNING (started)"].append(_ts(job["started_at"]) - created)
            found["created -> ended"].append(_ts(job["ended_at"]) - created)
            found["client: POST /jobs round trip"].append(rtt)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--isolation", default="auto", help="job sandbox modes to measure, e.g. auto,none"
    )
    args = parser.parse_args()
    print(f"bench_latency: {args.samples} samples after {args.warmup} warm-up jobs; {machine()}")
    for mode in [m.strip() for m in args.isolation.split(",") if m.strip()]:
        found = run(args.samples, args.warmup, mode)
        rows = []
        for name, values in found.items():
            s = summary_ms(values)
            rows.append([name, s["p50"], s["p90"], s["p99"], s["mean"], s["max"]])
        header = ["interval", "p50", "p90", "p99", "mean", "max"]
        print(table(f"Idle latency (ms), SQLite, default slots, isolation {mode}", header, rows))
        p50 = float(summary_ms(found["created -> RUNNING (started)"])["p50"])
        print(
            f"\nisolation {mode}: submit -> RUNNING p50 = {p50:.2f} ms; target <= "
            f"{TARGET_P50_MS:g} ms: {verdict(p50 <= TARGET_P50_MS)}"
        )


if __name__ == "__main__":
    main()
