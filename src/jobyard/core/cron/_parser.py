"""Quartz's ``buildExpression``/``storeExpressionVals``, quirks included."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from jobyard.core.cron._common import (
    ALL_SPEC,
    DAY_OF_MONTH,
    DAY_OF_WEEK,
    DAYS,
    HOUR,
    MAX_YEAR,
    MINUTE,
    MONTH,
    MONTHS,
    NO_SPEC,
    SECOND,
    YEAR,
    Refused,
    char_at,
    is_digit,
    parse_java_int,
    substring,
)

_WRAP = {SECOND: 60, MINUTE: 60, HOUR: 24, MONTH: 12, DAY_OF_WEEK: 7, DAY_OF_MONTH: 31}
_L_OFFSET_RE = re.compile(r"L-[0-9]*W?")


@dataclass
class Parser:
    """State of Quartz's ``buildExpression``: seven sorted sets plus the special flags."""

    sets: list[set[int]] = field(default_factory=lambda: [set() for _ in range(7)])
    lastday_of_week: bool = False
    nthday_of_week: int = 0
    lastday_of_month: bool = False
    nearest_weekday: bool = False
    lastday_offset: int = 0
    field_on: int = 0

    def build(self, expression: str) -> int:
        """Parse; return the index of the field being parsed (for error messages)."""
        tokens = expression.split()
        expr_on = SECOND
        for token in tokens:
            if expr_on > YEAR:
                break
            self.field_on = expr_on
            if expr_on == DAY_OF_MONTH and "L" in token and len(token) > 1 and "," in token:
                raise Refused(
                    "Support for specifying 'L' and 'LW' with other days of the month "
                    "is not implemented"
                )
            if expr_on == DAY_OF_WEEK and "L" in token and len(token) > 1 and "," in token:
                raise Refused(
                    "Support for specifying 'L' with other days of the week is not implemented"
                )
            if expr_on == DAY_OF_WEEK and token.count("#") > 1:
                raise Refused('Support for specifying multiple "nth" days is not implemented.')
            for value in (v for v in token.split(",") if v):
                self.store(value, expr_on)
            expr_on += 1
        self.field_on = expr_on
        if expr_on <= DAY_OF_WEEK:
            raise Refused(
                f"Unexpected end of expression: this field is missing "
                f"(6 or 7 fields expected, got {expr_on})"
            )
        if expr_on <= YEAR:
            self.store("*", YEAR)
        self.field_on = DAY_OF_WEEK
        dom_spec = NO_SPEC not in self.sets[DAY_OF_MONTH]
        dow_spec = NO_SPEC not in self.sets[DAY_OF_WEEK]
        if (not dom_spec or dow_spec) and (not dow_spec or dom_spec):
            raise Refused(
                "Support for specifying both a day-of-week AND a day-of-month parameter "
                "is not implemented."
            )
        return expr_on

    def store(self, s: str, kind: int) -> None:
        incr = 0
        i = 0
        if i >= len(s):
            return
        c = s[i]
        if "A" <= c <= "Z" and s != "L" and s != "LW" and not _L_OFFSET_RE.fullmatch(s):
            sub = substring(s, i, i + 3)
            eval_ = -1
            if kind == MONTH:
                sval = MONTHS.get(sub, -1) + 1
                if sval <= 0:
                    raise Refused(f"Invalid Month value: '{sub}'")
                if len(s) > i + 3 and s[i + 3] == "-":
                    i += 4
                    sub = substring(s, i, i + 3)
                    eval_ = MONTHS.get(sub, -1) + 1
                    if eval_ <= 0:
                        raise Refused(f"Invalid Month value: '{sub}'")
            elif kind == DAY_OF_WEEK:
                sval = DAYS.get(sub, -1)
                if sval < 0:
                    raise Refused(f"Invalid Day-of-Week value: '{sub}'")
                if len(s) > i + 3:
                    c = s[i + 3]
                    if c == "-":
                        i += 4
                        sub = substring(s, i, i + 3)
                        eval_ = DAYS.get(sub, -1)
                        if eval_ < 0:
                            raise Refused(f"Invalid Day-of-Week value: '{sub}'")
                    elif c == "#":
                        i += 4
                        self._set_nth(substring(s, i))
                    elif c == "L":
                        self.lastday_of_week = True
                        i += 1
            else:
                raise Refused(f"Illegal characters for this position: '{sub}'")
            if eval_ != -1:
                incr = 1
            self.add(sval, eval_, incr, kind)
            return

        if c == "?":
            i += 1
            if i + 1 < len(s) and (s[i] != " " and s[i + 1] != "\t"):
                raise Refused(f"Illegal character after '?': {s[i]}")
            if kind not in (DAY_OF_WEEK, DAY_OF_MONTH):
                raise Refused("'?' can only be specified for Day-of-Month or Day-of-Week.")
            if kind == DAY_OF_WEEK and not self.lastday_of_month:
                dom = self.sets[DAY_OF_MONTH]
                if not dom:
                    raise ValueError("NoSuchElementException")
                if max(dom) == NO_SPEC:
                    raise Refused("'?' can only be specified for Day-of-Month -OR- Day-of-Week.")
            self.add(NO_SPEC, -1, 0, kind)
            return

        if c in "*/":
            if c == "*" and i + 1 >= len(s):
                self.add(ALL_SPEC, -1, incr, kind)
                return
            if c == "/" and (i + 1 >= len(s) or s[i + 1] in " \t"):
                raise Refused("'/' must be followed by an integer.")
            if c == "*":
                i += 1
            c = char_at(s, i)
            if c == "/":
                i += 1
                if i >= len(s):
                    raise Refused("Unexpected end of string.")
                incr = parse_java_int(substring(s, i))
                self._check_increment(incr, kind)
            else:
                incr = 1
            self.add(ALL_SPEC, -1, incr, kind)
            return

        if c == "L":
            i += 1
            if kind == DAY_OF_MONTH:
                self.lastday_of_month = True
            if kind == DAY_OF_WEEK:
                self.add(7, 7, 0, kind)
            if kind == DAY_OF_MONTH and len(s) > i:
                c = s[i]
                if c == "-":
                    value, i = self._get_value(0, s, i + 1)
                    self.lastday_offset = value
                    if value > 30:
                        raise Refused("Offset from last day must be <= 30")
                if len(s) > i and s[i] == "W":
                    self.nearest_weekday = True
            return

        if is_digit(c):
            val = int(c)
            i += 1
            if i >= len(s):
                self.add(val, -1, -1, kind)
                return
            c = s[i]
            if is_digit(c):
                val, i = self._get_value(val, s, i)
            self._check_next(i, s, val, kind)
            return

        raise Refused(f"Unexpected character: {c}")

    def _set_nth(self, text: str) -> None:
        try:
            nth = parse_java_int(text)
        except ValueError:
            nth = 0
        if not 1 <= nth <= 5:
            raise Refused("A numeric value between 1 and 5 must follow the '#' option")
        self.nthday_of_week = nth

    @staticmethod
    def _check_increment(incr: int, kind: int) -> None:
        if incr > 59 and kind in (SECOND, MINUTE):
            raise Refused(f"Increment > 60 : {incr}")
        if incr > 23 and kind == HOUR:
            raise Refused(f"Increment > 24 : {incr}")
        if incr > 31 and kind == DAY_OF_MONTH:
            raise Refused(f"Increment > 31 : {incr}")
        if incr > 7 and kind == DAY_OF_WEEK:
            raise Refused(f"Increment > 7 : {incr}")
        if incr > 12 and kind == MONTH:
            raise Refused(f"Increment > 12 : {incr}")

    def _check_next(self, pos: int, s: str, val: int, kind: int) -> None:
        end = -1
        i = pos
        if i >= len(s):
            self.add(val, end, -1, kind)
            return
        c = s[pos]
        target = self.sets[kind]
        if c == "L":
            if kind != DAY_OF_WEEK:
                raise Refused(f"'L' option is not valid here. (pos={i})")
            if val < 1 or val > 7:
                raise Refused("Day-of-Week values must be between 1 and 7")
            self.lastday_of_week = True
            target.add(val)
            return
        if c == "W":
            if kind != DAY_OF_MONTH:
                raise Refused(f"'W' option is not valid here. (pos={i})")
            self.nearest_weekday = True
            if val > 31:
                raise Refused(
                    "The 'W' option does not make sense with values larger than 31 "
                    "(max number of days in a month)"
                )
            target.add(val)
            return
        if c == "#":
            if kind != DAY_OF_WEEK:
                raise Refused(f"'#' option is not valid here. (pos={i})")
            self._set_nth(substring(s, i + 1))
            target.add(val)
            return
        if c == "-":
            i += 1
            v = parse_java_int(char_at(s, i))
            end = v
            i += 1
            if i >= len(s):
                self.add(val, end, 1, kind)
                return
            c = s[i]
            if is_digit(c):
                end, i = self._get_value(v, s, i)
            if i < len(s) and s[i] == "/":
                i += 1
                v2 = parse_java_int(char_at(s, i))
                i += 1
                if i >= len(s):
                    self.add(val, end, v2, kind)
                    return
                c = s[i]
                if is_digit(c):
                    v3, i = self._get_value(v2, s, i)
                    self.add(val, end, v3, kind)
                else:
                    self.add(val, end, v2, kind)
                return
            self.add(val, end, 1, kind)
            return
        if c == "/":
            if i + 1 >= len(s) or s[i + 1] in " \t":
                raise Refused("'/' must be followed by an integer.")
            i += 1
            v2 = parse_java_int(char_at(s, i))
            i += 1
            if i >= len(s):
                self._check_increment(v2, kind)
                self.add(val, end, v2, kind)
                return
            c = s[i]
            if is_digit(c):
                v3, i = self._get_value(v2, s, i)
                self._check_increment(v3, kind)
                self.add(val, end, v3, kind)
                return
            raise Refused(f"Unexpected character '{c}' after '/'")
        self.add(val, end, 0, kind)

    @staticmethod
    def _get_value(v: int, s: str, i: int) -> tuple[int, int]:
        digits = str(v)
        c = s[i]
        while is_digit(c):
            digits += c
            i += 1
            if i >= len(s):
                break
            c = s[i]
        pos = i if i < len(s) else i + 1
        return parse_java_int(digits), pos

    def add(self, val: int, end: int, incr: int, kind: int) -> None:
        target = self.sets[kind]
        _check_range(val, end, kind)

        if incr in (0, -1) and val != ALL_SPEC:
            target.add(val if val != -1 else NO_SPEC)
            return

        start, stop = val, end
        if val == ALL_SPEC and incr <= 0:
            incr = 1
            target.add(ALL_SPEC)
        lo, hi = {
            SECOND: (0, 59),
            MINUTE: (0, 59),
            HOUR: (0, 23),
            DAY_OF_MONTH: (1, 31),
            MONTH: (1, 12),
            DAY_OF_WEEK: (1, 7),
            YEAR: (1970, MAX_YEAR),
        }[kind]
        if stop == -1:
            stop = hi
        if start in (-1, ALL_SPEC):
            start = lo
        wrap = -1
        if stop < start:
            if kind == YEAR:
                raise ValueError("Start year must be less than stop year")
            wrap = _WRAP[kind]
            stop += wrap
        if incr <= 0:
            # Java's for-loop would never end (or add nothing); Quartz cannot produce this.
            raise Refused(f"Increment must be positive: {incr}")
        for k in range(start, stop + 1, incr):
            if wrap == -1:
                target.add(k)
            else:
                k2 = k % wrap
                if k2 == 0 and kind in (MONTH, DAY_OF_WEEK, DAY_OF_MONTH):
                    k2 = wrap
                target.add(k2)


_RANGE_PROBLEMS = {
    SECOND: (0, 59, "Minute and Second values must be between 0 and 59"),
    MINUTE: (0, 59, "Minute and Second values must be between 0 and 59"),
    HOUR: (0, 23, "Hour values must be between 0 and 23"),
    DAY_OF_MONTH: (1, 31, "Day of month values must be between 1 and 31"),
    MONTH: (1, 12, "Month values must be between 1 and 12"),
}


def _check_range(val: int, end: int, kind: int) -> None:
    """``addToSet``'s bounds checks (none for the year; day-of-week accepts negatives)."""
    if val == ALL_SPEC or (val == NO_SPEC and kind in (DAY_OF_MONTH, DAY_OF_WEEK)):
        return
    if kind == DAY_OF_WEEK:
        if val == 0 or val > 7 or end > 7:
            raise Refused("Day-of-Week values must be between 1 and 7")
        return
    if kind in _RANGE_PROBLEMS:
        lo, hi, problem = _RANGE_PROBLEMS[kind]
        if val < lo or val > hi or end > hi:
            raise Refused(problem)
