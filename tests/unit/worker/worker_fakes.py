"""A recording in-test WorkerBackend and builders for jobs and assignments.

Only the control plane is fake here: the runner under test spawns real processes and
writes real files.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobyard.core.errors import NotFound
from jobyard.core.jobs import JobStatus
from jobyard.core.models import Job
from jobyard.worker.protocol import Assignment, PayloadRef


def make_job(job_id: int, **changes: Any) -> Job:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "id": job_id,
        "jobconfig_id": 7,
        "package_id": None,
        "entrypoint": None,
        "command": ["true"],
        "macros": {},
        "timeout": 0,
        "success_exit_codes": [0],
        "pool": "default",
        "priority": 0,
        "trigger": "api",
        "submitted_by": "alice",
        "rerun_of": None,
        "status": JobStatus.INITIALIZING,
        "status_reason": None,
        "exit_code": None,
        "seq": job_id,
        "worker_id": "w",
        "lease_expires_at": None,
        "abort_requested_at": None,
        "pid": None,
        "created_at": now,
        "sequenced_at": now,
        "queued_at": now,
        "acquired_at": now,
        "started_at": None,
        "ended_at": None,
    }
    fields.update(changes)
    return Job(**fields)


def make_assignment(job_id: int, argv: list[str], **changes: Any) -> Assignment:
    job = changes.pop("job", None) or make_job(job_id, command=argv)
    fields: dict[str, Any] = {
        "job": job,
        "argv": argv,
        "env": {},
        "package_sha256": None,
        "package_kind": None,
        "package_filename": None,
    }
    fields.update(changes)
    return Assignment(**fields)


@dataclass
class Ended:
    status: JobStatus
    exit_code: int | None
    reason: str | None


@dataclass
class RecordingBackend:
    """Implements WorkerBackend; records every call in order."""

    root: Path
    assignments: dict[int, Assignment] = field(default_factory=dict)
    prepare_errors: dict[int, Exception] = field(default_factory=dict)
    packages: dict[str, Path] = field(default_factory=dict)
    payloads: dict[str, Path] = field(default_factory=dict)
    queue: list[Job] = field(default_factory=list)
    calls: list[tuple[str, int | None]] = field(default_factory=list)
    ended: dict[int, Ended] = field(default_factory=dict)
    running: dict[int, int | None] = field(default_factory=dict)  # job id -> pid
    outputs: dict[int, dict[str, bytes]] = field(default_factory=dict)
    heartbeats: list[tuple[int, bool]] = field(default_factory=list)
    allow_running: bool = True
    abort_requested: set[int] = field(default_factory=set)
    leases_lost: set[int] = field(default_factory=set)
    held: set[int] = field(default_factory=set)
    package_fetches: int = 0
    prepare_gate: asyncio.Event | None = None
    on_end: Callable[[int], None] | None = None
    max_concurrent_seen: int = 0
    forgotten: list[int] = field(default_factory=list)
    #: What heartbeats answer: True once the control plane asks the worker to drain.
    drain_requested: bool = False

    def __post_init__(self) -> None:
        self._work = asyncio.Event()
        self._ended_event = asyncio.Event()

    # -- test helpers ----------------------------------------------------------------
    def submit(self, assignment: Assignment) -> None:
        self.assignments[assignment.job.id] = assignment
        self.queue.append(assignment.job)
        self._work.set()

    async def wait_ended(self, job_ids: list[int], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(j in self.ended for j in job_ids):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"jobs not ended in time: {set(job_ids) - set(self.ended)}"
            self._ended_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended_event.wait(), remaining)

    def names(self, job_id: int) -> list[str]:
        return [name for name, jid in self.calls if jid == job_id]

    # -- WorkerBackend ---------------------------------------------------------------
    async def acquire(
        self,
        *,
        worker_id: str,
        pool: str,
        limit: int,
        free_now: Callable[[], int] | None = None,
    ) -> list[Job]:
        taken, self.queue = self.queue[:limit], self.queue[limit:]
        for job in taken:
            self.held.add(job.id)
            self.calls.append(("acquire", job.id))
        self.max_concurrent_seen = max(self.max_concurrent_seen, len(self.held))
        return taken

    async def wait_for_work(self, timeout: float) -> None:
        if not self.queue:
            self._work.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._work.wait(), timeout)

    async def prepare(self, job: Job) -> Assignment:
        self.calls.append(("prepare", job.id))
        if self.prepare_gate is not None:
            await self.prepare_gate.wait()
        if job.id in self.prepare_errors:
            raise self.prepare_errors[job.id]
        try:
            return self.assignments[job.id]
        except KeyError:
            raise NotFound(f"no assignment for job {job.id}") from None

    async def package_path(self, sha256: str) -> Path:
        self.package_fetches += 1
        return self.packages[sha256]

    async def payload_path(self, ref: PayloadRef) -> Path:
        return self.payloads[ref.blob_key]

    def log_path(self, job_id: int) -> Path:
        return self.root / "logs" / f"{job_id}.log"

    async def log_closed(self, job_id: int) -> None:
        self.calls.append(("log_closed", job_id))

    async def set_running(
        self, job_id: int, *, worker_id: str, pid: int | None, started_at: datetime | None = None
    ) -> bool:
        self.calls.append(("set_running", job_id))
        if not self.allow_running:
            return False
        self.running[job_id] = pid
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
        self.calls.append(("end", job_id))
        assert job_id not in self.ended, "a job is reported ended once"
        self.ended[job_id] = Ended(status, exit_code, reason)
        self.held.discard(job_id)
        self._ended_event.set()
        if self.on_end is not None:
            self.on_end(job_id)

    async def renew(self, *, worker_id: str, job_ids: list[int]) -> dict[int, bool]:
        self.calls.append(("renew", None))
        return {
            j: j in self.abort_requested
            for j in job_ids
            if j not in self.leases_lost and j in self.held
        }

    async def store_output(self, job_id: int, name: str, path: Path) -> None:
        self.calls.append(("store_output", job_id))
        self.outputs.setdefault(job_id, {})[name] = path.read_bytes()

    async def heartbeat(self, *, worker_id: str, running: int, draining: bool) -> bool:
        self.heartbeats.append((running, draining))
        return self.drain_requested

    def forget(self, job_id: int) -> None:
        self.forgotten.append(job_id)


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
