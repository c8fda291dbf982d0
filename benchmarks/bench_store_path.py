"""CPU of the store calls a job makes, in this process (and in PostgreSQL).

No HTTP, no worker: each call of the job path (submit insert, claim, RUNNING report, end
report) on a fresh SQLite store, ``--jobs`` times, one job per transaction, timed with
``time.process_time`` (so other load on the machine counts less than in the end-to-end
benchmarks); this isolates the per-statement cost of the store code.

``--postgres`` runs the grouped forms the server uses under a burst of remote jobs, on a
throwaway PostgreSQL cluster: rounds of ``--batch`` submits sharing one commit, one claim
of that many jobs, then three reports calls (half the RUNNING reports; the other half
with half the ends; the other ends). It prints the CPU per job of this process (all its
threads: the store's writer threads included) and of PostgreSQL (every backend).

    .venv/bin/python benchmarks/bench_store_path.py [--jobs 2000] [--postgres [--batch 8]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from _common import BENCH_HOMES, machine, process_cpu

from jobyard.core.access import AuditNote
from jobyard.core.claims import ClaimRequest, EndReport, RunningReport
from jobyard.core.jobs import JobStatus
from jobyard.core.models import NewJob
from jobyard.store.factory import open_store, upgrade_database
from jobyard.store.protocol import Store


async def _timed(label: str, count: int, step: Callable[[int], Awaitable[object]]) -> None:
    start = time.process_time()
    for n in range(count):
        await step(n)
    per_call = (time.process_time() - start) / count * 1e6
    print(f"| {label} | {per_call:.0f} |")


_NEW = NewJob(
    jobconfig_id=None,
    package_id=None,
    entrypoint=None,
    command=["true"],
    macros={},
    timeout=0,
    success_exit_codes=[0],
    submitted_by="admin",
)


def _cluster_cpu(postmaster: int) -> float:
    """CPU seconds of PostgreSQL: the postmaster, its live backends, those it reaped."""
    total = sum(process_cpu(postmaster))
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == postmaster:
                total += sum(process_cpu(int(entry.name)))
    return total


async def _round(store: Store, batch: int, tag: str) -> None:
    """One burst round of ``batch`` jobs: submits, a claim, three reports calls."""
    audit = AuditNote("admin", "job.submit", "job", {"adhoc": True}, "127.0.0.1")
    await asyncio.gather(
        *(
            store.job_insert(_NEW, actor="user:admin", reason="submitted (adhoc)", audit=audit)
            for _ in range(batch)
        )
    )
    hashes = [f"{tag}-{n}" for n in range(batch)]
    answer = await store.jobs_report(
        worker_id="w", claim=ClaimRequest("default", batch, 15, hashes)
    )
    ids = [claim.job.id for claim in answer.claims]
    if len(ids) != batch or any(claim.token_hash is None for claim in answer.claims):
        raise RuntimeError(f"claimed {len(ids)} of {batch} jobs, or without their tokens")
    now = datetime.now(UTC)
    half = len(ids) // 2
    running = [RunningReport(i, 1, now, None) for i in ids]
    ended = [EndReport(i, JobStatus.FINISHED, 0, None, "w") for i in ids]
    await store.jobs_report(worker_id="w", running=running[:half])
    await store.jobs_report(worker_id="w", running=running[half:], ended=ended[:half])
    await store.jobs_report(worker_id="w", ended=ended[half:])


async def main_postgres(jobs: int, batch: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support.pg import start_cluster

    pg = start_cluster()
    try:
        url = pg.url(pg.create_database())
        upgrade_database(url)
        postmaster = int((pg.datadir / "postmaster.pid").read_text().split()[0])
        store = await open_store(url)
        try:
            await store.users_bootstrap(None)
            for n in range(30):  # warm-up: statements prepared, caches filled
                await _round(store, batch, f"warm-{n}")
            rounds = max(1, jobs // batch)
            mine0, pg0 = time.process_time(), _cluster_cpu(postmaster)
            for n in range(rounds):
                await _round(store, batch, f"r-{n}")
            mine, pgcpu = time.process_time() - mine0, _cluster_cpu(postmaster) - pg0
        finally:
            await store.close()
    finally:
        pg.stop()
    done = rounds * batch
    print(machine())
    print(f"\n{done} jobs in rounds of {batch} (submits, claim, 3 reports calls), PostgreSQL\n")
    print("| process | CPU ms per job |")
    print("|---|---|")
    print(f"| store (this process) | {mine / done * 1e3:.3f} |")
    print(f"| PostgreSQL | {pgcpu / done * 1e3:.3f} |")


async def main(jobs: int) -> None:
    BENCH_HOMES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="store-", dir=BENCH_HOMES) as home:
        store = await open_store(f"sqlite:///{home}/jobyard.db")
        try:
            await store.users_bootstrap(None)
            new = _NEW
            print(machine())
            print(f"\n{jobs} jobs, one per transaction, SQLite\n")
            print("| store call | CPU µs per call |")
            print("|---|---|")

            async def insert(_n: int) -> object:
                return await store.job_insert(new, actor="bench", reason=None)

            await _timed("submit (insert + promotion + events)", jobs, insert)
            claims = []

            async def claim(n: int) -> object:
                request = ClaimRequest("default", 1, 15, [f"hash-{n}"])
                answer = await store.jobs_report(worker_id="w", claim=request)
                claims.extend(answer.claims)
                return answer

            await _timed("claim of 1 job (+ its run context, session token)", jobs, claim)
            now = datetime.now(UTC)

            async def running(n: int) -> object:
                report = RunningReport(claims[n].job.id, 1, now, {})
                return await store.jobs_report(worker_id="w", running=[report])

            await _timed("RUNNING report", len(claims), running)

            async def end(n: int) -> object:
                report = EndReport(claims[n].job.id, JobStatus.FINISHED, 0, None, "w")
                return await store.jobs_report(worker_id="w", ended=[report])

            await _timed("end report (FINISHED)", len(claims), end)
        finally:
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--postgres", action="store_true", help="burst rounds on PostgreSQL")
    parser.add_argument("--batch", type=int, default=8, help="jobs per round (--postgres)")
    args = parser.parse_args()
    if args.postgres:
        asyncio.run(main_postgres(args.jobs, args.batch))
    else:
        asyncio.run(main(args.jobs))
