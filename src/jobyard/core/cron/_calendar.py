"""Just enough of a lenient ``java.util.GregorianCalendar`` for ``getTimeAfter``."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from jobyard.core.cron._common import last_day_of_month

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1)


def _offset_at_utc(tz: ZoneInfo, utc: int) -> int:
    off = datetime.fromtimestamp(utc, tz).utcoffset()
    return 0 if off is None else int(off.total_seconds())


def _offset_by_wall(tz: ZoneInfo, wall: int) -> int:
    """The offset Java's ZoneInfo picks for a local wall time (seconds since local epoch)."""
    local = _EPOCH + timedelta(seconds=wall)
    o0 = local.replace(tzinfo=tz, fold=0).utcoffset()
    o1 = local.replace(tzinfo=tz, fold=1).utcoffset()
    if o0 is None or o1 is None:
        return 0
    return int(min(o0, o1).total_seconds())


class Calendar:
    """Fields YEAR, MONTH (0-based), DAY_OF_MONTH, HOUR_OF_DAY, MINUTE, SECOND; lenient."""

    __slots__ = ("day", "dirty", "hour", "minute", "month", "second", "time", "tz", "year")

    def __init__(self, tz: ZoneInfo, utc: int) -> None:
        self.tz = tz
        self._from_utc(utc)

    def _from_utc(self, utc: int) -> None:
        self.time = utc
        local = _EPOCH + timedelta(seconds=utc + _offset_at_utc(self.tz, utc))
        self.year, self.month, self.day = local.year, local.month - 1, local.day
        self.hour, self.minute, self.second = local.hour, local.minute, local.second
        self.dirty = False

    def wall_seconds(self) -> int:
        year = self.year + self.month // 12
        month = self.month % 12
        extra_days, secs = divmod(self.hour * 3600 + self.minute * 60 + self.second, 86400)
        ordinal = date(year, month + 1, 1).toordinal() + self.day - 1 + extra_days
        return (ordinal - _EPOCH_ORDINAL) * 86400 + secs

    def complete(self) -> None:
        if self.dirty:
            wall = self.wall_seconds()
            self._from_utc(wall - _offset_by_wall(self.tz, wall))

    def get_time(self) -> int:
        self.complete()
        return self.time

    def day_of_week(self) -> int:
        self.complete()
        return (date(self.year, self.month + 1, self.day).weekday() + 1) % 7 + 1

    def set_hour(self, hour: int) -> None:
        """Quartz's ``setCalendarHour``."""
        self.hour = hour
        self.dirty = True
        self.complete()
        if self.hour != hour and hour != 24:
            self.hour = hour + 1
            self.dirty = True

    def add_year(self, amount: int) -> None:
        self.complete()
        self.year += amount
        self.day = min(self.day, last_day_of_month(self.month + 1, self.year))
        self.dirty = True
