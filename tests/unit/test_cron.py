"""Hand-written cases for the Quartz cron port (the Quartz conformance test is separate)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from jobyard.core.cron import CronError, CronExpression
from jobyard.core.errors import InvalidInput

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def fires(expr: str, start: datetime, n: int = 3, tz: ZoneInfo | None = None) -> list[str]:
    """The next ``n`` fire times after ``start`` as ISO strings in ``tz``."""
    zone = tz or ZoneInfo("UTC")
    cron = CronExpression.parse(expr)
    out: list[str] = []
    t: datetime | None = start
    for _ in range(n):
        assert t is not None
        t = cron.next_after(t, zone)
        if t is None:
            break
        out.append(t.isoformat())
    return out


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


# ----------------------------------------------------------------------------- syntax


def test_every_second_and_strictly_after() -> None:
    assert fires("* * * ? * *", utc(2024, 1, 1, 0, 0, 0)) == [
        "2024-01-01T00:00:01+00:00",
        "2024-01-01T00:00:02+00:00",
        "2024-01-01T00:00:03+00:00",
    ]


def test_after_is_rounded_up_to_the_next_whole_second() -> None:
    start = datetime(2024, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC)
    assert fires("* * * ? * *", start, 1) == ["2024-01-01T00:00:01+00:00"]


def test_ranges_lists_and_steps() -> None:
    assert fires("0 0/20 9-10 ? * *", utc(2024, 1, 1, 9, 30), 4) == [
        "2024-01-01T09:40:00+00:00",
        "2024-01-01T10:00:00+00:00",
        "2024-01-01T10:20:00+00:00",
        "2024-01-01T10:40:00+00:00",
    ]
    assert fires("0 0 8,12,18 ? * *", utc(2024, 1, 1, 12, 0), 2) == [
        "2024-01-01T18:00:00+00:00",
        "2024-01-02T08:00:00+00:00",
    ]
    assert fires("*/15 * * ? * *", utc(2024, 1, 1, 0, 0, 50), 2) == [
        "2024-01-01T00:01:00+00:00",
        "2024-01-01T00:01:15+00:00",
    ]
    assert fires("0 10-50/20 * ? * *", utc(2024, 1, 1), 3) == [
        "2024-01-01T00:10:00+00:00",
        "2024-01-01T00:30:00+00:00",
        "2024-01-01T00:50:00+00:00",
    ]


def test_wrapping_range() -> None:
    assert fires("0 0 22-1 ? * *", utc(2024, 1, 1, 12), 4) == [
        "2024-01-01T22:00:00+00:00",
        "2024-01-01T23:00:00+00:00",
        "2024-01-02T00:00:00+00:00",
        "2024-01-02T01:00:00+00:00",
    ]


def test_month_and_day_names_case_insensitive() -> None:
    # 2024-01-01 is a Monday.
    assert fires("0 0 12 ? jan-feb mon-fri", utc(2024, 1, 5, 13), 2) == [
        "2024-01-08T12:00:00+00:00",
        "2024-01-09T12:00:00+00:00",
    ]
    assert fires("0 0 0 1 DEC ?", utc(2024, 1, 1), 1) == ["2024-12-01T00:00:00+00:00"]
    # DOW numbers are Quartz's: 1 = Sunday, 7 = Saturday.
    assert fires("0 0 0 ? * 1", utc(2024, 1, 1), 1) == ["2024-01-07T00:00:00+00:00"]
    assert fires("0 0 0 ? * 7", utc(2024, 1, 1), 1) == ["2024-01-06T00:00:00+00:00"]


def test_year_field_and_exhaustion() -> None:
    assert fires("0 0 0 1 1 ? 2030,2032", utc(2024, 1, 1), 3) == [
        "2030-01-01T00:00:00+00:00",
        "2032-01-01T00:00:00+00:00",
    ]
    assert (
        CronExpression.parse("0 0 0 ? * * 2020").next_after(utc(2024, 1, 1), ZoneInfo("UTC"))
        is None
    )


# ----------------------------------------------------------------------------- L, W, #


def test_last_day_of_month_and_leap_years() -> None:
    assert fires("0 0 0 L * ?", utc(2024, 1, 31, 1), 3) == [
        "2024-02-29T00:00:00+00:00",
        "2024-03-31T00:00:00+00:00",
        "2024-04-30T00:00:00+00:00",
    ]
    assert fires("0 0 0 L 2 ?", utc(2023, 1, 1), 3) == [
        "2023-02-28T00:00:00+00:00",
        "2024-02-29T00:00:00+00:00",
        "2025-02-28T00:00:00+00:00",
    ]
    assert fires("0 0 0 29 2 ?", utc(2024, 3, 1), 2) == [
        "2028-02-29T00:00:00+00:00",
        "2032-02-29T00:00:00+00:00",
    ]


def test_last_day_offset() -> None:
    assert fires("0 0 0 L-2 * ?", utc(2024, 2, 1), 2) == [
        "2024-02-27T00:00:00+00:00",
        "2024-03-29T00:00:00+00:00",
    ]


def test_nearest_weekday() -> None:
    # 2024-06-15 is a Saturday -> Friday 14th; 2024-09-15 is a Sunday -> Monday 16th.
    assert fires("0 0 0 15W 6 ?", utc(2024, 1, 1), 1) == ["2024-06-14T00:00:00+00:00"]
    assert fires("0 0 0 15W 9 ?", utc(2024, 1, 1), 1) == ["2024-09-16T00:00:00+00:00"]
    # 1W never jumps back into the previous month: 2024-06-01 is a Saturday -> Monday 3rd.
    assert fires("0 0 0 1W 6 ?", utc(2024, 1, 1), 1) == ["2024-06-03T00:00:00+00:00"]


def test_last_weekday_of_month() -> None:
    # 2024-03-31 is a Sunday -> Friday 29th; 2024-08-31 is a Saturday -> Friday 30th.
    assert fires("0 0 0 LW 3 ?", utc(2024, 1, 1), 1) == ["2024-03-29T00:00:00+00:00"]
    assert fires("0 0 0 LW 8 ?", utc(2024, 1, 1), 1) == ["2024-08-30T00:00:00+00:00"]


def test_last_given_weekday_of_month() -> None:
    assert fires("0 0 0 ? * 6L", utc(2024, 1, 1), 3) == [
        "2024-01-26T00:00:00+00:00",
        "2024-02-23T00:00:00+00:00",
        "2024-03-29T00:00:00+00:00",
    ]
    # 'L' alone in the day-of-week field is Saturday.
    assert fires("0 0 0 ? * L", utc(2024, 1, 1), 1) == ["2024-01-06T00:00:00+00:00"]


def test_nth_weekday_of_month() -> None:
    assert fires("0 0 0 ? * FRI#3", utc(2024, 1, 1), 2) == [
        "2024-01-19T00:00:00+00:00",
        "2024-02-16T00:00:00+00:00",
    ]
    # A fifth Thursday exists only in some months.
    assert fires("0 0 0 ? * 5#5", utc(2024, 1, 1), 3) == [
        "2024-02-29T00:00:00+00:00",
        "2024-05-30T00:00:00+00:00",
        "2024-08-29T00:00:00+00:00",
    ]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("expr", "field", "fragment"),
    [
        ("* * * * * *", "day-of-week", "day-of-week AND a day-of-month"),
        ("0 0 0 1 * MON", "day-of-week", "day-of-week AND a day-of-month"),
        ("* * * ? * ?", "day-of-week", "'?' can only be specified"),
        ("60 * * ? * *", "second", "between 0 and 59"),
        ("* 60 * ? * *", "minute", "between 0 and 59"),
        ("* * 24 ? * *", "hour", "between 0 and 23"),
        ("* * * 32 * ?", "day-of-month", "between 1 and 31"),
        ("* * * ? 13 *", "month", "between 1 and 12"),
        ("* * * ? FOO *", "month", "Invalid Month value: 'FOO'"),
        ("* * * ? * 8", "day-of-week", "between 1 and 7"),
        ("* * * ? * FUN", "day-of-week", "Invalid Day-of-Week value: 'FUN'"),
        ("* * * ? * 1#6", "day-of-week", "between 1 and 5 must follow the '#'"),
        ("* * * ? * 1#2,3#1", "day-of-week", "multiple"),
        ("* * * L,5 * ?", "day-of-month", "'L' and 'LW' with other days"),
        ("* * * L-31 * ?", "day-of-month", "Offset from last day"),
        ("* * * 5L * ?", "day-of-month", "'L' option is not valid here"),
        ("* * * ? * 5W", "day-of-week", "'W' option is not valid here"),
        ("*/61 * * ? * *", "second", "Increment > 60"),
        ("? * * ? * *", "second", "'?' can only be specified for Day-of-Month or Day-of-Week"),
        ("* * * ?", "month", "Unexpected end of expression: this field is missing"),
        ("1-x * * ? * *", "second", "Illegal cron expression format"),
        ("0 0 0 L-28W * ?", "day-of-month", "at most 27"),
    ],
)
def test_refused_with_field_and_problem(expr: str, field: str, fragment: str) -> None:
    with pytest.raises(CronError) as caught:
        CronExpression.parse(expr)
    err = caught.value
    assert isinstance(err, InvalidInput)
    assert err.message.startswith(f"{field}: ")
    assert fragment in err.message
    assert err.details == {"field": field, "expression": expr}


def test_accepted_quartz_quirks() -> None:
    # Tokens past the year are ignored, as are trailing characters after a number.
    CronExpression.parse("0 0 0 ? * * 2030 extra")
    CronExpression.parse("5x * * ? * *")


# ----------------------------------------------------------------------------- misc


def test_fires_more_often_than_once_a_minute() -> None:
    assert CronExpression.parse("* * * ? * *").fires_more_often_than_once_a_minute
    assert CronExpression.parse("0/30 * * ? * *").fires_more_often_than_once_a_minute
    assert CronExpression.parse("0,30 * * ? * *").fires_more_often_than_once_a_minute
    assert not CronExpression.parse("0 * * ? * *").fires_more_often_than_once_a_minute
    assert not CronExpression.parse("15 0/5 * ? * *").fires_more_often_than_once_a_minute


def test_naive_datetime_refused() -> None:
    with pytest.raises(ValueError):
        CronExpression.parse("0 * * ? * *").next_after(datetime(2024, 1, 1), BERLIN)


def test_result_is_aware_in_the_zone() -> None:
    t = CronExpression.parse("0 0 12 ? * *").next_after(utc(2024, 7, 1), BERLIN)
    assert t is not None
    assert t.tzinfo is BERLIN
    assert t.isoformat() == "2024-07-01T12:00:00+02:00"


# ----------------------------------------------------------------------------- DST


def test_berlin_spring_forward_skips_the_missing_hour() -> None:
    # 2024-03-31 02:00 CET -> 03:00 CEST: 02:30 does not exist that day; Quartz skips it.
    assert fires("0 30 2 * * ?", datetime(2024, 3, 30, 12, tzinfo=BERLIN), 2, BERLIN) == [
        "2024-04-01T02:30:00+02:00",
        "2024-04-02T02:30:00+02:00",
    ]
    assert fires("0 0 * * * ?", datetime(2024, 3, 31, 1, 30, tzinfo=BERLIN), 2, BERLIN) == [
        "2024-03-31T03:00:00+02:00",
        "2024-03-31T04:00:00+02:00",
    ]


def test_berlin_fall_back_fires_the_repeated_hour_once() -> None:
    # 2024-10-27 03:00 CEST -> 02:00 CET: Quartz fires 02:30 in standard time only.
    assert fires("0 30 2 * * ?", datetime(2024, 10, 26, 12, tzinfo=BERLIN), 2, BERLIN) == [
        "2024-10-27T02:30:00+01:00",
        "2024-10-28T02:30:00+01:00",
    ]


def test_new_york_transitions() -> None:
    # 2024-03-10 02:00 EST -> 03:00 EDT; 2024-11-03 02:00 EDT -> 01:00 EST.
    assert fires("0 30 2 * * ?", datetime(2024, 3, 9, 12, tzinfo=NEW_YORK), 2, NEW_YORK) == [
        "2024-03-11T02:30:00-04:00",
        "2024-03-12T02:30:00-04:00",
    ]
    assert fires("0 30 1 * * ?", datetime(2024, 11, 2, 12, tzinfo=NEW_YORK), 2, NEW_YORK) == [
        "2024-11-03T01:30:00-05:00",
        "2024-11-04T01:30:00-05:00",
    ]


def test_many_steps_are_cheap() -> None:
    # Field-by-field jumps: a rare date far away is found without second-by-second scans.
    cron = CronExpression.parse("0 0 12 ? 2 2#5")
    t = cron.next_after(utc(2024, 3, 1), ZoneInfo("UTC"))
    assert t is not None
    assert t.isoformat() == "2044-02-29T12:00:00+00:00"
