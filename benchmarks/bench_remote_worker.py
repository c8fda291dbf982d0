"""Cost per job of the remote path: N trivial jobs through one ``jobyard worker``.

A ``jobyard server`` (no local slots) and one ``jobyard worker --slots S`` on loopback
(SQLite, local blobs folder; ``benchmarks/_remote.py``). Two figures:

* burst: ``--jobs`` ad-hoc ``["/bin/true"]`` jobs submitted at once; jobs/s from the
  first ``created_at`` to the last ``ended_at`` (server clock);
* idle dispatch: one job at a time on an idle system, submit -> RUNNING
  (``started_at - created_at``: the long-poll answering, the assignment, the program's
  start and the RUNNING report).

The same two on a ``jobyard up`` running the same number of local slots, for reference.

    .venv/bin/python benchmarks/bench_remote_worker.py [--jobs 300] [--slots 4] [--idle 30]
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime

import httpx
from _common import Server, jobyard_up, machine, percentile, table
from _remote import remote_workers

TERMINAL = {"FINISHED", "ERROR", "FAILED", "CANCELLED"}


def _t(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _wait(client: httpx.Client, job_id: int, want: set[str]) -> dict[str, object]:
    deadline = time.monotonic() + 120
    while True:
        job: dict[str, object] = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in want:
            return job
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} stuck: {job}")
        time.sleep(0.002)


def measure(server: Server, jobs: int, idle: int) -> tuple[float, list[float]]:
    """(burst jobs/s, idle submit -> RUNNING seconds)."""
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as client:
        for _ in range(3):  # warm-up: first connections, first claims
            job = client.post("/api/v1/jobs", json={"command": ["/bin/true"]}).json()
            _wait(client, int(job["id"]), TERMINAL)
        dispatch = []
        for _ in range(idle):
            job = client.post("/api/v1/jobs", json={"command": ["/bin/true"]}).json()
            done = _wait(client, int(job["id"]), TERMINAL)
            dispatch.append(_t(str(done["started_at"])) - _t(str(done["created_at"])))
            time.sleep(0.05)
        ids = [
            int(client.post("/api/v1/jobs", json={"command": ["/bin/true"]}).json()["id"])
            for _ in range(jobs)
        ]
        ended = [_wait(client, i, TERMINAL) for i in ids]
        bad = [j for j in ended if j["status"] != "FINISHED"]
        if bad:
            raise RuntimeError(f"{len(bad)} jobs did not finish: {bad[:3]}")
        span = max(_t(str(j["ended_at"])) for j in ended) - min(
            _t(str(j["created_at"])) for j in ended
        )
    return jobs / span, dispatch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--idle", type=int, default=30)
    args = parser.parse_args()
    rows = []
    with jobyard_up(command="server") as server, remote_workers(server, [args.slots]):
        rate, dispatch = measure(server, args.jobs, args.idle)
        rows.append(("remote worker", rate, dispatch))
    with jobyard_up(workers=args.slots) as server:
        rate, dispatch = measure(server, args.jobs, args.idle)
        rows.append(("local slots", rate, dispatch))
    print(machine())
    print(
        table(
            f"{args.jobs} jobs ['/bin/true'], {args.slots} slots; idle dispatch x{args.idle}",
            ["path", "jobs/s (burst)", "submit->RUNNING p50", "p90"],
            [
                (
                    name,
                    f"{rate:.0f}",
                    f"{percentile(d, 50) * 1000:.1f} ms",
                    f"{percentile(d, 90) * 1000:.1f} ms",
                )
                for name, rate, d in rows
            ],
        )
    )


if __name__ == "__main__":
    main()
