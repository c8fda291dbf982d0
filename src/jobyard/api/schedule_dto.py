"""Request and response bodies of schedules (``/api/v1/jobconfigs/{id}/schedules``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from jobyard.api.dto import MacroMap, Text, _In
from jobyard.core.errors import InvalidInput
from jobyard.core.schedules import Schedule, ScheduleSpec, parse_every

CronText = Annotated[str, StringConstraints(min_length=1, max_length=400)]
ZoneText = Annotated[str, StringConstraints(min_length=1, max_length=64)]
NameText = Annotated[str, StringConstraints(max_length=128)]
Minutes = Annotated[int, Field(ge=1, le=366 * 24 * 60)]


class Every(_In):
    """An interval: hours and/or minutes (at least one minute in total)."""

    hours: Annotated[int, Field(ge=0, le=366 * 24)] = 0
    minutes: Annotated[int, Field(ge=0, le=366 * 24 * 60)] = 0


EveryIn = Every | Annotated[str, StringConstraints(min_length=1, max_length=32)]


def every_minutes(every: EveryIn) -> int:
    """Minutes of an ``every`` given as an object or as text such as ``"1h30m"``."""
    if isinstance(every, str):
        return parse_every(every)
    return every.hours * 60 + every.minutes


class _Timing(_In):
    def timing(self) -> dict[str, Any]:
        """``cron`` / ``every`` / ``interval_minutes`` as the spec's two fields."""
        given = self.model_dump(exclude_unset=True)
        every = getattr(self, "every", None)
        minutes = given.get("interval_minutes")
        if every is not None:
            if minutes is not None:
                raise InvalidInput(
                    "give 'every' or 'interval_minutes', not both", {"field": "every"}
                )
            minutes = every_minutes(every)
        out: dict[str, Any] = {}
        if "cron" in given:
            out["cron"] = given["cron"]
        if every is not None or "interval_minutes" in given:
            out["interval_minutes"] = minutes
        return out


class ScheduleIn(_Timing):
    """Body of create (POST) and replace (PUT): a cron expression or an interval."""

    cron: CronText | None = Field(
        default=None,
        description="Quartz cron: 'sec min hour day-of-month month day-of-week [year]'.",
    )
    every: EveryIn | None = Field(
        default=None, description='Interval: {"hours": 1, "minutes": 30} or "1h30m".'
    )
    interval_minutes: Minutes | None = Field(default=None, description="Interval in minutes.")
    start_at: datetime | None = Field(
        default=None,
        description="Interval anchor (default: creation, whole minute); for cron, not before. "
        "Without an offset it is a wall time in 'timezone'.",
    )
    timezone: ZoneText = Field(default="UTC", description="IANA zone of the cron fields.")
    misfire_policy: Literal["fire_once", "skip"] = Field(
        default="fire_once", description="Firings missed while down: one catch-up job, or none."
    )
    paused: bool = False
    name: NameText | None = Field(default=None, description="Default: the expression.")
    macros: MacroMap = Field(default={}, description="Job-level macros of its jobs.")
    description: Text = ""

    def spec(self) -> ScheduleSpec:
        """The domain spec."""
        timing = {"cron": None, "interval_minutes": None, **self.timing()}
        return ScheduleSpec(
            **timing,
            start_at=self.start_at,
            timezone=self.timezone,
            misfire_policy=self.misfire_policy,  # type: ignore[arg-type]
            paused=self.paused,
            name=self.name,
            macros=dict(self.macros),
            description=self.description,
        )


class SchedulePatch(_Timing):
    """Body of PATCH: only the given fields change (cron on an interval switches kind)."""

    cron: CronText | None = None
    every: EveryIn | None = None
    interval_minutes: Minutes | None = None
    start_at: datetime | None = None
    timezone: ZoneText | None = None
    misfire_policy: Literal["fire_once", "skip"] | None = None
    paused: bool | None = None
    name: NameText | None = None
    macros: MacroMap | None = None
    description: Text | None = None

    def changes(self) -> dict[str, Any]:
        """The given fields, as spec field names."""
        given = self.model_dump(exclude_unset=True)
        given.pop("every", None)
        given.update(self.timing())
        return given


class EveryOut(BaseModel):
    """An interval split into hours and minutes."""

    hours: int
    minutes: int


class ScheduleOut(BaseModel):
    """A schedule of a jobconfig."""

    id: int
    jobconfig_id: int
    name: str
    kind: Literal["cron", "interval"]
    cron: str | None
    #: Derived from the record's ``interval_minutes`` (see :meth:`_split_interval`).
    every: EveryOut | None = Field(validation_alias=AliasChoices("every", "interval_minutes"))
    interval_minutes: int | None
    start_at: datetime | None
    timezone: str
    misfire_policy: str
    paused: bool
    macros: dict[str, str]
    description: str
    next_fire_at: datetime | None = Field(description="UTC; null when paused or exhausted.")
    next_fire_at_local: datetime | None = Field(
        description="The same, in 'timezone'.",
        # Derived from the record's ``next_fire_at`` (see :meth:`_in_zone`).
        validation_alias=AliasChoices("next_fire_at_local", "next_fire_at"),
    )
    last_fire_at: datetime | None
    last_result: str | None = Field(description="What the last firing did, and when.")
    version: int
    created_at: datetime
    updated_at: datetime

    @field_validator("every", mode="before")
    @classmethod
    def _split_interval(cls, value: Any) -> Any:
        """The record's ``interval_minutes`` as hours and minutes."""
        if isinstance(value, int):
            return EveryOut(hours=value // 60, minutes=value % 60)
        return value

    @field_validator("next_fire_at_local")
    @classmethod
    def _in_zone(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        """The next fire time in the schedule's own zone (``timezone`` is validated first)."""
        from jobyard.core.zones import parse_zone

        return value.astimezone(parse_zone(info.data["timezone"])) if value else None

    @classmethod
    def of(cls, s: Schedule) -> ScheduleOut:
        """Build from the domain record."""
        return cls.model_validate(s, from_attributes=True)


class ScheduleList(BaseModel):
    """The schedules of a jobconfig."""

    items: list[ScheduleOut]
