"""Field numbering, Quartz constants, the error type and Java-like string helpers."""

from __future__ import annotations

import calendar
import re
from datetime import date

from jobyard.core.errors import InvalidInput

SECOND, MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK, YEAR = range(7)
FIELD_NAMES = ("second", "minute", "hour", "day-of-month", "month", "day-of-week", "year")
ALL_SPEC = 99  # '*'
NO_SPEC = 98  # '?'
# Quartz: Calendar.getInstance().get(Calendar.YEAR) + 100, evaluated when the class loads.
MAX_YEAR = date.today().year + 100
HARD_YEAR_LIMIT = 2999
# getTimeAfter jumps field by field; the worst real expressions need a few thousand steps.
MAX_STEPS = 500_000

MONTHS = {
    name: i
    for i, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    )
}
DAYS = {name: i + 1 for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
_INT_RE = re.compile(r"[+-]?[0-9]+")


class CronError(InvalidInput):
    """A cron expression Quartz would refuse; the message names the field and the problem."""

    code = "invalid_cron"

    def __init__(self, field_name: str, problem: str, expression: str, hint: str = "") -> None:
        message = f"{field_name}: {problem}"
        if hint:
            message += f" — {hint}"
        super().__init__(message, {"field": field_name, "expression": expression})
        self.field = field_name
        self.problem = problem
        self.hint = hint


class Refused(Exception):
    """Internal: a Quartz ParseException (``problem``)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def char_at(s: str, i: int) -> str:
    if i < 0 or i >= len(s):
        raise IndexError(f"String index out of range: {i}")
    return s[i]


def substring(s: str, start: int, end: int | None = None) -> str:
    stop = len(s) if end is None else end
    if start < 0 or stop > len(s) or start > stop:
        raise IndexError(f"begin {start}, end {stop}, length {len(s)}")
    return s[start:stop]


def parse_java_int(text: str) -> int:
    """``Integer.parseInt``: optional sign, ASCII digits, 32-bit range."""
    if not _INT_RE.fullmatch(text):
        raise ValueError(f'For input string: "{text}"')
    value = int(text)
    if not -(2**31) <= value < 2**31:
        raise ValueError(f'For input string: "{text}"')
    return value


def is_digit(c: str) -> bool:
    return "0" <= c <= "9"


def last_day_of_month(month: int, year: int) -> int:
    if not 1 <= month <= 12:
        raise ValueError(f"Illegal month number: {month}")
    return calendar.monthrange(year, month)[1]
