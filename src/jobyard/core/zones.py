"""IANA time zones: one place that turns a user's zone name into a ``ZoneInfo`` or a clear error."""

from __future__ import annotations

import functools
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from jobyard.core.errors import InvalidInput


class ZoneError(InvalidInput):
    """A time zone name that is not an IANA zone known to this machine."""

    code = "invalid_timezone"


@functools.lru_cache(maxsize=1024)
def parse_zone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` for an IANA name such as ``Europe/Paris`` or ``UTC``.

    Unlike Quartz (which silently falls back to GMT for an unknown id), an unknown or
    malformed name is refused, with a hint when only the letter case is wrong.
    """
    problem = f"unknown time zone {name!r}: use an IANA name such as 'UTC' or 'Europe/Paris'"
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise ZoneError(problem, {"field": "timezone", "timezone": name})
    if name in _known_zones_set():  # not 'localtime' (the host's zone) and the like
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    lowered = name.lower()
    for known in _known_zones():
        if known.lower() == lowered:
            problem += f" (did you mean {known!r}?)"
            break
    raise ZoneError(problem, {"field": "timezone", "timezone": name})


@functools.cache
def _known_zones() -> tuple[str, ...]:
    return tuple(sorted(available_timezones() - {"Factory", "localtime"}))


@functools.cache
def _known_zones_set() -> frozenset[str]:
    return frozenset(_known_zones())
