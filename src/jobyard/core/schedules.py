"""Schedules: what they are, how they are checked, and when (and whether) they fire.

Pure code: the store calls :func:`plan_firing` inside the transaction that fires a
schedule, and the engine warms a :class:`FiringPlanner` cache before fire times so that
transaction does no cron arithmetic on the hot path.

Misfires follow Quartz's model: a firing that is found more than ``grace`` after its
nominal time (the server was down, or paused by load) is *missed*. Missed firings are
folded into one catch-up job (``fire_once``, the default) or dropped (``skip``); either
way the schedule then continues with its first fire time after now. A firing found
within the grace fires normally, only late.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from jobyard.core.cron import CronExpression
from jobyard.core.errors import InvalidInput
from jobyard.core.validation import check_macros
from jobyard.core.zones import parse_zone

#: Longest interval accepted: one (leap) year.
MAX_INTERVAL_MINUTES = 366 * 24 * 60
#: Most fire times one planning step walks (seconds-level schedules after a long outage).
MAX_STEPS = 1000
_NAME_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_EVERY_RE = re.compile(r"^\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m(?:in)?)?\s*$", re.IGNORECASE)


class MisfirePolicy(StrEnum):
    """What to do with firings missed by more than the grace period."""

    FIRE_ONCE = "fire_once"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """The writable fields of a schedule. Exactly one of ``cron`` and ``interval_minutes``."""

    cron: str | None = None
    interval_minutes: int | None = None
    start_at: datetime | None = None  # interval anchor (default: creation, whole minute)
    timezone: str = "UTC"
    misfire_policy: MisfirePolicy = MisfirePolicy.FIRE_ONCE
    paused: bool = False
    name: str | None = None  # default: the expression, or "every 1h30m"
    macros: dict[str, str] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A stored schedule of a jobconfig (fields in ``schedules`` column order)."""

    id: int
    jobconfig_id: int
    name: str
    cron: str | None
    interval_minutes: int | None
    start_at: datetime | None
    timezone: str
    misfire_policy: MisfirePolicy
    paused: bool
    macros: dict[str, str]
    description: str
    next_fire_at: datetime | None  # None: paused, or no fire time left (cron years)
    last_fire_at: datetime | None
    last_result: str | None
    version: int
    created_at: datetime
    updated_at: datetime

    @property
    def kind(self) -> str:
        """``cron`` or ``interval``."""
        return "cron" if self.cron is not None else "interval"


@dataclass(frozen=True, slots=True)
class DueSchedule:
    """What firing needs of a schedule (a narrow read of the hot path: no JSON, no text)."""

    id: int
    jobconfig_id: int
    cron: str | None
    interval_minutes: int | None
    start_at: datetime | None
    timezone: str
    misfire_policy: MisfirePolicy
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    version: int


#: Either record: planning reads only the fields the two share.
Timed = Schedule | DueSchedule


@dataclass(frozen=True, slots=True)
class FiringPlan:
    """What one firing step does: jobs to create (nominal times) and the next fire time."""

    fire_at: list[datetime]
    next_fire_at: datetime | None
    missed: int = 0  # firings folded (fire_once) or dropped (skip)
    result: str = ""


@dataclass(frozen=True, slots=True)
class FiringRound:
    """What one call of :meth:`SchedulesMixin.schedules_fire_due` did."""

    schedules: int  # due schedules handled (fired, skipped or caught up)
    jobs: int  # jobs created
    queued: int  # of which queued at once
    pools: frozenset[str]  # pools that got queued jobs
    started_at: datetime  # the transaction's clock (the jobs' created_at)
    lateness: list[float]  # seconds from nominal fire time to creation, per on-time job
    missed: int = 0  # schedules whose missed firings were caught up or skipped


def format_every(minutes: int) -> str:
    """``90`` -> ``"1h30m"``; ``60`` -> ``"1h"``; ``5`` -> ``"5m"``."""
    hours, mins = divmod(minutes, 60)
    return (f"{hours}h" if hours else "") + (f"{mins}m" if mins or not hours else "")


def parse_every(text: str) -> int:
    """``"1h30m"``, ``"90m"``, ``"2h"`` -> minutes (the CLI and YAML spelling)."""
    match = _EVERY_RE.match(text)
    if not text.strip() or match is None or not (match.group(1) or match.group(2)):
        raise InvalidInput(
            f"invalid interval {text!r}: write hours and/or minutes, e.g. '15m', '2h', '1h30m'",
            {"field": "every"},
        )
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def check_interval(minutes: int) -> None:
    """1 minute .. 1 year."""
    if not 1 <= minutes <= MAX_INTERVAL_MINUTES:
        raise InvalidInput(
            f"invalid interval of {minutes} minutes: the smallest is 1 minute and the "
            f"largest {MAX_INTERVAL_MINUTES} minutes (366 days)",
            {"field": "every"},
        )


@functools.lru_cache(maxsize=4096)
def parse_cron(expr: str) -> CronExpression:
    """Parse (and cache) a cron expression; ``CronError`` names the field and problem."""
    return CronExpression.parse(expr)


def validate(spec: ScheduleSpec, *, allow_seconds: bool) -> ScheduleSpec:
    """Check a spec and return it normalised (default name, cron as written but stripped).

    Raises ``InvalidInput`` (422) saying what to fix: both or neither of cron and
    interval, a bad expression (field and problem), seconds-level cron without the
    server setting, a bad zone, interval, name, policy or macro.
    """
    if (spec.cron is None) == (spec.interval_minutes is None):
        raise InvalidInput(
            "give exactly one of 'cron' (a Quartz expression) and 'every' (an interval)",
            {"field": "cron"},
        )
    parse_zone(spec.timezone)
    cron = spec.cron
    name = spec.name
    if cron is not None:
        cron = " ".join(cron.split())
        expression = parse_cron(cron)
        if expression.fires_more_often_than_once_a_minute and not allow_seconds:
            raise InvalidInput(
                f"cron {cron!r} fires more often than once a minute (seconds field "
                f"{cron.split()[0]!r}): use a single second such as '0', or turn on the "
                "server setting scheduler.allow_seconds",
                {"field": "cron"},
            )
    elif spec.interval_minutes is not None:  # exactly one of the two (checked above)
        check_interval(spec.interval_minutes)
    start_at = spec.start_at
    if start_at is not None:
        if start_at.tzinfo is None:  # a wall time in the schedule's zone
            start_at = start_at.replace(tzinfo=parse_zone(spec.timezone))
        last_year = datetime.now(UTC).year + 100
        try:
            year = start_at.astimezone(UTC).year
        except OverflowError:
            year = 0
        if not 1970 <= year <= last_year:
            raise InvalidInput(
                f"start_at {start_at.isoformat()} is out of range: give a time between "
                f"1970 and {last_year}",
                {"field": "start_at"},
            )
    if name is None or not name.strip():
        name = default_name(cron, spec.interval_minutes)
    name = name.strip()
    if not _NAME_RE.match(name):
        raise InvalidInput(
            "invalid schedule name: 1-128 characters without control characters",
            {"field": "name"},
        )
    try:
        policy = MisfirePolicy(spec.misfire_policy)
    except ValueError:
        raise InvalidInput(
            f"invalid misfire_policy {spec.misfire_policy!r}: use 'fire_once' or 'skip'",
            {"field": "misfire_policy"},
        ) from None
    check_macros(spec.macros)
    if len(spec.description) > 2000:
        raise InvalidInput("description is longer than 2000 characters", {"field": "description"})
    return ScheduleSpec(
        cron=cron,
        interval_minutes=spec.interval_minutes,
        start_at=start_at.astimezone(UTC) if start_at is not None else None,
        timezone=spec.timezone,
        misfire_policy=policy,
        paused=spec.paused,
        name=name,
        macros=dict(spec.macros),
        description=spec.description,
    )


def default_name(cron: str | None, interval_minutes: int | None) -> str:
    """The name a schedule gets when none is given: its expression or ``every 1h30m``."""
    if cron is not None:
        return " ".join(cron.split())
    if interval_minutes is None:
        raise InvalidInput(
            "give exactly one of 'cron' (a Quartz expression) and 'every' (an interval)",
            {"field": "cron"},
        )
    return f"every {format_every(interval_minutes)}"


def default_anchor(now: datetime) -> datetime:
    """Where an interval starts when no ``start_at`` is given: now, on the whole minute."""
    return now.astimezone(UTC).replace(second=0, microsecond=0)


def next_after(
    cron: str | None,
    interval_minutes: int | None,
    anchor: datetime | None,
    timezone: str,
    after: datetime,
) -> datetime | None:
    """The first fire time strictly after ``after`` (UTC), or None when there is none."""
    if cron is not None:
        found = parse_cron(cron).next_after(after, _zone(timezone))
        return found.astimezone(UTC) if found is not None else None
    if interval_minutes is None or anchor is None:
        raise ValueError("an interval schedule needs its interval and its anchor (start_at)")
    if after < anchor:
        return anchor
    period = timedelta(minutes=interval_minutes)
    steps = (after - anchor) // period + 1
    return anchor + steps * period


def schedule_next_after(schedule: Timed, after: datetime) -> datetime | None:
    """:func:`next_after` for a stored schedule."""
    return next_after(
        schedule.cron, schedule.interval_minutes, schedule.start_at, schedule.timezone, after
    )


def plan_firing(
    schedule: Timed, now: datetime, grace: timedelta, following: datetime | None = None
) -> FiringPlan:
    """What to do for a due schedule (``next_fire_at <= now``) at ``now``.

    ``following`` is the precomputed fire time after ``next_fire_at`` (a cache hit),
    or None to compute it. Missed firings (older than ``grace``) follow the policy; a
    schedule found on time fires every fire time up to now (several only for
    seconds-level cron found a little late).
    """
    first = schedule.next_fire_at
    if first is None or first > now:
        raise ValueError(f"schedule {schedule.id} is not due at {now.isoformat()}")
    if now - first > grace:
        missed = 1
        last = first
        t = schedule_next_after(schedule, first)
        while t is not None and t <= now and missed < MAX_STEPS:
            missed += 1
            last = t
            t = schedule_next_after(schedule, t)
        upcoming = t if t is not None and t > now else schedule_next_after(schedule, now)
        more = "+" if missed >= MAX_STEPS else ""
        span = _span(first, last)
        if schedule.misfire_policy is MisfirePolicy.SKIP:
            result = f"skipped {missed}{more} missed firing(s) {span} (misfire policy skip)"
            return FiringPlan([], upcoming, missed, result)
        result = f"one catch-up job for {missed}{more} missed firing(s) {span}"
        return FiringPlan([last], upcoming, missed, result)
    fires = [first]
    t = following if following is not None else schedule_next_after(schedule, first)
    while t is not None and t <= now and len(fires) < MAX_STEPS:
        fires.append(t)
        t = schedule_next_after(schedule, t)
    if t is not None and t <= now:
        t = schedule_next_after(schedule, now)
    return FiringPlan(fires, t, 0, "fired")


def _span(first: datetime, last: datetime) -> str:
    if first == last:
        return f"at {first.isoformat()}"
    return f"from {first.isoformat()} to {last.isoformat()}"


def _zone(name: str) -> ZoneInfo:
    return parse_zone(name)


class FiringPlanner:
    """Plans firings, with the expensive part (the fire time after the next) precomputed.

    The engine calls :meth:`warm` with schedules due soon, between firings; the store
    calls :meth:`plan` inside the firing transaction. A cache entry is keyed by the
    schedule's id, version and next fire time, so a schedule changed in between is
    simply computed afresh.
    """

    def __init__(self, grace: timedelta) -> None:
        self.grace = grace
        self._following: dict[tuple[int, int, datetime], datetime | None] = {}

    def warm(self, schedules: list[Schedule] | list[DueSchedule]) -> int:
        """Precompute the fire time after each schedule's next one; returns how many."""
        done = 0
        for s in schedules:
            if s.next_fire_at is None:
                continue
            key = (s.id, s.version, s.next_fire_at)
            if key not in self._following:
                self._following[key] = schedule_next_after(s, s.next_fire_at)
                done += 1
        return done

    def plan(self, schedule: Timed, now: datetime) -> FiringPlan:
        """:func:`plan_firing`, using (and dropping) the cached following fire time."""
        if schedule.next_fire_at is None:
            raise ValueError(f"schedule {schedule.id} has no next fire time to plan")
        following = self._following.pop(
            (schedule.id, schedule.version, schedule.next_fire_at), None
        )
        return plan_firing(schedule, now, self.grace, following)

    def forget_before(self, when: datetime) -> None:
        """Drop entries for fire times before ``when`` (schedules changed or deleted)."""
        stale = [k for k in self._following if k[2] < when]
        for key in stale:
            del self._following[key]
