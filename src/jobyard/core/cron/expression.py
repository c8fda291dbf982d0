"""The parsed expression and its evaluation: a port of Quartz's ``getTimeAfter``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from jobyard.core.cron._calendar import Calendar
from jobyard.core.cron._common import (
    ALL_SPEC,
    DAY_OF_MONTH,
    DAY_OF_WEEK,
    FIELD_NAMES,
    HARD_YEAR_LIMIT,
    HOUR,
    MAX_STEPS,
    MAX_YEAR,
    MINUTE,
    MONTH,
    NO_SPEC,
    SECOND,
    YEAR,
    CronError,
    Refused,
    last_day_of_month,
)
from jobyard.core.cron._parser import Parser
from jobyard.core.cron.hints import mistake_hint


@dataclass(frozen=True)
class CronExpression:
    """A parsed Quartz cron expression (upper-cased as Quartz stores it)."""

    expression: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: tuple[int, ...]
    months: tuple[int, ...]
    days_of_week: tuple[int, ...]
    years: tuple[int, ...]
    lastday_of_week: bool
    nthday_of_week: int
    lastday_of_month: bool
    nearest_weekday: bool
    lastday_offset: int

    @classmethod
    def parse(cls, expr: str) -> CronExpression:
        text = expr.upper()
        parser = Parser()
        parser.field_on = SECOND
        try:
            parser.build(text)
        except Refused as exc:
            raise CronError(
                _field_name(parser.field_on), exc.problem, expr, mistake_hint(expr, exc.problem)
            ) from None
        except (IndexError, ValueError) as exc:
            raise CronError(
                _field_name(parser.field_on), f"Illegal cron expression format ({exc})", expr
            ) from None
        if parser.lastday_of_month and parser.nearest_weekday and parser.lastday_offset >= 28:
            # Quartz accepts these, then loops forever around February (day <= 0).
            raise CronError(
                FIELD_NAMES[DAY_OF_MONTH],
                f"'L-{parser.lastday_offset}W' is not supported: the offset from the last day "
                "must be at most 27 with 'W'",
                expr,
            )
        sets = [tuple(sorted(s)) for s in parser.sets]
        for kind in (SECOND, MINUTE, HOUR, MONTH, DAY_OF_WEEK, YEAR):
            if not sets[kind]:
                raise CronError(FIELD_NAMES[kind], "no value in this field", expr)
        if not sets[DAY_OF_MONTH] and not parser.lastday_of_month:
            raise CronError(FIELD_NAMES[DAY_OF_MONTH], "no value in this field", expr)
        return cls(
            text,
            seconds=sets[SECOND],
            minutes=sets[MINUTE],
            hours=sets[HOUR],
            days_of_month=sets[DAY_OF_MONTH],
            months=sets[MONTH],
            days_of_week=sets[DAY_OF_WEEK],
            years=sets[YEAR],
            lastday_of_week=parser.lastday_of_week,
            nthday_of_week=parser.nthday_of_week,
            lastday_of_month=parser.lastday_of_month,
            nearest_weekday=parser.nearest_weekday,
            lastday_offset=parser.lastday_offset,
        )

    def __str__(self) -> str:
        return self.expression

    @property
    def fires_more_often_than_once_a_minute(self) -> bool:
        """True unless the seconds field is a single value."""
        return len([s for s in self.seconds if s != ALL_SPEC]) > 1

    def next_after(self, after: datetime, tz: ZoneInfo) -> datetime | None:
        """The first fire time strictly after ``after``, aware in ``tz``; None if none."""
        if after.tzinfo is None:
            raise ValueError("next_after needs an aware datetime")
        after_us = (after - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        # Quartz: afterTime + 1000 ms, then milliseconds cleared.
        start_ms = after_us // 1000 + 1000
        result = self._time_after(start_ms, tz)
        if result is None:
            return None
        return datetime.fromtimestamp(result, tz)

    def _time_after(self, after_ms: int, tz: ZoneInfo) -> int | None:
        """``getTimeAfter``; ``after_ms`` is the original instant + 1000 ms."""
        cl = Calendar(tz, after_ms // 1000)
        cl.dirty = True  # cl.set(MILLISECOND, 0): the next get() re-reads the wall time
        seconds, minutes, hours = self.seconds, self.minutes, self.hours
        dom_set, dow_set, months, years = (
            self.days_of_month,
            self.days_of_week,
            self.months,
            self.years,
        )
        dom_spec = NO_SPEC not in dom_set
        dow_spec = NO_SPEC not in dow_set

        for _ in range(MAX_STEPS):
            cl.complete()
            if cl.year > HARD_YEAR_LIMIT:
                return None
            sec, minute = cl.second, cl.minute
            nxt = _tail(seconds, sec)
            if nxt is not None:
                sec = nxt
            else:
                sec = seconds[0]
                minute += 1
                cl.minute = minute
            cl.second = sec
            cl.dirty = True

            cl.complete()
            minute, hr = cl.minute, cl.hour
            t = -1
            nxt = _tail(minutes, minute)
            if nxt is not None:
                t = minute
                minute = nxt
            else:
                minute = minutes[0]
                hr += 1
            if minute != t:
                cl.second = 0
                cl.minute = minute
                cl.set_hour(hr)
                continue
            cl.minute = minute
            cl.dirty = True

            cl.complete()
            hr, day = cl.hour, cl.day
            t = -1
            nxt = _tail(hours, hr)
            if nxt is not None:
                t = hr
                hr = nxt
            else:
                hr = hours[0]
                day += 1
            if hr != t:
                cl.second = 0
                cl.minute = 0
                cl.day = day
                cl.set_hour(hr)
                continue
            cl.hour = hr
            cl.dirty = True

            cl.complete()
            day, mon = cl.day, cl.month + 1
            t = -1
            tmon = mon

            if dom_spec and not dow_spec:
                nxt = _tail(dom_set, day)
                if self.lastday_of_month:
                    if not self.nearest_weekday:
                        t = day
                        day = last_day_of_month(mon, cl.year) - self.lastday_offset
                        if t > day:
                            mon += 1
                            if mon > 12:
                                mon = 1
                                tmon = 3333
                                cl.add_year(1)
                            day = 1
                    else:
                        t = day
                        day = last_day_of_month(mon, cl.year) - self.lastday_offset
                        day = _nearest_weekday(cl.year, mon, day)
                        if self._before(cl.year, mon, day, hr, minute, sec, tz, after_ms):
                            day = 1
                            mon += 1
                elif self.nearest_weekday:
                    t = day
                    day = dom_set[0]
                    day = _nearest_weekday(cl.year, mon, day)
                    if self._before(cl.year, mon, day, hr, minute, sec, tz, after_ms):
                        day = dom_set[0]
                        mon += 1
                elif nxt is not None:
                    t = day
                    day = nxt
                    if day > last_day_of_month(mon, cl.year):
                        day = dom_set[0]
                        mon += 1
                else:
                    day = dom_set[0]
                    mon += 1
                if day != t or mon != tmon:
                    cl.second = cl.minute = cl.hour = 0
                    cl.day = day
                    cl.month = mon - 1
                    cl.dirty = True
                    continue
            elif dow_spec and not dom_spec:
                if self.lastday_of_week:
                    dow = dow_set[0]
                    cdow = cl.day_of_week()
                    days_to_add = _days_to(cdow, dow)
                    lday = last_day_of_month(mon, cl.year)
                    if day + days_to_add > lday:
                        _next_month(cl, mon)
                        continue
                    while day + days_to_add + 7 <= lday:
                        days_to_add += 7
                    day += days_to_add
                    if days_to_add > 0:
                        cl.second = cl.minute = cl.hour = 0
                        cl.day = day
                        cl.month = mon - 1
                        cl.dirty = True
                        continue
                elif self.nthday_of_week != 0:
                    dow = dow_set[0]
                    cdow = cl.day_of_week()
                    days_to_add = _days_to(cdow, dow)
                    shifted = days_to_add > 0
                    day += days_to_add
                    week_of_month = day // 7
                    if day % 7 > 0:
                        week_of_month += 1
                    days_to_add = (self.nthday_of_week - week_of_month) * 7
                    day += days_to_add
                    if days_to_add < 0 or day > last_day_of_month(mon, cl.year):
                        _next_month(cl, mon)
                        continue
                    if days_to_add > 0 or shifted:
                        cl.second = cl.minute = cl.hour = 0
                        cl.day = day
                        cl.month = mon - 1
                        cl.dirty = True
                        continue
                else:
                    cdow = cl.day_of_week()
                    dow = dow_set[0]
                    nxt = _tail(dow_set, cdow)
                    if nxt is not None:
                        dow = nxt
                    days_to_add = _days_to(cdow, dow)
                    lday = last_day_of_month(mon, cl.year)
                    if day + days_to_add > lday:
                        _next_month(cl, mon)
                        continue
                    if days_to_add > 0:
                        cl.second = cl.minute = cl.hour = 0
                        cl.day = day + days_to_add
                        cl.month = mon - 1
                        cl.dirty = True
                        continue
            cl.day = day
            cl.dirty = True

            cl.complete()
            mon, year = cl.month + 1, cl.year
            t = -1
            if year > MAX_YEAR:
                return None
            nxt = _tail(months, mon)
            if nxt is not None:
                t = mon
                mon = nxt
            else:
                mon = months[0]
                year += 1
            if mon != t:
                cl.second = cl.minute = cl.hour = 0
                cl.day = 1
                cl.month = mon - 1
                cl.year = year
                cl.dirty = True
                continue
            cl.month = mon - 1
            cl.dirty = True

            cl.complete()
            year = cl.year
            t = -1
            nxt = _tail(years, year)
            if nxt is None:
                return None
            t = year
            year = nxt
            if year != t:
                cl.second = cl.minute = cl.hour = 0
                cl.day = 1
                cl.month = 0
                cl.year = year
                cl.dirty = True
                continue
            cl.year = year
            cl.dirty = True
            return cl.get_time()
        return None  # a guard Quartz lacks: no fire time within MAX_STEPS field jumps

    @staticmethod
    def _before(
        year: int,
        mon: int,
        day: int,
        hr: int,
        minute: int,
        sec: int,
        tz: ZoneInfo,
        after_ms: int,
    ) -> bool:
        """``tcal.getTime().before(afterTime)`` for the W rules (tcal keeps 'now' millis)."""
        tcal = Calendar(tz, 0)
        tcal.year, tcal.month, tcal.day = year, mon - 1, day
        tcal.hour, tcal.minute, tcal.second = hr, minute, sec
        tcal.dirty = True
        return tcal.get_time() * 1000 < after_ms - after_ms % 1000


def _field_name(index: int) -> str:
    return FIELD_NAMES[index] if 0 <= index < len(FIELD_NAMES) else "expression"


def _tail(values: tuple[int, ...], start: int) -> int | None:
    """``TreeSet.tailSet(start).first()`` or None."""
    for v in values:
        if v >= start:
            return v
    return None


def _days_to(cdow: int, dow: int) -> int:
    if cdow < dow:
        return dow - cdow
    if cdow > dow:
        return dow + (7 - cdow)
    return 0


def _next_month(cl: Calendar, mon: int) -> None:
    cl.second = cl.minute = cl.hour = 0
    cl.day = 1
    cl.month = mon  # promoting the month (0-based)
    cl.dirty = True


def _nearest_weekday(year: int, mon: int, day: int) -> int:
    """Quartz's W adjustment: the weekday of the lenient date (year, mon, day)."""
    ordinal = date(year + (mon - 1) // 12, (mon - 1) % 12 + 1, 1).toordinal() + day - 1
    dow = (date.fromordinal(ordinal).weekday() + 1) % 7 + 1  # 1=SUN..7=SAT
    ldom = last_day_of_month(mon, year) if 1 <= mon <= 12 else 31
    if dow == 7 and day == 1:
        return day + 2
    if dow == 7:
        return day - 1
    if dow == 1 and day == ldom:
        return day - 2
    if dow == 1:
        return day + 1
    return day
