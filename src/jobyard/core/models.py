"""Domain records shared by the store, the engine and the service layer.

Plain frozen dataclasses: cheap to build on the hot path, independent of HTTP DTOs
and of SQL rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from jobyard.core.jobs import JobStatus

T = TypeVar("T")


class Actor(StrEnum):
    """Kinds of actors recorded on job events (the id/name goes after a colon)."""

    USER = "user"
    WORKER = "worker"
    SCHEDULER = "scheduler"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Package:
    """An uploaded, immutable, content-addressed program bundle."""

    id: int
    sha256: str
    filename: str
    size: int
    kind: str  # "zip" | "tar" | "file"
    entrypoints: dict[str, dict[str, Any]]  # name -> {"command": [...], "env": {...}, "timeout"}
    created_at: datetime


@dataclass(frozen=True, slots=True)
class JobConfigSpec:
    """The writable fields of a jobconfig (what create and replace accept)."""

    name: str
    package_id: int | None = None
    entrypoint: str | None = None
    command: list[str] | None = None
    macros: dict[str, str] = field(default_factory=dict)
    max_concurrent: int = 1
    timeout: int = 0  # minutes; 0 = none
    success_exit_codes: list[int] = field(default_factory=lambda: [0])
    enabled: bool = True
    description: str = ""
    pool: str = "default"
    template_id: int | None = None  # inherits package and entry point/command when unset
    #: Macro names a caller with only ``execute`` may set at run time.
    parameters: list[str] = field(default_factory=list)
    #: Retention of its ended jobs; None: the global ``retention`` settings.
    retention_max_age_days: float | None = None
    retention_max_jobs: int | None = None
    #: Retry policy (:mod:`jobyard.core.retries`): how many new jobs may repeat one
    #: that ended in a status of ``retry_on``, and after what delay.
    retries: int = 0
    retry_delay_seconds: float = 30.0
    retry_backoff: float = 2.0
    retry_on: list[str] = field(default_factory=lambda: ["FAILED"])
    #: Worker labels its jobs require (:mod:`jobyard.core.labels`); empty: none of its
    #: own (its template's apply, if any).
    labels: dict[str, str] = field(default_factory=dict)


#: The fields of a jobconfig that decide what its jobs run: whoever changes one of them
#: becomes its definer (``definition_changed_by``), and the jobs' SESSION_ID may do no
#: more than the definer may.
DEFINITION_FIELDS: tuple[str, ...] = (
    "package_id",
    "entrypoint",
    "command",
    "template_id",
    "macros",
    "parameters",
)


@dataclass(frozen=True, slots=True)
class JobConfig:
    """A named definition of what to run."""

    id: int
    name: str
    package_id: int | None
    entrypoint: str | None
    command: list[str] | None
    macros: dict[str, str]
    max_concurrent: int
    timeout: int
    success_exit_codes: list[int]
    enabled: bool
    description: str
    pool: str
    created_at: datetime
    updated_at: datetime
    owner: str | None = None  # who created it; scheduled jobs are submitted as the owner
    template_id: int | None = None  # inherits package, entry point and macros
    parameters: list[str] = field(default_factory=list)  # names settable with ``execute``
    #: Who last changed what it runs (:data:`DEFINITION_FIELDS`, its plain macros,
    #: its schedules' macros), and when. None: nobody known (created internally).
    definition_changed_by: str | None = None
    definition_changed_at: datetime | None = None
    #: Retention overrides (see :class:`JobConfigSpec`); None: the global settings.
    retention_max_age_days: float | None = None
    retention_max_jobs: int | None = None
    #: Retry policy (see :class:`JobConfigSpec`); ``retry_since``: when ``retries`` last
    #: went from 0 to more (only jobs ended since then are retried).
    retries: int = 0
    retry_delay_seconds: float = 30.0
    retry_backoff: float = 2.0
    retry_on: list[str] = field(default_factory=lambda: ["FAILED"])
    retry_since: datetime | None = None
    #: Worker labels its jobs require (see :class:`JobConfigSpec`).
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A row written before the column existed (or by hand) may hold NULL: no parameters.
        if self.parameters is None:
            object.__setattr__(self, "parameters", [])
        if self.labels is None:  # NULL: no labels required
            object.__setattr__(self, "labels", {})
        if self.retry_on is None:  # NULL: the default policy's statuses
            object.__setattr__(self, "retry_on", ["FAILED"])


@dataclass(frozen=True, slots=True)
class NewJob:
    """What the service hands the store to create a job (a snapshot of what to run)."""

    jobconfig_id: int | None
    package_id: int | None
    entrypoint: str | None
    command: list[str] | None
    macros: dict[str, str]
    timeout: int
    success_exit_codes: list[int]
    pool: str = "default"
    priority: int = 0
    trigger: str = "api"
    submitted_by: str | None = None
    rerun_of: int | None = None
    hold: bool = False  # create WAITING instead of SEQUENCED
    #: Users besides the submitter who decided what it runs (see ``Job.definers``).
    definers: tuple[str, ...] = ()
    #: Worker labels it requires (None or empty: any worker of its pool).
    labels: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """One execution of a jobconfig (or an ad-hoc job)."""

    id: int
    jobconfig_id: int | None
    package_id: int | None
    entrypoint: str | None
    command: list[str] | None
    macros: dict[str, str]
    timeout: int
    success_exit_codes: list[int]
    pool: str
    priority: int
    trigger: str
    submitted_by: str | None
    rerun_of: int | None
    status: JobStatus
    status_reason: str | None
    exit_code: int | None
    seq: int | None
    worker_id: str | None
    lease_expires_at: datetime | None
    abort_requested_at: datetime | None
    pid: int | None
    created_at: datetime
    sequenced_at: datetime | None
    queued_at: datetime | None
    acquired_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    schedule_id: int | None = None  # the schedule that fired it (trigger "schedule")
    scheduled_for: datetime | None = None  # the nominal fire time of that firing
    template_id: int | None = None  # its jobconfig's template when it was created
    #: Resolved at initialization: {name: {"level", "secure", "value" (None if secure)}}.
    resolved_macros: dict[str, Any] | None = None
    #: Snapshot at submission of the users who decided what it runs besides its
    #: submitter: its jobconfig's and template's definers, and those of the job whose
    #: SESSION_ID submitted it. Its own SESSION_ID may only do what all of them may do.
    definers: list[str] | None = None
    #: Worker labels it requires, copied from its jobconfig (or template) at submission;
    #: None: any worker of its pool may claim it.
    labels: dict[str, str] | None = None


def repeat_job(
    old: Job,
    *,
    trigger: str,
    submitted_by: str | None,
    definers: tuple[str, ...],
    rerun_of: int | None = None,
) -> NewJob:
    """A new job running what ``old`` ran: its package, entry point or command, run-time
    macros, timeout, success codes, pool and priority (what a rerun and a retry submit)."""
    return NewJob(
        jobconfig_id=old.jobconfig_id,
        package_id=old.package_id,
        entrypoint=old.entrypoint,
        command=old.command,
        macros=dict(old.macros),
        timeout=old.timeout,
        success_exit_codes=list(old.success_exit_codes),
        pool=old.pool,
        priority=old.priority,
        trigger=trigger,
        submitted_by=submitted_by,
        rerun_of=rerun_of,
        definers=definers,
        labels=old.labels,
    )


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One recorded transition of a job."""

    job_id: int
    status: JobStatus
    at: datetime
    actor: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class JobFile:
    """A payload (input) or output file of a job; ``blob_key`` locates its bytes."""

    job_id: int
    kind: str  # "payload" | "output"
    name: str
    size: int
    blob_key: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RunContext:
    """What a worker needs beside the job row to prepare it, read in one go."""

    package: Package | None
    jobconfig_macros: dict[str, str] | None  # None: ad-hoc job, or jobconfig deleted
    payload: list[JobFile]


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Filters of a job listing; ``None`` means any."""

    jobconfig_id: int | None = None
    statuses: tuple[JobStatus, ...] | None = None
    submitted_by: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """A page of a cursor-paginated listing."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A stored (hashed) API token."""

    id: int
    name: str
    role: str
    created_at: datetime
    revoked: bool
    user_id: int | None = None  # None: the bootstrap admin token
    kind: str = "personal"  # admin | personal | access | refresh | session
    expires_at: datetime | None = None
    job_id: int | None = None  # session tokens: valid while this job has not ended
    last_used_at: datetime | None = None  # personal and admin tokens, to within a minute


@dataclass(frozen=True, slots=True)
class Notice:
    """Something a caller should know about an answer that still succeeded.

    A write that is accepted but will not have the effect the caller likely expects
    (a jobconfig in a pool no worker serves) answers 200/201 with a list of these under
    ``warnings``; a job that waits for a reason it cannot see carries one as
    ``waiting_reason``. ``code`` is stable for scripts, ``message`` says what to do.
    """

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker as last seen by heartbeat."""

    id: str
    name: str
    pool: str
    host: str
    pid: int
    slots: int
    kind: str  # "local" | "remote"
    started_at: datetime
    heartbeat_at: datetime
    draining: bool
    home: str | None = None
    #: The jobyard version the worker runs (upgrades mix versions for a while).
    version: str | None = None
    #: ``key -> value`` labels the worker was started with (remote workers' ``--label``).
    labels: dict[str, str] = field(default_factory=dict)
    #: An admin asked it to drain (``POST /api/v1/workers/{id}/drain``); the answer to
    #: its next heartbeat says so, and it then takes no new jobs.
    drain_requested: bool = False
