"""What to write instead, for the two mistakes people make most with Quartz cron.

Quartz's own messages are kept (they say what is wrong); these hints say how to fix it:

* a Unix cron expression (five fields, no seconds, day-of-week 0-6 from Sunday) is read
  by Quartz as seconds..month with the day-of-week missing;
* a day-of-month and a day-of-week both given (``*`` counts): Quartz needs ``?`` in one.
"""

from __future__ import annotations

import re

#: Unix day-of-week numbers (0 and 7 are Sunday) as the names Quartz reads the same way
#: (Quartz numbers days 1-7 from Sunday, so digits would silently shift by one).
_UNIX_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_PLAIN_DAYS_RE = re.compile(r"^[0-7](?:-[0-7])?(?:,[0-7](?:-[0-7])?)*$")
_QUESTION = "use '?' in day-of-month or day-of-week (Quartz needs one of them unspecified)"


def mistake_hint(expression: str, problem: str) -> str:
    """A sentence saying how to fix ``expression`` refused for ``problem``, or ``""``."""
    fields = expression.split()
    if len(fields) == 5:  # whatever Quartz tripped on first (a month of 0, the missing day)
        suggestion = _from_unix(fields)
        return (
            "Quartz cron starts with seconds (second minute hour day-of-month month "
            f"day-of-week): did you mean '{suggestion}'?"
        )
    if "day-of-week AND a day-of-month" in problem:
        fixed = _with_question_mark(fields) if len(fields) in (6, 7) else None
        if fixed is not None:
            return f"{_QUESTION}: did you mean '{' '.join(fixed)}'?"
        return _QUESTION
    return ""


def _from_unix(fields: list[str]) -> str:
    """The Quartz expression firing like the Unix one (minute hour dom month dow)."""
    minute, hour, dom, month, dow = fields
    dow = _unix_days(dow)
    if dom == "*" and dow == "*":
        dow = "?"
    elif dom == "*":
        dom = "?"
    elif dow == "*":
        dow = "?"
    return " ".join(["0", minute, hour, dom, month, dow])


def _unix_days(dow: str) -> str:
    """Unix day numbers as names (``1-5`` → ``MON-FRI``); anything else unchanged."""
    if not _PLAIN_DAYS_RE.match(dow):
        return dow
    return re.sub(r"[0-7]", lambda m: _UNIX_DAYS[int(m.group(0))], dow)


def _with_question_mark(fields: list[str]) -> list[str] | None:
    """The fields with ``?`` in the day field given as ``*``, when one of them is ``*``."""
    dom, dow = fields[3], fields[5]
    if "?" in (dom, dow):
        return None
    fixed = list(fields)
    if dow == "*":
        fixed[5] = "?"
    elif dom == "*":
        fixed[3] = "?"
    else:
        return None
    return fixed
