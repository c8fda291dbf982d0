"""Previews of cron expressions (``jobyard.core.cron.preview``): the text-in, times-out layer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobyard.core.cron import CronError
from jobyard.core.cron.preview import (
    DEFAULT_COUNT,
    MAX_COUNT,
    check_count,
    fire_times,
    iso,
    parse_after,
    preview,
)
from jobyard.core.errors import InvalidInput
from jobyard.core.zones import ZoneError

BERLIN = "Europe/Berlin"


def times(expr: str, **kwargs: object) -> list[str]:
    return iso(preview(expr, **kwargs))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- DST


def test_daily_noon_across_spring_forward_changes_offset() -> None:
    # Europe/Berlin: 2026-03-29 02:00 CET (+01:00) -> 03:00 CEST (+02:00).
    assert times("0 0 12 * * ?", after="2026-03-27T00:00:00", tz=BERLIN, count=4) == [
        "2026-03-27T12:00:00+01:00",
        "2026-03-28T12:00:00+01:00",
        "2026-03-29T12:00:00+02:00",
        "2026-03-30T12:00:00+02:00",
    ]


def test_daily_noon_across_fall_back_changes_offset() -> None:
    # Europe/Berlin: 2026-10-25 03:00 CEST (+02:00) -> 02:00 CET (+01:00).
    assert times("0 0 12 * * ?", after="2026-10-23T00:00:00", tz=BERLIN, count=4) == [
        "2026-10-23T12:00:00+02:00",
        "2026-10-24T12:00:00+02:00",
        "2026-10-25T12:00:00+01:00",
        "2026-10-26T12:00:00+01:00",
    ]


def test_hourly_skips_the_missing_hour_of_spring_forward() -> None:
    assert times("0 0 * * * ?", after="2026-03-29T00:30:00", tz=BERLIN, count=3) == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T04:00:00+02:00",
    ]


def test_hourly_fires_the_repeated_hour_of_fall_back_once_in_standard_time() -> None:
    assert times("0 0 * * * ?", after="2026-10-25T00:30:00", tz=BERLIN, count=4) == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T04:00:00+01:00",
    ]


def test_wall_time_inside_the_gap_is_skipped_that_day() -> None:
    # 02:30 does not exist in Berlin on 2026-03-29: Quartz skips that day.
    assert times("0 30 2 * * ?", after="2026-03-28T12:00:00", tz=BERLIN, count=2) == [
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    assert times("0 30 2 * * ?", after="2026-10-24T12:00:00", tz=BERLIN, count=2) == [
        "2026-10-25T02:30:00+01:00",
        "2026-10-26T02:30:00+01:00",
    ]


def test_times_are_aware_in_the_zone() -> None:
    result = preview("0 0 12 * * ?", after="2026-06-01T00:00:00Z", tz=BERLIN, count=2)
    assert [t.tzinfo for t in result] == [ZoneInfo(BERLIN)] * 2
    assert [t.utcoffset() for t in result] == [timedelta(hours=2)] * 2


# ----------------------------------------------------------------------------- after


def test_naive_after_is_a_wall_time_in_the_zone() -> None:
    # 10:00 in Berlin is 08:00 UTC: the next hour in Berlin is 11:00.
    assert times("0 0 * * * ?", after="2026-06-01T10:00:00", tz=BERLIN, count=1) == [
        "2026-06-01T11:00:00+02:00"
    ]
    # 10:00 UTC is 12:00 in Berlin: the next hour is 13:00.
    assert times("0 0 * * * ?", after="2026-06-01T10:00:00Z", tz=BERLIN, count=1) == [
        "2026-06-01T13:00:00+02:00"
    ]
    assert times("0 0 * * * ?", after="2026-06-01T10:00:00+05:00", tz=BERLIN, count=1) == [
        "2026-06-01T08:00:00+02:00"
    ]


def test_parse_after_forms() -> None:
    z = parse_after("2026-03-29T00:30:00Z", BERLIN)
    assert z == datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    assert z.utcoffset() == timedelta(0)
    assert parse_after("2026-03-29T01:30:00+01:00", "UTC") == z
    naive = parse_after("2026-03-29T01:30:00", BERLIN)
    assert naive == z
    assert naive.utcoffset() == timedelta(hours=1)
    assert parse_after(" 2026-03-29T01:30:00 ", ZoneInfo(BERLIN)) == z
    # a date alone is its midnight
    assert parse_after("2026-06-01", BERLIN) == datetime(2026, 5, 31, 22, tzinfo=UTC)


def test_parse_after_in_overlap_and_gap() -> None:
    # 02:30 happens twice on 2026-10-25 in Berlin: the first (daylight-time) instant.
    overlap = parse_after("2026-10-25T02:30:00", BERLIN)
    assert overlap.utcoffset() == timedelta(hours=2)
    # (compared in UTC: Python never finds an ambiguous wall time equal across zones)
    assert overlap.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    # 02:30 does not exist on 2026-03-29: read with the offset before the transition.
    gap = parse_after("2026-03-29T02:30:00", BERLIN)
    assert gap.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_after_is_exclusive() -> None:
    assert times("0 0 12 * * ?", after="2026-01-01T12:00:00Z", count=1) == [
        "2026-01-02T12:00:00+00:00"
    ]
    assert times("0 0 12 * * ?", after="2026-01-01T11:59:59.999Z", count=1) == [
        "2026-01-01T12:00:00+00:00"
    ]


@pytest.mark.parametrize("text", ["tomorrow", "", "2026-13-01T00:00:00", "2026-01-01T25:00"])
def test_bad_after_is_refused_with_examples(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_after(text, "UTC")
    assert info.value.message.startswith("after: ")
    assert "ISO 8601" in info.value.message
    assert "2026-03-29T00:30:00Z" in info.value.message
    assert info.value.details == {"after": text}


def test_after_out_of_range() -> None:
    with pytest.raises(InvalidInput, match="out of range"):
        parse_after("0001-01-01T00:00:00", BERLIN)
    with pytest.raises(InvalidInput, match="out of range"):
        parse_after("9999-12-31T23:59:59", "America/New_York")


def test_after_none_means_now() -> None:
    before = datetime.now(UTC)
    result = preview("* * * ? * *", count=3)
    assert len(result) == 3
    assert before < result[0] < result[1] < result[2]
    assert result[0] - before <= timedelta(seconds=2)


# ----------------------------------------------------------------------------- count


@pytest.mark.parametrize("count", [1, 2, MAX_COUNT])
def test_check_count_accepts(count: int) -> None:
    assert check_count(count) == count


@pytest.mark.parametrize("count", [0, -1, MAX_COUNT + 1, True, 1.5, "3", None])
def test_check_count_refuses(count: object) -> None:
    with pytest.raises(InvalidInput) as info:
        check_count(count)  # type: ignore[arg-type]
    assert info.value.message.startswith(f"count must be an integer from 1 to {MAX_COUNT}")


def test_count_and_default_count() -> None:
    assert len(preview("* * * ? * *", after="2026-01-01T00:00:00Z", count=MAX_COUNT)) == MAX_COUNT
    assert len(preview("* * * ? * *", after="2026-01-01T00:00:00Z")) == DEFAULT_COUNT


# ----------------------------------------------------------------------------- errors


def test_bad_zone() -> None:
    with pytest.raises(ZoneError) as info:
        preview("0 0 12 * * ?", tz="Mars/Olympus")
    assert "unknown time zone 'Mars/Olympus'" in info.value.message
    with pytest.raises(ZoneError, match="did you mean 'Europe/Berlin'"):
        preview("0 0 12 * * ?", tz="europe/berlin")


@pytest.mark.parametrize(
    ("expr", "field"),
    [
        ("0 0 0 32 * ?", "day-of-month"),
        ("60 * * * * ?", "second"),
        ("0 0 25 * * ?", "hour"),
        ("0 0 0 ? 13 *", "month"),
        ("0 0 0 ? * 8", "day-of-week"),
        ("0 0 0 * * *", "day-of-week"),
        ("bad", "second"),
        ("", "second"),
    ],
)
def test_bad_expression_names_the_field(expr: str, field: str) -> None:
    with pytest.raises(CronError) as info:
        preview(expr, after="2026-01-01T00:00:00Z")
    assert info.value.field == field
    assert info.value.message.startswith(f"{field}: ")
    # refusals are cached: the second time gives the same error
    with pytest.raises(CronError) as again:
        preview(expr, after="2026-01-01T00:00:00Z")
    assert again.value.message == info.value.message


def test_problems_are_reported_in_order_count_zone_after_expression() -> None:
    with pytest.raises(InvalidInput, match=r"^count"):
        preview("bad", after="junk", tz="Nowhere/X", count=0)
    with pytest.raises(ZoneError):
        preview("bad", after="junk", tz="Nowhere/X")
    with pytest.raises(InvalidInput, match=r"^after: "):
        preview("bad", after="junk")


# ----------------------------------------------------------------------------- fewer times


def test_expression_that_stops_firing_returns_fewer() -> None:
    assert times("0 0 12 1 1 ? 2027-2028", after="2026-01-01T00:00:00Z", count=5) == [
        "2027-01-01T12:00:00+00:00",
        "2028-01-01T12:00:00+00:00",
    ]
    assert times("0 0 12 * * ? 2020", after="2026-01-01T00:00:00Z", count=3) == []
    assert times("0 0 0 30 2 ?", after="2026-01-01T00:00:00Z", count=3) == []


def test_nothing_after_quartz_year_limit() -> None:
    assert (
        fire_times("* * * ? * *", after=datetime(3000, 1, 1, tzinfo=UTC), tz="UTC", count=3) == []
    )


# ----------------------------------------------------------------------------- fire_times


def test_fire_times_naive_after_is_wall_time() -> None:
    naive = fire_times("0 0 * * * ?", after=datetime(2026, 6, 1, 10), tz=BERLIN, count=2)
    assert iso(naive) == ["2026-06-01T11:00:00+02:00", "2026-06-01T12:00:00+02:00"]
    aware = fire_times(
        "0 0 * * * ?", after=datetime(2026, 6, 1, 10, tzinfo=UTC), tz=BERLIN, count=1
    )
    assert iso(aware) == ["2026-06-01T13:00:00+02:00"]


def test_fire_times_checks_its_arguments() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="count"):
        fire_times("0 0 12 * * ?", after=start, tz="UTC", count=0)
    with pytest.raises(ZoneError):
        fire_times("0 0 12 * * ?", after=start, tz="No/Where", count=1)
    with pytest.raises(CronError, match=r"^day-of-month: "):
        fire_times("0 0 0 32 * ?", after=start, tz="UTC", count=1)


def test_iso_keeps_the_offset() -> None:
    t = datetime(2026, 12, 1, tzinfo=ZoneInfo(BERLIN))
    assert iso([t]) == ["2026-12-01T00:00:00+01:00"]
    assert iso([]) == []
