"""Previews of cron expressions: the next N fire times, for the CLI and the API.

:func:`preview` is what both surfaces call: it takes the user's text (expression, zone
name, optional ISO 8601 ``after``, count), checks each piece with a message saying what to
fix (:class:`~jobyard.core.errors.InvalidInput`), and returns aware datetimes in the zone.
Parsed expressions and zones are cached, so checking thousands of expressions in a row
(``jobyard cron next --batch``) costs little more than evaluating them.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from jobyard.core.cron._common import HARD_YEAR_LIMIT, CronError
from jobyard.core.cron.expression import CronExpression
from jobyard.core.errors import InvalidInput
from jobyard.core.zones import parse_zone

#: Most fire times one preview returns.
MAX_COUNT = 1000
#: Fire times a preview returns when the caller does not say.
DEFAULT_COUNT = 5
#: Zone of a preview when the caller does not say.
DEFAULT_TZ = "UTC"

_AFTER_EXAMPLES = (
    "'2026-03-29T01:30:00' (wall time in the time zone), '2026-03-29T01:30:00+01:00' "
    "or '2026-03-29T00:30:00Z'"
)


def check_count(count: int) -> int:
    """``count`` if it is within 1..:data:`MAX_COUNT`; otherwise :class:`InvalidInput`."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise InvalidInput(
            f"count must be an integer from 1 to {MAX_COUNT}, got {count!r}", {"count": count}
        )
    return count


@functools.lru_cache(maxsize=4096)
def _parse_cached(expr: str) -> CronExpression | tuple[str, str, str]:
    """The parsed expression, or ``(field, problem, hint)`` of its refusal (both cached)."""
    try:
        return CronExpression.parse(expr)
    except CronError as exc:
        return (exc.field, exc.problem, exc.hint)


def parse_expression(expr: str) -> CronExpression:
    """:meth:`CronExpression.parse` with a cache (refusals included); raises :class:`CronError`."""
    parsed = _parse_cached(expr)
    if isinstance(parsed, tuple):
        raise CronError(parsed[0], parsed[1], expr, parsed[2])
    return parsed


def parse_after(text: str, tz: ZoneInfo | str) -> datetime:
    """An ISO 8601 date-time as an aware datetime.

    A value with an offset (or ``Z``) is that instant; a value without one is a wall time
    in ``tz`` (in a daylight-saving overlap the first of the two instants, in a gap the
    offset in force before the transition); a date alone means its midnight.
    """
    zone = parse_zone(tz) if isinstance(tz, str) else tz
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"after: {text!r} is not an ISO 8601 date-time; expected e.g. {_AFTER_EXAMPLES}",
            {"after": text},
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(
            f"after: {text!r} is out of range (years 1 to 9999)", {"after": text}
        ) from None
    return value


def fire_times(expr: str, *, after: datetime, tz: str, count: int) -> list[datetime]:
    """The next ``count`` fire times of ``expr`` strictly after ``after``, aware in ``tz``.

    Fewer (possibly none) when the expression stops firing (a year field, Quartz's year
    limit). A naive ``after`` is a wall time in ``tz``. Raises :class:`InvalidInput` (or its
    subclasses :class:`CronError`, :class:`~jobyard.core.zones.ZoneError`) for a count
    outside 1..:data:`MAX_COUNT`, an unknown zone or an expression Quartz refuses.
    """
    check_count(count)
    zone = parse_zone(tz)
    cron = parse_expression(expr)
    if after.tzinfo is None:
        after = after.replace(tzinfo=zone)
    try:
        start = after.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(
            f"after: {after.isoformat()} is out of range", {"after": after.isoformat()}
        ) from None
    times: list[datetime] = []
    if start.year > HARD_YEAR_LIMIT:  # Quartz never fires after its year limit
        return times
    current: datetime | None = start
    while current is not None and len(times) < count:
        current = cron.next_after(current, zone)
        if current is not None:
            times.append(current)
    return times


def preview(
    expr: str, *, after: str | None = None, tz: str = DEFAULT_TZ, count: int = DEFAULT_COUNT
) -> list[datetime]:
    """:func:`fire_times` from text: ``after`` is ISO 8601 (:func:`parse_after`), None = now.

    Checks in this order and reports the first problem: count, zone, after, expression.
    """
    check_count(count)
    zone = parse_zone(tz)
    start = datetime.now(UTC) if after is None else parse_after(after, zone)
    return fire_times(expr, after=start, tz=tz, count=count)


def iso(times: list[datetime]) -> list[str]:
    """Fire times as ISO 8601 strings with their offset, e.g. ``2026-12-01T00:00:00+01:00``."""
    return [t.isoformat() for t in times]
