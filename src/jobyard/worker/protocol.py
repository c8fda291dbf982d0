"""What a worker needs from the control plane, as a protocol.

The local implementation (inside ``jobyard up``) calls the service layer directly; a
remote one (``jobyard worker --server URL``) will speak HTTP. The runner code in
:mod:`jobyard.worker` depends only on this.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from jobyard.core.jobs import JobStatus
from jobyard.core.models import Job


@dataclass(frozen=True, slots=True)
class PayloadRef:
    """A payload file to place in the workspace."""

    name: str
    blob_key: str


@dataclass(frozen=True, slots=True)
class Assignment:
    """Everything needed to run an acquired job, resolved by the control plane."""

    job: Job
    argv: list[str]  # the program and its arguments; never run through a shell
    env: dict[str, str]  # resolved macros (execution macros are added by the worker)
    package_sha256: str | None
    package_kind: str | None  # "zip" | "tar" | "file"
    package_filename: str | None
    payload: list[PayloadRef] = field(default_factory=list)
    timeout_seconds: float | None = None  # INITIALIZING + RUNNING bound
    success_exit_codes: frozenset[int] = frozenset({0})
    template_id: int | None = None
    session_token: str = ""
    secret_values: list[str] = field(default_factory=list)  # masked in logs
    notes: list[str] = field(default_factory=list)  # for the job's log, before it runs


class WorkerBackend(Protocol):
    """Control-plane calls of a worker."""

    async def acquire(
        self,
        *,
        worker_id: str,
        pool: str,
        limit: int,
        free_now: Callable[[], int] | None = None,
    ) -> list[Job]:
        """Claim up to ``limit`` QUEUED jobs (-> INITIALIZING, leased to this worker).

        ``free_now`` tells how many slots are free at any moment: a backend that writes
        the claim a little later may claim that many instead (slots freed meanwhile).
        """
        ...

    async def wait_for_work(self, timeout: float) -> None:
        """Return when new work may be queued, or after ``timeout`` seconds."""
        ...

    async def prepare(self, job: Job) -> Assignment:
        """Resolve what to run; raise a ``JobyardError`` to fail initialization."""
        ...

    async def package_path(self, sha256: str) -> Path:
        """A local file holding the package upload (downloaded if needed)."""
        ...

    async def payload_path(self, ref: PayloadRef) -> Path:
        """A local file holding one payload file (downloaded if needed)."""
        ...

    def log_path(self, job_id: int) -> str | Path:
        """Local file the job's log is written to."""
        ...

    async def log_closed(self, job_id: int) -> None:
        """Called once the log file is complete (a remote worker uploads it here)."""
        ...

    def set_running(
        self,
        job_id: int,
        *,
        worker_id: str,
        pid: int | None,
        started_at: datetime | None = None,
    ) -> Awaitable[bool]:
        """INITIALIZING -> RUNNING (the program started at ``started_at``, default now);
        False if the job is no longer ours (do not run it). A coroutine function, or a
        function returning a future (then waiting for the answer costs no task)."""
        ...

    async def end(
        self,
        job_id: int,
        *,
        worker_id: str,
        status: JobStatus,
        exit_code: int | None,
        reason: str | None,
    ) -> None:
        """Report the end status (a lost race is ignored: the job already ended)."""
        ...

    async def renew(self, *, worker_id: str, job_ids: list[int]) -> dict[int, bool]:
        """Renew leases; ``{job_id: abort_requested}`` for jobs still held."""
        ...

    async def store_output(self, job_id: int, name: str, path: Path) -> None:
        """Keep one file of LOCAL_JOB_OUT_DIR as an output file of the job."""
        ...

    async def heartbeat(self, *, worker_id: str, running: int, draining: bool) -> bool:
        """Report worker health; True when the control plane asks this worker to drain
        (finish its running jobs, claim no new ones)."""
        ...

    def forget(self, job_id: int) -> None:
        """The pool is done with the job: whatever was kept for it may go.

        Called once per acquired job, when its run is over, whether its end was
        reported or not (a job dropped after a lost lease reports nothing).
        """
        ...
