"""Soak: many trivial jobs through ``jobyard up`` with retention on; does anything grow?

``--jobs`` (default 200,000) ``true`` jobs are submitted through the HTTP API to
``--jobconfigs`` jobconfigs in turn, by ``--concurrency`` submitters, with retention
keeping ``--keep`` ended jobs per jobconfig (``JOBYARD_RETENTION__*``: a short purge
interval so retention keeps up, and a short audit retention because every submission
writes an audit row and the audit log is bounded by age, not by count). The backlog is
bounded: a submitter waits for the job submitted ``--backlog`` jobs earlier to end.

Every ``--sample`` jobs it records the database size (file + WAL + shared memory), the
blobs folder and the work folder (bytes of the files + 4 KiB per file or folder, so a
growing number of empty log files shows too; ``--output`` makes each job write a log
line and an output file), and per ``--window`` jobs the submit latency
p50/p99. Verdicts: after the first cycle (jobconfigs x keep jobs, plus one window) the
sizes stop growing (the last sample within 10 % + 1 MiB of the largest after the first
cycle); the last window's p99 within 20 % of the first's.

    .venv/bin/python benchmarks/bench_soak.py [--jobs 200000] [--keep 1000] [--jobs 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from _common import LeanClient, Server, jobyard_up, machine, percentile, run_loop, table, verdict


def _size(path: Path) -> int:
    """Bytes under ``path``: files, plus 4 KiB per file or folder (an empty log file
    still costs an inode and a directory entry, so growth in numbers shows too)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for top, dirs, names in os.walk(path):
        total += 4096 * len(dirs)
        for name in names:
            try:
                total += os.lstat(os.path.join(top, name)).st_size + 4096
            except OSError:
                continue
    return total


def _sizes(home: Path) -> tuple[int, int, int]:
    db = sum(_size(home / f"jobyard.db{suffix}") for suffix in ("", "-wal", "-shm"))
    return db, _size(home / "blobs"), _size(home / "work")


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f}"


async def _soak(server: Server, args: argparse.Namespace) -> int:
    async with LeanClient(server.url, server.token, args.concurrency) as api:
        ids = []
        for n in range(args.jobconfigs):
            body = {"name": f"soak-{n}", "command": args.command, "max_concurrent": 0}
            status, answer = await api.request("POST", "/api/v1/jobconfigs", body)
            if status != 201:
                raise RuntimeError(f"create jobconfig: {status} {answer}")
            ids.append(int(answer["id"]))
        submitted: list[int] = []
        latencies: list[float] = []
        windows: list[tuple[int, float, float]] = []
        samples: list[tuple[int, int, int, int, float]] = []
        counter = iter(range(args.jobs))
        started = time.monotonic()
        load0 = os.getloadavg()[0]

        async def wait_ended(job_id: int) -> None:
            while True:
                status, answer = await api.request("GET", f"/api/v1/jobs/{job_id}")
                if status == 404 or answer["status"] in (
                    "FINISHED", "ERROR", "FAILED", "CANCELLED"
                ):  # fmt: skip
                    return
                await asyncio.sleep(0.05)

        async def submitter() -> None:
            for n in counter:
                if n >= args.backlog and n % 100 == 0:
                    await wait_ended(submitted[n - args.backlog])
                path = f"/api/v1/jobconfigs/{ids[n % len(ids)]}/run"
                t0 = time.perf_counter()
                status, answer = await api.request("POST", path, {})
                latencies.append(time.perf_counter() - t0)
                if status != 201:
                    raise RuntimeError(f"POST {path}: {status} {answer}")
                submitted.append(int(answer["id"]))
                done = len(latencies)
                if done % args.window == 0:
                    window = latencies[done - args.window : done]
                    windows.append(
                        (done, percentile(window, 50) * 1000, percentile(window, 99) * 1000)
                    )
                if done % args.sample == 0:
                    db, blobs, work = _sizes(server.home)
                    elapsed = time.monotonic() - started
                    samples.append((done, db, blobs, work, elapsed))
                    print(
                        f"  {done:>7} jobs  {elapsed:6.0f} s  db {_mib(db)} MiB  blobs "
                        f"{_mib(blobs)} MiB  work {_mib(work)} MiB  load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )

        await asyncio.gather(*(submitter() for _ in range(args.concurrency)))
        await wait_ended(submitted[-1])
        elapsed = time.monotonic() - started

    rows = []
    by_done = {w[0]: w for w in windows}
    for done, db, blobs, work, at in samples:
        w = by_done.get(done)
        rows.append(
            [
                done,
                f"{at:.0f}",
                _mib(db),
                _mib(blobs),
                _mib(work),
                f"{w[1]:.1f}" if w else "",
                f"{w[2]:.1f}" if w else "",
            ]
        )
    print()
    print(
        table(
            f"Soak: {args.jobs} jobs, keep {args.keep} per jobconfig x {args.jobconfigs}",
            ["jobs", "s", "db MiB", "blobs MiB", "work MiB", "p50 ms (window)", "p99 ms (window)"],
            rows,
        )
    )
    cycle = args.jobconfigs * args.keep + args.window
    after = [s for s in samples if s[0] >= cycle]
    ok_sizes = True
    if len(after) >= 2:
        for column, label in ((1, "database"), (2, "blobs"), (3, "work")):
            peak = max(s[column] for s in after[: max(1, len(after) // 2)])
            last = after[-1][column]
            grows = last > peak * 1.10 + 1024**2
            ok_sizes &= not grows
            print(
                f"{label}: max in the first half after the first cycle {_mib(peak)} MiB, "
                f"at the end {_mib(last)} MiB -> {verdict(not grows)}"
            )
    else:
        print("too few samples after the first cycle to judge growth (raise --jobs)")
    first, last = windows[0], windows[-1]
    ok_latency = last[2] <= first[2] * 1.2
    print(
        f"submit p99: first window {first[2]:.1f} ms, last window {last[2]:.1f} ms "
        f"({last[2] / first[2] * 100 - 100:+.0f} %) -> {verdict(ok_latency)}"
    )
    print(
        f"{args.jobs} jobs in {elapsed:.0f} s ({args.jobs / elapsed:.0f} jobs/s); load average "
        f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; {machine()}"
    )
    return 0 if ok_sizes and ok_latency else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--keep", type=int, default=1000, help="ended jobs kept per jobconfig")
    parser.add_argument("--jobconfigs", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--window", type=int, default=10_000, help="jobs per latency window")
    parser.add_argument("--sample", type=int, default=10_000, help="jobs between size samples")
    parser.add_argument("--backlog", type=int, default=2000, help="most jobs not yet ended")
    parser.add_argument("--interval", type=float, default=2.0, help="purge interval, s")
    parser.add_argument(
        "--output",
        action="store_true",
        help="jobs write a log line and an output file (blobs to purge) instead of `true`",
    )
    args = parser.parse_args()
    args.command = (
        ["/bin/sh", "-c", 'echo soak line; echo out > "$LOCAL_JOB_OUT_DIR/o.txt"']
        if args.output
        else ["true"]
    )
    env = {
        "JOBYARD_RETENTION__MAX_JOBS_PER_JOBCONFIG": str(args.keep),
        "JOBYARD_RETENTION__INTERVAL_SECONDS": str(args.interval),
        "JOBYARD_RETENTION__AUDIT_DAYS": "0.001",  # ~86 s of audit rows
        "JOBYARD_RETENTION__BATCH_SIZE": "200",
    }
    print(f"soak: {args.jobs} jobs, {args.concurrency} submitters; {machine()}", flush=True)
    with jobyard_up(env=env) as server:
        code = run_loop(_soak(server, args))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
