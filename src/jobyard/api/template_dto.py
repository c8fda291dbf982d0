"""Request and response bodies of templates (``/api/v1/templates``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from jobyard.api.dto import (
    LABELS_HELP,
    RETRIES_HELP,
    RETRY_BACKOFF_HELP,
    RETRY_DELAY_HELP,
    RETRY_ON_HELP,
    WARNINGS_HELP,
    ExitCode,
    Id,
    JobConfigOut,
    Labels,
    MacroMap,
    NoticeOut,
    Parameters,
    RetryBackoff,
    RetryCount,
    RetryDelay,
    RetryOn,
    ShortText,
    Text,
    _In,
)
from jobyard.api.schedule_dto import CronText, Minutes, NameText, ZoneText
from jobyard.core.models import JobConfigSpec
from jobyard.core.schedules import MisfirePolicy, ScheduleSpec
from jobyard.core.templates import CloneResult, Template, TemplateSpec
from jobyard.service.template_transfer import Bundle, BundleJobConfig

Command = Annotated[list[Text], Field(min_length=1, max_length=1000)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]


class TemplateIn(_In):
    """Body of create (POST) and replace (PUT) of a template."""

    name: ShortText
    package_id: Id | None = Field(default=None, description="The package its jobconfigs run.")
    entrypoint: ShortText | None = Field(default=None, description="An entry point of it.")
    command: Command | None = Field(default=None, description="Or a command (in the package).")
    description: Text = ""
    labels: Labels = Field(
        default_factory=dict,
        description=LABELS_HELP + " Applies to its jobconfigs that require none of their own.",
    )
    retries: RetryCount = 0
    retry_delay_seconds: RetryDelay = 30.0
    retry_backoff: RetryBackoff = 2.0
    retry_on: RetryOn = ["FAILED"]

    def spec(self) -> TemplateSpec:
        """The domain spec."""
        return TemplateSpec(**self.model_dump())


class TemplatePatch(_In):
    """Body of PATCH: only the given fields change."""

    name: ShortText | None = None
    package_id: Id | None = None
    entrypoint: ShortText | None = None
    command: Command | None = None
    description: Text | None = None
    labels: Labels | None = None
    retries: RetryCount | None = None
    retry_delay_seconds: RetryDelay | None = None
    retry_backoff: RetryBackoff | None = None
    retry_on: RetryOn | None = None


class TemplateOut(BaseModel):
    """A template. Its macros are under ``/api/v1/templates/{id}/macros``."""

    id: int
    name: str
    description: str
    package_id: int | None
    entrypoint: str | None
    command: list[str] | None
    owner: str | None = Field(description="Who created it.")
    created_at: datetime
    updated_at: datetime
    definition_changed_by: str | None = Field(
        default=None,
        description="Who last changed what its jobconfigs run (package, entry point, "
        "command, plain macros): jobs of its jobconfigs may do no more than they may.",
    )
    definition_changed_at: datetime | None = Field(default=None, description="When.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Worker labels the jobs of its jobconfigs require when they require none.",
    )
    retries: int = Field(
        default=0, description="Retry policy its jobconfigs with retries 0 take. " + RETRIES_HELP
    )
    retry_delay_seconds: float = Field(default=30.0, description=RETRY_DELAY_HELP)
    retry_backoff: float = Field(default=2.0, description=RETRY_BACKOFF_HELP)
    retry_on: list[str] = Field(default_factory=lambda: ["FAILED"], description=RETRY_ON_HELP)
    retry_since: datetime | None = Field(
        default=None,
        description="When retries last went above 0: jobs that ended before are not retried.",
    )

    @classmethod
    def of(cls, record: Template) -> TemplateOut:
        """Build from the domain record (same field names)."""
        return cls.model_validate(record, from_attributes=True)


class TemplatePage(BaseModel):
    """A page of templates."""

    items: list[TemplateOut]
    next_cursor: str | None


class TemplateJobConfigs(BaseModel):
    """The jobconfigs that name a template."""

    items: list[JobConfigOut]


class CloneIn(_In):
    """Body of ``POST /templates/{id}/clone``."""

    name: ShortText = Field(description="Name of the copy.")
    with_jobconfigs: bool = Field(default=False, description="Copy its jobconfigs too.")
    jobconfig_prefix: ShortText | None = Field(
        default=None,
        description="Prefix of the copied jobconfigs' names (default: '<name>.').",
    )


class CloneOut(BaseModel):
    """What a clone made."""

    template: TemplateOut
    jobconfigs: list[JobConfigOut]
    secure_macros_skipped: dict[str, list[str]] = Field(
        description="Secure macros not copied (set them again on the copy), by object."
    )
    warnings: list[NoticeOut] = Field(default_factory=list, description=WARNINGS_HELP)

    @classmethod
    def of(cls, result: CloneResult) -> CloneOut:
        """Build from the domain record."""
        return cls.model_validate(result, from_attributes=True)


# -- export / import ------------------------------------------------------------------


class PackageRef(_In):
    """A package by content: it must be uploaded on the importing server."""

    sha256: Sha256
    filename: str | None = None


class ScheduleDoc(_In):
    """A schedule of an exported jobconfig."""

    name: NameText
    cron: CronText | None = None
    interval_minutes: Minutes | None = None
    start_at: datetime | None = None
    timezone: ZoneText = "UTC"
    misfire_policy: Literal["fire_once", "skip"] = "fire_once"
    paused: bool = False
    macros: MacroMap = {}
    description: Text = ""

    def spec(self) -> ScheduleSpec:
        """The domain spec."""
        values = self.model_dump()
        values["misfire_policy"] = MisfirePolicy(values["misfire_policy"])
        return ScheduleSpec(**values)


class JobConfigDoc(_In):
    """A jobconfig of an exported template (no ids: package by sha256, template implied)."""

    name: ShortText
    package: PackageRef | None = None
    entrypoint: ShortText | None = None
    command: Command | None = None
    macros: MacroMap = {}
    parameters: Parameters = []
    max_concurrent: Annotated[int, Field(ge=0, le=100_000)] = 1
    timeout: Annotated[int, Field(ge=0, le=5_256_000)] = 0
    success_exit_codes: Annotated[list[ExitCode], Field(min_length=1, max_length=256)] = [0]
    enabled: bool = True
    description: Text = ""
    pool: ShortText = "default"
    labels: Labels = Field(default_factory=dict)
    schedules: list[ScheduleDoc] | None = Field(
        default=None, description="Exactly these schedules; absent: leave them alone."
    )

    def item(self) -> BundleJobConfig:
        """The domain form."""
        values = self.model_dump(exclude={"package", "schedules"})
        values["parameters"] = sorted(set(values["parameters"]))  # as the server keeps them
        return BundleJobConfig(
            spec=JobConfigSpec(**values),
            package_sha256=self.package.sha256 if self.package else None,
            schedules=None if self.schedules is None else [s.spec() for s in self.schedules],
        )


class TemplateDoc(_In):
    """The template of an export."""

    name: ShortText
    description: Text = ""
    package: PackageRef | None = None
    entrypoint: ShortText | None = None
    command: Command | None = None
    labels: Labels = Field(default_factory=dict)


class TemplateExport(_In):
    """``GET /templates/{id}/export``, the body ``POST /templates/import`` takes."""

    format: Literal["jobyard.template/1"] = "jobyard.template/1"
    template: TemplateDoc
    jobconfigs: Annotated[list[JobConfigDoc], Field(max_length=10_000)] = []

    def bundle(self) -> Bundle:
        """The domain form."""
        t = self.template
        return Bundle(
            template=TemplateSpec(
                name=t.name,
                entrypoint=t.entrypoint,
                command=t.command,
                description=t.description,
                labels=dict(t.labels),
            ),
            package_sha256=t.package.sha256 if t.package else None,
            jobconfigs=[j.item() for j in self.jobconfigs],
        )


class ImportedSchedule(BaseModel):
    """What an import did to one schedule."""

    name: str
    id: int
    action: Literal["created", "updated", "unchanged", "deleted"]


class ImportedObject(BaseModel):
    """What an import did to the template or a jobconfig."""

    name: str
    id: int
    action: Literal["created", "updated", "unchanged"]
    schedules: list[ImportedSchedule] | None = None


class ImportReport(BaseModel):
    """The answer of ``POST /templates/import``."""

    template: ImportedObject
    jobconfigs: list[ImportedObject]
    warnings: list[NoticeOut] = Field(default_factory=list, description=WARNINGS_HELP)

    @classmethod
    def of(cls, report: dict[str, Any]) -> ImportReport:
        """Build from the service's report."""
        return cls.model_validate(report)
