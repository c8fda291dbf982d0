"""CPU of the worker's runner per job, without a database: the job path's own Python.

Runs ``--jobs`` trivial ``true`` jobs through :func:`jobyard.worker.runner.run_job` from
``--slots`` concurrent slots of one process, against a backend that answers every
control-plane call at once (RUNNING and the end are accepted, nothing is stored). The job
sandbox is the default one (``auto``: a uid per slot when run as root). Prints the CPU
this process spent per job (the runner: folders, log, spawn hand-off, pipes, exit
watch, the kill of the job's uid, clean-up) and the CPU of the reaped ``true``
programs, from ``getrusage``; so other load on the machine counts less than in the
end-to-end benchmarks.

    .venv/bin/python benchmarks/bench_runner.py [--jobs 3000] [--slots 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import BENCH_HOMES, machine

from jobyard.core.jobs import JobStatus
from jobyard.core.models import Job
from jobyard.worker.protocol import Assignment, PayloadRef
from jobyard.worker.runner import RunnerOptions, run_job
from jobyard.worker.sandbox import Isolator, jobs_root_for, resolve_isolation
from jobyard.worker.workspace import Workspace


def _assignment(job_id: int) -> Assignment:
    now = datetime.now(UTC)
    job = Job(
        id=job_id, jobconfig_id=None, package_id=None, entrypoint=None, command=["true"],
        macros={}, timeout=0, success_exit_codes=[0], pool="default", priority=0,
        trigger="api", submitted_by="bench", rerun_of=None, status=JobStatus.INITIALIZING,
        status_reason=None, exit_code=None, seq=job_id, worker_id="bench",
        lease_expires_at=None, abort_requested_at=None, pid=None, created_at=now,
        sequenced_at=now, queued_at=now, acquired_at=now, started_at=None, ended_at=None,
    )  # fmt: skip
    return Assignment(
        job=job, argv=["true"], env={}, package_sha256=None, package_kind=None,
        package_filename=None,
    )  # fmt: skip


class _InstantBackend:
    """A control plane that accepts everything at once and keeps nothing."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.ended = 0
        self.failure: str | None = None

    def log_path(self, job_id: int) -> Path:
        return self.logs / f"{job_id}.log"

    async def log_closed(self, job_id: int) -> None:
        return None

    async def set_running(
        self, job_id: int, *, worker_id: str, pid: int | None, started_at: datetime | None = None
    ) -> bool:
        return True

    async def end(
        self,
        job_id: int,
        *,
        worker_id: str,
        status: JobStatus,
        exit_code: int | None,
        reason: str | None,
    ) -> None:
        if status is not JobStatus.FINISHED:
            self.failure = f"job {job_id} ended {status.value}: {reason}"
        self.ended += 1

    async def store_output(self, job_id: int, name: str, path: Path) -> None:
        return None

    async def package_path(self, sha256: str) -> Path:
        raise RuntimeError("no packages in this benchmark")

    async def payload_path(self, ref: PayloadRef) -> Path:
        raise RuntimeError("no payloads in this benchmark")


async def _round(jobs: int, slots: int, root: Path) -> tuple[float, float, float]:
    plan = resolve_isolation("auto")
    isolator = Isolator(plan, slots=slots)
    await isolator.start()
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    backend = _InstantBackend(logs)
    workspace = Workspace(root / "work", jobs_root=jobs_root_for(root, plan))
    options = RunnerOptions()
    numbers = iter(range(1, jobs + 1))

    async def slot() -> None:
        for job_id in numbers:
            if backend.failure is not None:
                return
            await run_job(
                _assignment(job_id), backend, worker_id="bench", workspace=workspace,  # type: ignore[arg-type]
                options=options, isolator=isolator,
            )  # fmt: skip

    try:
        before_self = resource.getrusage(resource.RUSAGE_SELF)
        before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        await asyncio.gather(*(slot() for _ in range(slots)))
        wall = time.perf_counter() - started
        after_self = resource.getrusage(resource.RUSAGE_SELF)
        after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        isolator.close()
        workspace.tidy()
    if backend.failure is not None or backend.ended != jobs:
        raise RuntimeError(backend.failure or f"{backend.ended} of {jobs} jobs ended")

    def cpu(a: resource.struct_rusage, b: resource.struct_rusage) -> float:
        return (b.ru_utime - a.ru_utime) + (b.ru_stime - a.ru_stime)

    return (
        cpu(before_self, after_self) / jobs * 1e3,
        cpu(before_children, after_children) / jobs * 1e3,
        jobs / wall,
    )


async def main(jobs: int, slots: int, rounds: int) -> None:
    print(machine())
    print(f"\n{jobs} `true` jobs per round through the runner, {slots} slots, no database\n")
    print("| round | runner CPU ms/job | `true` CPU ms/job | jobs/s |")
    print("|---|---|---|---|")
    BENCH_HOMES.mkdir(parents=True, exist_ok=True)
    for index in range(rounds):
        with tempfile.TemporaryDirectory(prefix="runner-", dir=BENCH_HOMES) as home:
            os.chmod(home, 0o711)  # job uids reach their folders, as in a server's home
            own, children, rate = await _round(jobs, slots, Path(home))
        print(f"| {index + 1} | {own:.3f} | {children:.3f} | {rate:.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.slots, args.rounds))
