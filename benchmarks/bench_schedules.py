"""10,000 schedules each firing once a minute, on embedded SQLite.

1. ``jobyard up`` on a fresh home (embedded SQLite, no local workers by default, so the
   figures are the scheduler's own; ``--workers`` runs the jobs too);
2. ``--jobconfigs`` jobconfigs (``max_concurrent = 0``, command ``true``) with
   ``--schedules`` schedules ``0 * * * * ?`` spread over them, created through the API;
3. it watches ``--minutes`` firings, sampling the server's CPU time, then reads the jobs
   from the database and reports:

   * **lateness** from each job's nominal fire time (``scheduled_for``) to its creation
     (``created_at``: the start of the transaction that created it) and to the commit of
     that transaction (from the scheduler's log line), p50 / p99 / max — target p99 <= 1 s;
   * **exactly once**: every firing minute has one job per schedule, no duplicate;
   * **CPU** of the server process: during the minute as a whole, and *between firings*
     (from 5 s after a fire time to 1 s before the next) — target < 5 % of a core.

    .venv/bin/python benchmarks/bench_schedules.py [--schedules 10000] [--minutes 3]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sqlite3
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import (
    LeanClient,
    jobyard_up,
    machine,
    percentile,
    process_cpu,
    run_loop,
    table,
    verdict,
)

TARGET_P99_S = 1.0
TARGET_IDLE_CPU = 5.0  # percent of one core
CRON = "0 * * * * ?"
_LOG_LINE = re.compile(
    r"fired (\d+) job\(s\) in (\d+) ms; (?:on-time firings: )?lateness to commit "
    r"p50 ([\d.]+) s, max ([\d.]+) s"
)


async def _create(url: str, token: str, jobconfigs: int, schedules: int) -> float:
    started = time.perf_counter()
    async with LeanClient(url, token, 8) as api:
        ids = []
        for i in range(jobconfigs):
            status, body = await api.request(
                "POST",
                "/api/v1/jobconfigs",
                {"name": f"bench-{i}", "command": ["true"], "max_concurrent": 0},
            )
            assert status == 201, body
            ids.append(body["id"])

        async def one(n: int) -> None:
            status, body = await api.request(
                "POST",
                f"/api/v1/jobconfigs/{ids[n % jobconfigs]}/schedules",
                {"cron": CRON, "name": f"s{n}"},
            )
            assert status == 201, body

        for start in range(0, schedules, 500):
            await asyncio.gather(*(one(n) for n in range(start, min(schedules, start + 500))))
    return time.perf_counter() - started


def _sleep_until(when: datetime) -> None:
    delay = (when - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay)


def _next_minute(after: datetime) -> datetime:
    return after.replace(second=0, microsecond=0) + timedelta(minutes=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--jobconfigs", type=int, default=100)
    parser.add_argument("--minutes", type=int, default=3, help="firings to observe")
    parser.add_argument("--workers", type=int, default=0, help="local slots (0: none)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"{args.schedules} schedules '{CRON}' over {args.jobconfigs} jobconfigs, SQLite")

    with jobyard_up(workers=args.workers) as server:
        took = run_loop(_create(server.url, server.token, args.jobconfigs, args.schedules))
        print(f"created in {took:.1f} s ({args.schedules / took:.0f} schedules/s via the API)")
        pid = server.process.pid
        first = _next_minute(datetime.now(UTC) + timedelta(seconds=2))
        fire_times = [first + timedelta(minutes=i) for i in range(args.minutes)]
        # CPU samples: (wall time, cpu seconds), every 0.25 s from just before the first
        # firing to a little after the last.
        samples: list[tuple[datetime, float]] = []
        _sleep_until(first - timedelta(seconds=1))
        end = fire_times[-1] + timedelta(seconds=50)
        while datetime.now(UTC) < end:
            samples.append((datetime.now(UTC), process_cpu(pid)[0]))
            time.sleep(0.25)
        log_text = (server.home / "server.log").read_text(errors="replace")
        db = sqlite3.connect(Path(server.home) / "jobyard.db")
        try:
            rows = db.execute(
                "SELECT schedule_id, scheduled_for, created_at FROM jobs "
                "WHERE trigger = 'schedule' AND scheduled_for >= ? AND scheduled_for < ?",
                (
                    first.replace(tzinfo=None).isoformat(sep=" "),
                    (fire_times[-1] + timedelta(seconds=1)).replace(tzinfo=None).isoformat(sep=" "),
                ),
            ).fetchall()
        finally:
            db.close()

    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    lateness = [(parse(c) - parse(s)).total_seconds() for _, s, c in rows]
    per_firing = Counter((sid, s) for sid, s, _ in rows)
    per_minute = Counter(parse(s) for _, s, _ in rows)
    duplicates = sum(1 for n in per_firing.values() if n > 1)
    expected = args.schedules * len(fire_times)
    commits = [m.groups() for m in _LOG_LINE.finditer(log_text)]
    commit_max = [float(g[3]) for g in commits if int(g[0]) >= args.schedules // 2]
    round_ms = [int(g[1]) for g in commits if int(g[0]) >= args.schedules // 2]

    def cpu_between(start: datetime, stop: datetime) -> float:
        inside = [(t, c) for t, c in samples if start <= t <= stop]
        if len(inside) < 2:
            return float("nan")
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return 100 * (c1 - c0) / (t1 - t0).total_seconds()

    idle = [
        cpu_between(t + timedelta(seconds=5), t + timedelta(seconds=59)) for t in fire_times[:-1]
    ]
    idle.append(cpu_between(fire_times[-1] + timedelta(seconds=5), end))
    whole = [
        cpu_between(t - timedelta(seconds=0.5), t + timedelta(seconds=59.5))
        for t in fire_times[:-1]
    ]
    p99 = percentile(lateness, 99)
    print(
        table(
            "Firing lateness (nominal fire time -> job created)",
            ["jobs", "expected", "duplicates", "p50 s", "p99 s", "max s", "target p99"],
            [
                [
                    len(rows),
                    expected,
                    duplicates,
                    f"{percentile(lateness, 50):.3f}",
                    f"{p99:.3f}",
                    f"{max(lateness):.3f}" if lateness else "nan",
                    f"<= {TARGET_P99_S} s: {verdict(p99 <= TARGET_P99_S)}",
                ]
            ],
        )
    )
    print(
        table(
            "Per firing",
            ["fire time", "jobs", "round ms", "last commit s after fire time"],
            [
                [
                    t.strftime("%H:%M:%S"),
                    per_minute.get(t, 0),
                    round_ms[i] if i < len(round_ms) else "?",
                    f"{commit_max[i]:.3f}" if i < len(commit_max) else "?",
                ]
                for i, t in enumerate(fire_times)
            ],
        )
    )
    worst_idle = max(idle)
    print(
        table(
            "Server CPU (% of one core)",
            ["between firings (each minute)", "whole minute incl. firing", "target idle"],
            [
                [
                    ", ".join(f"{x:.2f}" for x in idle),
                    ", ".join(f"{x:.1f}" for x in whole) or "-",
                    f"< {TARGET_IDLE_CPU} %: {verdict(worst_idle < TARGET_IDLE_CPU)}",
                ]
            ],
        )
    )
    if len(rows) != expected or duplicates:
        print(f"EXACTLY-ONCE VIOLATED: {len(rows)} jobs for {expected} firings, {duplicates} dup")


if __name__ == "__main__":
    main()
