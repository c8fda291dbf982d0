"""CPU of the store calls a job makes, one job per transaction, in this process.

No HTTP, no worker: each call of the job path (submit insert, claim, RUNNING report, end
report) on a fresh SQLite store, ``--jobs`` times, timed with ``time.process_time`` (so
other load on the machine counts less than in the end-to-end benchmarks). The grouped
forms the server uses under load (several submits, reports and a claim per transaction)
cost less per job; this isolates the per-statement cost of the store code.

    .venv/bin/python benchmarks/bench_store_path.py [--jobs 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from _common import BENCH_HOMES, machine

from jobyard.core.claims import ClaimRequest, EndReport, RunningReport
from jobyard.core.jobs import JobStatus
from jobyard.core.models import NewJob
from jobyard.store.factory import open_store


async def _timed(label: str, count: int, step: Callable[[int], Awaitable[object]]) -> None:
    start = time.process_time()
    for n in range(count):
        await step(n)
    per_call = (time.process_time() - start) / count * 1e6
    print(f"| {label} | {per_call:.0f} |")


async def main(jobs: int) -> None:
    BENCH_HOMES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="store-", dir=BENCH_HOMES) as home:
        store = await open_store(f"sqlite:///{home}/jobyard.db")
        try:
            await store.users_bootstrap(None)
            new = NewJob(
                jobconfig_id=None,
                package_id=None,
                entrypoint=None,
                command=["true"],
                macros={},
                timeout=0,
                success_exit_codes=[0],
                submitted_by="admin",
            )
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
    asyncio.run(main(parser.parse_args().jobs))
