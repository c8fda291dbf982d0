"""Schedules in apply files: their parsed form, how they compare, and how they are exported.

A jobconfig of an apply file may list ``schedules``::

    schedules:
      - cron: "0 0 2 * * ?"          # Quartz: sec min hour day-of-month month day-of-week
        timezone: Europe/Berlin      # default UTC
      - every: 1h30m                 # or {hours: 1, minutes: 30}
        start_at: "2026-01-01T00:15:00"   # interval anchor; naive = wall time in timezone
        misfire_policy: skip         # default fire_once
        name: half-hourly            # default: the expression, or "every 1h30m"
        paused: false
        macros: {MODE: quick}
        description: "..."

Schedules are matched to the server's by name, so the name must be unique within a
jobconfig. Checking the expression, the zone and the interval is left to the server:
its 422 message is what the user sees. Pure code, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from jobyard.core.errors import InvalidInput
from jobyard.core.schedules import format_every, parse_every
from jobyard.core.zones import parse_zone

DEFAULT_TIMEZONE = "UTC"
DEFAULT_MISFIRE = "fire_once"
#: Fields a file may set besides ``cron`` / ``every``, with their defaults.
SCHEDULE_DEFAULTS: dict[str, Any] = {
    "timezone": DEFAULT_TIMEZONE,
    "misfire_policy": DEFAULT_MISFIRE,
    "paused": False,
    "macros": {},
    "description": "",
}
#: The order the plan shows changes and the export writes fields.
SCHEDULE_FIELDS: tuple[str, ...] = ("cron", "every", "start_at", *SCHEDULE_DEFAULTS)


@dataclass(frozen=True, slots=True)
class ScheduleDecl:
    """A schedule of a file, defaults filled in. Exactly one of ``cron``, ``interval_minutes``.

    ``start_at`` is the text of the file (``None``: not given, so an interval keeps the
    anchor the server chose, and a cron has no "not before").
    """

    name: str
    cron: str | None = None
    interval_minutes: int | None = None
    start_at: str | None = None
    timezone: str = DEFAULT_TIMEZONE
    misfire_policy: str = DEFAULT_MISFIRE
    paused: bool = False
    macros: dict[str, str] = field(default_factory=dict)
    description: str = ""
    line: int | None = None

    def body(self) -> dict[str, Any]:
        """The request body that creates it (``POST .../schedules``)."""
        out: dict[str, Any] = {"name": self.name}
        if self.cron is not None:
            out["cron"] = self.cron
        else:
            out["interval_minutes"] = self.interval_minutes
        if self.start_at is not None:
            out["start_at"] = self.start_at
        out.update(
            timezone=self.timezone,
            misfire_policy=self.misfire_policy,
            paused=self.paused,
            macros=dict(self.macros),
            description=self.description,
        )
        return out


def normalise_cron(expr: str) -> str:
    """The expression as the server stores it: runs of blanks become one space."""
    return " ".join(expr.split())


def default_name(cron: str | None, interval_minutes: int | None) -> str:
    """The name the server gives a schedule without one: the expression, or ``every 1h30m``."""
    if cron is not None:
        return normalise_cron(cron)
    return f"every {format_every(int(interval_minutes or 0))}"


def every_minutes(value: Any) -> int:
    """``"1h30m"``, ``{hours: 1, minutes: 30}`` or a number of minutes → minutes.

    Raises ``ValueError`` with what to write instead; the bounds are the server's to check.
    """
    if isinstance(value, bool):
        raise ValueError(_EVERY_HINT)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return parse_every(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in value if k not in ("hours", "minutes"))
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)} in `every`: {_EVERY_HINT}")
        parts = [value.get("hours", 0), value.get("minutes", 0)]
        if not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in parts):
            raise ValueError(f"hours and minutes are whole numbers ≥ 0: {_EVERY_HINT}")
        return int(parts[0]) * 60 + int(parts[1])
    raise ValueError(_EVERY_HINT)


_EVERY_HINT = "write an interval such as '15m', '2h', '1h30m' or {hours: 1, minutes: 30}"


def start_at_text(value: Any) -> Any:
    """``start_at`` as ISO 8601 text; YAML turns unquoted date-times into ``datetime``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day).isoformat()
    if isinstance(value, str):
        text = value.strip()
        try:
            datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"start_at {value!r} is not an ISO 8601 date-time, e.g. 2026-01-01T02:00:00 "
                "(wall time in `timezone`) or 2026-01-01T02:00:00+01:00"
            ) from None
        return text
    return value  # the strict type check reports it


def instant(value: Any, timezone: str) -> datetime | None:
    """An ISO 8601 date-time as a UTC instant (naive: wall time in ``timezone``).

    ``None`` when it cannot be read (an unknown zone): such a value never compares equal.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=parse_zone(timezone))
    except (ValueError, InvalidInput):
        return None
    return parsed.astimezone(UTC)


def current_minutes(schedule: Mapping[str, Any]) -> int | None:
    """The interval of a schedule as the API returns it, in minutes (``None`` for cron)."""
    minutes = schedule.get("interval_minutes")
    if isinstance(minutes, int):
        return minutes
    every = schedule.get("every")
    if isinstance(every, Mapping):
        return int(every.get("hours") or 0) * 60 + int(every.get("minutes") or 0)
    return None


def every_text(minutes: int | None) -> str | None:
    """Minutes as the file spells them (``1h30m``), or ``None``."""
    return format_every(minutes) if minutes is not None else None


def export_schedule(schedule: Mapping[str, Any]) -> dict[str, Any]:
    """The file form of a schedule as the API returns it: defaults and computed fields left out.

    ``start_at`` is kept (for an interval it is the anchor that sets the firing minute),
    written in the schedule's zone with its offset.
    """
    cron = schedule.get("cron")
    minutes = current_minutes(schedule) if cron is None else None
    out: dict[str, Any] = {}
    name = str(schedule.get("name") or "")
    if name and name != default_name(cron, minutes):
        out["name"] = name
    if cron is not None:
        out["cron"] = cron
    else:
        out["every"] = every_text(minutes)
    timezone = str(schedule.get("timezone") or DEFAULT_TIMEZONE)
    start = schedule.get("start_at")
    if start:
        moment = instant(start, "UTC")
        try:
            out["start_at"] = (
                moment.astimezone(parse_zone(timezone)).isoformat() if moment else str(start)
            )
        except InvalidInput:
            out["start_at"] = str(start)
    for key, default in SCHEDULE_DEFAULTS.items():
        value = schedule.get(key)
        if value is not None and value != default:
            out[key] = dict(value) if isinstance(value, Mapping) else value
    return out
