"""Request and response bodies of the REST API, separate from the domain records."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from fastapi import Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    StringConstraints,
    field_validator,
    model_validator,
)

from jobyard.core.jobs import JobStatus
from jobyard.core.models import Job, JobConfig, JobEvent, JobFile, Notice, Package
from jobyard.core.runplan import EffectiveTimeout, TimeoutSource

MAX_ID = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Text = Annotated[str, StringConstraints(max_length=10_000)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=255)]
MacroMap = dict[Annotated[str, StringConstraints(max_length=128)], Text]
#: A jobconfig's ``parameters``: macro names a caller with only ``execute`` may set.
Parameters = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=128)]],
    Field(
        max_length=200,
        description="Macro names a caller with only execute may set at run time "
        "(editors may set any name).",
    ),
]
ExitCode = Annotated[int, Field(ge=0, le=255)]
LABELS_HELP = (
    "Worker labels its jobs require: only a worker of its pool having every one of "
    "them (same value) runs them. Keys: letters, digits and _ . - /; values: 1 to 100 "
    "letters, digits and _ . - : /. Empty: any worker of the pool."
)
Labels = Annotated[
    dict[
        Annotated[str, StringConstraints(min_length=1, max_length=63)],
        Annotated[str, StringConstraints(min_length=1, max_length=100)],
    ],
    Field(max_length=32, description=LABELS_HELP),
]
#: How the ``cursor`` query parameter of every listing is described.
RETRIES_HELP = (
    "How many new jobs may repeat a job that ended in a status of retry_on (0 = none); "
    "each retry is a new job with retry_of naming the one it repeats."
)
RETRY_DELAY_HELP = "Seconds the first retry waits after the job it repeats ended."
RETRY_BACKOFF_HELP = "Multiplier (>= 1): the n-th retry waits delay * backoff^(n-1)."
RETRY_ON_HELP = (
    "End statuses that are retried: ERROR (the program failed) and/or FAILED (timeout, "
    "lost worker, init error, abort)."
)
CURSOR_HELP = "The next_cursor of the previous page; anything else answers 422 invalid_cursor."


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """Serialise once with pydantic-core and skip FastAPI's re-validation (hot paths).

    The serializer's bytes go out as they are (``model_dump_json`` decodes them to a
    ``str`` that the response encodes again)."""
    content = model.__pydantic_serializer__.to_json(model)
    return Response(content, status_code=status_code, media_type="application/json")


class NoticeOut(BaseModel):
    """Something to know about a successful answer (``warnings``, ``waiting_reason``).

    ``code`` is stable (``pool_unserved``: no live worker serves the pool, so jobs will
    wait QUEUED); ``message`` says what it means and what to do.
    """

    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, record: Notice) -> NoticeOut:
        """Build from the domain record (same field names)."""
        return cls(code=record.code, message=record.message, details=dict(record.details))


WARNINGS_HELP = (
    "Accepted, but worth knowing: e.g. pool_unserved (no live worker serves its pool: its "
    "jobs will wait QUEUED until one registers). Empty when there is nothing to say."
)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    """The error of an error response."""

    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorBody(BaseModel):
    """Every non-2xx answer has this body."""

    error: ErrorDetail


class PackageOut(BaseModel):
    """An uploaded package."""

    id: int
    sha256: str
    filename: str
    size: int
    kind: str
    entrypoints: list[str]
    created_at: datetime

    @field_validator("entrypoints", mode="before")
    @classmethod
    def _entrypoint_names(cls, value: Any) -> Any:
        """The record maps entry-point names to their definitions: only the names, sorted."""
        return sorted(value) if isinstance(value, dict) else value

    @classmethod
    def of(cls, p: Package) -> PackageOut:
        """Build from the domain record."""
        return cls.model_validate(p, from_attributes=True)


class PackagePage(BaseModel):
    """A page of packages."""

    items: list[PackageOut]
    next_cursor: str | None


class _RunTargetIn(_In):
    """What to run and how: shared by jobconfigs and ad-hoc jobs."""

    package_id: Id | None = None
    entrypoint: ShortText | None = None
    command: Annotated[list[Text], Field(min_length=1, max_length=1000)] | None = None
    macros: MacroMap = {}
    timeout: Annotated[int, Field(ge=0, le=5_256_000)] = 0
    success_exit_codes: Annotated[list[ExitCode], Field(min_length=1, max_length=256)] = [0]
    pool: ShortText = "default"


class RetentionIn(_In):
    """A jobconfig's own retention of its ended jobs; null fields: the global settings."""

    max_age_days: Annotated[float, Field(ge=0, le=1_000_000)] | None = Field(
        default=None,
        description="Ended jobs older than this many days are purged (0 = keep forever; "
        "null = retention.max_age_days).",
    )
    max_jobs: Annotated[int, Field(ge=0, le=1_000_000_000)] | None = Field(
        default=None,
        description="Newest ended jobs kept (0 = no limit; null = "
        "retention.max_jobs_per_jobconfig).",
    )


class RetentionOut(BaseModel):
    """A jobconfig's retention overrides (null: the global setting applies)."""

    max_age_days: float | None = None
    max_jobs: int | None = None


RetryCount = Annotated[int, Field(ge=0, le=100, description=RETRIES_HELP)]
RetryDelay = Annotated[float, Field(ge=0, le=31_536_000, description=RETRY_DELAY_HELP)]
RetryBackoff = Annotated[float, Field(ge=1, le=100, description=RETRY_BACKOFF_HELP)]
RetryOn = Annotated[
    list[Literal["ERROR", "FAILED"]], Field(min_length=1, max_length=2, description=RETRY_ON_HELP)
]


class JobConfigIn(_RunTargetIn):
    """Body of create (POST) and replace (PUT) of a jobconfig."""

    name: ShortText
    max_concurrent: Annotated[int, Field(ge=0, le=100_000)] = 1
    enabled: bool = True
    description: Text = ""
    template_id: Id | None = Field(
        default=None, description="Inherit package and entry point/command from this template."
    )
    parameters: Parameters = []
    retention: RetentionIn | None = Field(
        default=None, description="Retention overrides of its ended jobs (null: global)."
    )
    labels: Labels = Field(
        default_factory=dict,
        description=LABELS_HELP + " Empty with a template: the template's labels apply.",
    )
    retries: RetryCount = 0
    retry_delay_seconds: RetryDelay = 30.0
    retry_backoff: RetryBackoff = 2.0
    retry_on: RetryOn = ["FAILED"]


class JobConfigPatch(_In):
    """Body of PATCH: only the given fields change."""

    name: ShortText | None = None
    package_id: Id | None = None
    entrypoint: ShortText | None = None
    command: Annotated[list[Text], Field(min_length=1, max_length=1000)] | None = None
    macros: MacroMap | None = None
    max_concurrent: Annotated[int, Field(ge=0, le=100_000)] | None = None
    timeout: Annotated[int, Field(ge=0, le=5_256_000)] | None = None
    success_exit_codes: Annotated[list[ExitCode], Field(min_length=1, max_length=256)] | None = None
    enabled: bool | None = None
    description: Text | None = None
    pool: ShortText | None = None
    template_id: Id | None = None
    parameters: Parameters | None = None
    retention: RetentionIn | None = Field(
        default=None,
        description="The fields given change (null resets both to the global settings).",
    )
    labels: Labels | None = None
    retries: RetryCount | None = None
    retry_delay_seconds: RetryDelay | None = None
    retry_backoff: RetryBackoff | None = None
    retry_on: RetryOn | None = None


class JobConfigOut(BaseModel):
    """A jobconfig."""

    id: int
    name: str
    description: str
    package_id: int | None
    entrypoint: str | None
    command: list[str] | None
    macros: dict[str, str]
    max_concurrent: int
    timeout: int
    success_exit_codes: list[int]
    enabled: bool
    pool: str
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Worker labels its jobs require (its own; empty: its template's, if any).",
    )
    owner: str | None = Field(description="Who created it; scheduled jobs run as the owner.")
    template_id: int | None = Field(default=None, description="Its template, if any.")
    parameters: list[str] = Field(
        default_factory=list,
        description="Macro names a caller with only execute may set at run time.",
    )
    created_at: datetime
    updated_at: datetime
    definition_changed_by: str | None = Field(
        default=None,
        description="Who last changed what it runs (package, entry point, command, "
        "template, plain macros, parameters, schedule macros): its jobs' SESSION_ID may "
        "do no more than they may.",
    )
    definition_changed_at: datetime | None = Field(default=None, description="When.")
    retention: RetentionOut = Field(
        default_factory=RetentionOut,
        description="Retention overrides of its ended jobs (null fields: the global settings).",
    )
    retries: int = Field(default=0, description=RETRIES_HELP)
    retry_delay_seconds: float = Field(default=30.0, description=RETRY_DELAY_HELP)
    retry_backoff: float = Field(default=2.0, description=RETRY_BACKOFF_HELP)
    retry_on: list[str] = Field(default_factory=lambda: ["FAILED"], description=RETRY_ON_HELP)
    retry_since: datetime | None = Field(
        default=None,
        description="When retries last went above 0: jobs that ended before are not retried.",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _nest_retention(
        cls, data: Any, handler: ModelWrapValidatorHandler[JobConfigOut]
    ) -> JobConfigOut:
        """The record keeps its retention overrides flat (``retention_max_age_days``,
        ``retention_max_jobs``); the answer nests them (also inside other answers)."""
        out = handler(data)
        if isinstance(data, JobConfig):
            out.retention = RetentionOut(
                max_age_days=data.retention_max_age_days, max_jobs=data.retention_max_jobs
            )
        return out

    @classmethod
    def of(cls, record: JobConfig) -> Self:
        """Build from the domain record (same field names; retention nested)."""
        return cls.model_validate(record, from_attributes=True)


class JobConfigSaved(JobConfigOut):
    """A jobconfig as created or changed, with what the caller should know about it."""

    warnings: list[NoticeOut] = Field(default_factory=list, description=WARNINGS_HELP)


class JobConfigPage(BaseModel):
    """A page of jobconfigs."""

    items: list[JobConfigOut]
    next_cursor: str | None


class RunIn(_In):
    """Body of ``POST /jobconfigs/{id}/run``."""

    macros: MacroMap = {}
    hold: bool = Field(default=False, description="Create WAITING; release it later.")


class AdhocJobIn(_RunTargetIn):
    """Body of ``POST /jobs``: a job of no jobconfig."""

    hold: bool = False


class EffectiveTimeoutOut(BaseModel):
    """The timeout a job runs under, in minutes, and which setting decided it."""

    minutes: int = Field(description="Minutes from acquisition to stop; 0 = no timeout.")
    source: TimeoutSource = Field(
        description="'jobconfig' (its timeout at submission), 'job' (an ad-hoc job's own), "
        "'entrypoint' (the package manifest's entry point), 'none'."
    )
    entrypoint: str | None = Field(
        default=None, description="The manifest entry point, when source is 'entrypoint'."
    )

    @classmethod
    def of(cls, record: EffectiveTimeout) -> EffectiveTimeoutOut:
        """Build from the domain record (same field names)."""
        return cls.model_validate(record, from_attributes=True)


class JobOut(BaseModel):
    """A job."""

    id: int
    jobconfig_id: int | None
    package_id: int | None
    entrypoint: str | None
    command: list[str] | None
    macros: dict[str, str]
    status: JobStatus
    status_reason: str | None
    exit_code: int | None
    trigger: str
    submitted_by: str | None
    rerun_of: int | None
    worker_id: str | None
    pool: str
    labels: dict[str, str] | None = Field(
        default=None,
        description="Worker labels it requires (copied from its jobconfig or template at "
        "submission; null: none, any worker of its pool runs it).",
    )
    priority: int
    timeout: int
    success_exit_codes: list[int]
    created_at: datetime
    sequenced_at: datetime | None
    queued_at: datetime | None
    acquired_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    abort_requested_at: datetime | None
    schedule_id: int | None = Field(
        default=None, description="The schedule that fired it (trigger 'schedule')."
    )
    scheduled_for: datetime | None = Field(
        default=None, description="The nominal fire time of that firing."
    )
    template_id: int | None = Field(
        default=None, description="Its jobconfig's template when it was created."
    )
    definers: list[str] | None = Field(
        default=None,
        description="Users besides the submitter who decided what it runs (snapshot at "
        "submission): its SESSION_ID may only do what all of them may do.",
    )
    effective_timeout: EffectiveTimeoutOut | None = Field(
        default=None,
        description="The timeout the worker enforces and where it comes from "
        "(GET /api/v1/jobs/{id} only; null elsewhere). `timeout` is the job's own "
        "setting, 0 when its jobconfig sets none.",
    )
    waiting_reason: NoticeOut | None = Field(
        default=None,
        description="Why a QUEUED job is not picked up, when jobyard knows: pool_unserved "
        "(no live worker serves its pool). GET /api/v1/jobs/{id} only; null elsewhere.",
    )
    retry_of: int | None = Field(
        default=None,
        description="The ended job this one retries under its jobconfig's retry policy "
        "(trigger 'retry'). GET /api/v1/jobs/{id} only; null elsewhere.",
    )
    attempt: int | None = Field(
        default=None,
        description="Which retry this is (1 = the first; 0 = not a retry). "
        "GET /api/v1/jobs/{id} only; null elsewhere.",
    )
    retried_by: int | None = Field(
        default=None,
        description="The job submitted to retry this one, once there is one. "
        "GET /api/v1/jobs/{id} only; null elsewhere.",
    )

    @field_validator("definers", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        """Scheduled firings store the definers as an SQL array that may hold NULLs."""
        if isinstance(value, list):
            return sorted({v for v in value if isinstance(v, str)})
        return value

    @classmethod
    def of(cls, record: Job) -> JobOut:
        """Build from the domain record (same field names)."""
        return cls.model_validate(record, from_attributes=True)


class JobPage(BaseModel):
    """A page of jobs."""

    items: list[JobOut]
    next_cursor: str | None


class EventOut(BaseModel):
    """One transition of a job."""

    status: JobStatus
    at: datetime
    actor: str
    reason: str | None

    @classmethod
    def of(cls, record: JobEvent) -> EventOut:
        """Build from the domain record (same field names)."""
        return cls.model_validate(record, from_attributes=True)


class EventList(BaseModel):
    """The transitions of a job, in order."""

    items: list[EventOut]


class FileOut(BaseModel):
    """A payload or output file of a job."""

    name: str
    size: int
    created_at: datetime

    @classmethod
    def of(cls, record: JobFile) -> FileOut:
        """Build from the domain record (same field names)."""
        return cls.model_validate(record, from_attributes=True)


class FileList(BaseModel):
    """Files of a job."""

    items: list[FileOut]


class Health(BaseModel):
    """Liveness answer."""

    status: str
    version: str
