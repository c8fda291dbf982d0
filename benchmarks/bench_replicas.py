"""Servers on one PostgreSQL waking each other (LISTEN/NOTIFY): latency, and its cost.

On a throwaway PostgreSQL cluster (``tests/support/pg.py``):

1. **Wake-up across servers.** A is ``jobyard up`` (local slots), B is ``jobyard up
   --workers 0`` (what ``jobyard server`` runs). Trivial jobs are submitted one by one
   through B and run on A's slots: created -> acquired and created -> RUNNING, with the
   notifications (default) and without them (``JOBYARD_NOTIFY_REPLICAS=false``: A's
   idle slots find the job at their next poll). The same through A (the in-process
   fast path) for reference.
2. **Cost on the job path.** One ``jobyard up`` on PostgreSQL, bursts of trivial jobs
   with notifications off, on (the server alone: it sends nothing), and on with a
   second server (no slots) listening, so that submits and ends are sent; alternating
   ``--rounds`` times: end-to-end jobs/s and the API process's CPU per job.

    .venv/bin/python benchmarks/bench_replicas.py [--samples 100] [--jobs 1000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path

from _common import BENCH_HOMES, Server, jobyard_up, machine, run_loop, summary_ms, table
from bench_latency import sample
from bench_throughput import HEADER, burst
from tests.support.pg import PgCluster, start_cluster


@contextlib.contextmanager
def _pair(cluster: PgCluster, notify: bool) -> Iterator[tuple[Server, Server]]:
    """A (slots) and B (no slots) on a new database of ``cluster``."""
    env = {
        "JOBYARD_DATABASE_URL": cluster.url(cluster.create_database()),
        "JOBYARD_NOTIFY_REPLICAS": "true" if notify else "false",
    }
    with contextlib.ExitStack() as stack:
        BENCH_HOMES.mkdir(parents=True, exist_ok=True)
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jy-", dir=BENCH_HOMES)))
        env["JOBYARD_BLOBS_DIR"] = str(root / "blobs")
        (root / "a").mkdir()
        a = stack.enter_context(jobyard_up(env=env, home=root / "a"))
        (root / "b").mkdir()
        (root / "b" / "admin.token").write_text(a.token + "\n")
        b = stack.enter_context(jobyard_up(workers=0, env=env, home=root / "b"))
        yield a, b


def _latency_rows(label: str, found: dict[str, list[float]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for what in ("created -> INITIALIZING (acquired)", "created -> RUNNING (started)"):
        s = summary_ms(found[what])
        rows.append([label, what, s["p50"], s["p90"], s["p99"], s["max"]])
    return rows


def latency(cluster: PgCluster, samples: int) -> None:
    """Part 1: one-by-one submits through B (and A), with and without notifications."""
    rows: list[list[object]] = []
    with _pair(cluster, notify=True) as (a, b):
        rows += _latency_rows("through B, notifications", sample(b, samples, warmup=10))
        rows += _latency_rows("through A (local path)", sample(a, samples, warmup=10))
    with _pair(cluster, notify=False) as (a, b):
        rows += _latency_rows("through B, no notifications", sample(b, max(20, samples // 4), 3))
    print(
        table(
            f"Submit -> start across servers ({samples} sequential trivial jobs; ms)",
            ["submitted", "interval", "p50", "p90", "p99", "max"],
            rows,
        )
    )


MODES = {
    "notifications off": (False, False),
    "notifications on, alone": (True, False),
    "notifications on, a second server listening": (True, True),
}


def cost(cluster: PgCluster, jobs: int, rounds: int, concurrency: int) -> None:
    """Part 2: bursts on one server in each of :data:`MODES`, alternating."""
    results: dict[str, list[list[object]]] = {label: [] for label in MODES}
    for _ in range(rounds):
        for label, (notify, peer) in MODES.items():
            env = {
                "JOBYARD_DATABASE_URL": cluster.url(cluster.create_database()),
                "JOBYARD_NOTIFY_REPLICAS": "true" if notify else "false",
            }
            with contextlib.ExitStack() as stack:
                server = stack.enter_context(jobyard_up(env=env))
                if peer:
                    home = Path(
                        stack.enter_context(
                            tempfile.TemporaryDirectory(prefix="jy-", dir=BENCH_HOMES)
                        )
                    )
                    (home / "admin.token").write_text(server.token + "\n")
                    stack.enter_context(jobyard_up(workers=0, env=env, home=home))
                body = {"command": ["true"]}
                run_loop(burst(server, label, "/api/v1/jobs", body, 100, concurrency))  # warm-up
                result = run_loop(burst(server, label, "/api/v1/jobs", body, jobs, concurrency))
                results[label].append(result.row())
    rows = [row for label in MODES for row in results[label]]
    print(table(f"Bursts of {jobs} ad-hoc jobs on one server, PostgreSQL", HEADER, rows))
    for label in MODES:
        rates = [float(str(r[4])) for r in results[label]]
        cpu = [float(str(r[5])) for r in results[label]]
        print(
            f"{label}: end-to-end jobs/s mean {statistics.mean(rates):.0f}, "
            f"server CPU ms/job mean {statistics.mean(cpu):.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--skip-cost", action="store_true")
    args = parser.parse_args()
    print(f"bench_replicas: {machine()}")
    cluster = start_cluster()
    try:
        latency(cluster, args.samples)
        if not args.skip_cost:
            cost(cluster, args.jobs, args.rounds, args.concurrency)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
