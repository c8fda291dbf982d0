"""``jobyard.core.schedules``: validation, next fire times, firing plans and the planner cache.

Pure code with explicit instants: no clock, no store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobyard.core import schedules as core
from jobyard.core.cron import CronError
from jobyard.core.errors import InvalidInput
from jobyard.core.schedules import (
    MAX_INTERVAL_MINUTES,
    MAX_STEPS,
    FiringPlanner,
    MisfirePolicy,
    Schedule,
    ScheduleSpec,
    next_after,
    plan_firing,
    validate,
)
from jobyard.core.zones import ZoneError

GRACE = timedelta(seconds=60)
T0 = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


def at(minutes: float = 0, seconds: float = 0) -> datetime:
    """``T0`` plus an offset."""
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def schedule(
    *,
    cron: str | None = "0 * * * * ?",
    interval_minutes: int | None = None,
    start_at: datetime | None = None,
    next_fire_at: datetime | None = T0,
    policy: MisfirePolicy = MisfirePolicy.FIRE_ONCE,
    timezone: str = "UTC",
    version: int = 1,
    id: int = 7,
) -> Schedule:
    """A stored schedule (by default: every minute at second 0, due at ``T0``)."""
    if interval_minutes is not None:
        cron = None
    return Schedule(
        id=id,
        jobconfig_id=3,
        name="s",
        cron=cron,
        interval_minutes=interval_minutes,
        start_at=start_at,
        timezone=timezone,
        misfire_policy=policy,
        paused=False,
        macros={},
        description="",
        next_fire_at=next_fire_at,
        last_fire_at=None,
        last_result=None,
        version=version,
        created_at=T0 - timedelta(days=1),
        updated_at=T0 - timedelta(days=1),
    )


def refused(spec: ScheduleSpec, *, allow_seconds: bool = False) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        validate(spec, allow_seconds=allow_seconds)
    return caught.value


# -- validate ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(ScheduleSpec(), id="neither"),
        pytest.param(ScheduleSpec(cron="0 * * * * ?", interval_minutes=5), id="both"),
    ],
)
def test_exactly_one_of_cron_and_interval(spec: ScheduleSpec) -> None:
    error = refused(spec)
    assert "exactly one of 'cron'" in error.message
    assert "'every'" in error.message
    assert error.details == {"field": "cron"}


@pytest.mark.parametrize(
    ("expr", "field_name", "problem"),
    [
        ("61 * * * * ?", "second", "between 0 and 59"),
        ("0 * * 32 * ?", "day-of-month", "between 1 and 31"),
        ("0 * * * FOO ?", "month", "'FOO'"),
        ("0 * * * *", "day-of-week", "6 or 7 fields expected, got 5"),
        ("0 * * * * *", "day-of-week", "both a day-of-week AND a day-of-month"),
    ],
)
def test_a_bad_cron_names_the_field_and_the_problem(
    expr: str, field_name: str, problem: str
) -> None:
    error = refused(ScheduleSpec(cron=expr))
    assert isinstance(error, CronError)
    assert error.field == field_name
    assert error.message.startswith(f"{field_name}: ")
    assert problem in error.message
    assert error.details["field"] == field_name


@pytest.mark.parametrize(
    "expr", ["* * * ? * *", "0/30 * * * * ?", "0,30 * * * * ?", "0-59 * * ? * *"]
)
def test_seconds_level_cron_needs_the_server_setting(expr: str) -> None:
    error = refused(ScheduleSpec(cron=expr))
    assert "more often than once a minute" in error.message
    assert "scheduler.allow_seconds" in error.message
    assert f"seconds field {expr.split()[0]!r}" in error.message
    assert error.details == {"field": "cron"}
    accepted = validate(ScheduleSpec(cron=expr), allow_seconds=True)
    assert accepted.cron == expr


@pytest.mark.parametrize("expr", ["0 * * * * ?", "5 * * * * ?", "1-1 * * * * ?", "0 0 9 ? * MON"])
def test_one_second_per_minute_is_not_seconds_level(expr: str) -> None:
    assert validate(ScheduleSpec(cron=expr), allow_seconds=False).cron == expr


@pytest.mark.parametrize(
    ("zone", "hint"),
    [
        ("Mars/Phobos", None),
        ("europe/paris", "did you mean 'Europe/Paris'?"),
        ("../etc/passwd", None),
        ("", None),
    ],
)
def test_a_bad_zone_is_refused(zone: str, hint: str | None) -> None:
    error = refused(ScheduleSpec(cron="0 * * * * ?", timezone=zone))
    assert isinstance(error, ZoneError)
    assert f"unknown time zone {zone!r}" in error.message
    assert "IANA" in error.message
    if hint:
        assert hint in error.message
    # ... for interval schedules as well (the zone also anchors naive start times).
    assert isinstance(refused(ScheduleSpec(interval_minutes=5, timezone=zone)), ZoneError)


@pytest.mark.parametrize("minutes", [0, -5, MAX_INTERVAL_MINUTES + 1])
def test_interval_out_of_range(minutes: int) -> None:
    error = refused(ScheduleSpec(interval_minutes=minutes))
    assert f"invalid interval of {minutes} minutes" in error.message
    assert "smallest is 1 minute" in error.message
    assert error.details == {"field": "every"}


@pytest.mark.parametrize("minutes", [1, MAX_INTERVAL_MINUTES])
def test_interval_limits_are_accepted(minutes: int) -> None:
    checked = validate(ScheduleSpec(interval_minutes=minutes), allow_seconds=False)
    assert checked.interval_minutes == minutes


def test_a_naive_start_is_a_wall_time_in_the_schedule_zone() -> None:
    summer = validate(
        ScheduleSpec(
            interval_minutes=60, start_at=datetime(2024, 7, 1, 9, 0), timezone="Europe/Berlin"
        ),
        allow_seconds=False,
    )
    assert summer.start_at == datetime(2024, 7, 1, 7, 0, tzinfo=UTC)  # CEST, UTC+2
    assert summer.start_at is not None and summer.start_at.utcoffset() == timedelta(0)
    winter = validate(
        ScheduleSpec(
            interval_minutes=60, start_at=datetime(2024, 1, 15, 9, 0), timezone="Europe/Berlin"
        ),
        allow_seconds=False,
    )
    assert winter.start_at == datetime(2024, 1, 15, 8, 0, tzinfo=UTC)  # CET, UTC+1


def test_an_aware_start_keeps_its_instant() -> None:
    from zoneinfo import ZoneInfo

    given = datetime(2024, 7, 1, 9, 0, tzinfo=ZoneInfo("America/New_York"))
    spec = validate(
        ScheduleSpec(interval_minutes=60, start_at=given, timezone="Europe/Berlin"),
        allow_seconds=False,
    )
    assert spec.start_at == given
    assert spec.start_at is not None and spec.start_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        (ScheduleSpec(cron="0  */5 *\t* * ?"), "0 */5 * * * ?"),
        (ScheduleSpec(cron=" 0 0 9 ? * MON-FRI "), "0 0 9 ? * MON-FRI"),
        (ScheduleSpec(interval_minutes=90), "every 1h30m"),
        (ScheduleSpec(interval_minutes=60), "every 1h"),
        (ScheduleSpec(interval_minutes=5), "every 5m"),
        (ScheduleSpec(interval_minutes=5, name="   "), "every 5m"),
        (ScheduleSpec(interval_minutes=5, name="  nightly  "), "nightly"),
    ],
)
def test_default_and_stripped_names(spec: ScheduleSpec, name: str) -> None:
    checked = validate(spec, allow_seconds=False)
    assert checked.name == name
    if spec.cron is not None:
        assert checked.cron == " ".join(spec.cron.split())


def test_policy_given_as_text_is_normalised_and_a_bad_one_refused() -> None:
    spec = dataclasses.replace(ScheduleSpec(cron="0 * * * * ?"), misfire_policy="skip")  # type: ignore[arg-type]
    assert validate(spec, allow_seconds=False).misfire_policy is MisfirePolicy.SKIP
    bad = dataclasses.replace(spec, misfire_policy="later")  # type: ignore[arg-type]
    error = refused(bad)
    assert "invalid misfire_policy 'later'" in error.message
    assert error.details == {"field": "misfire_policy"}


def test_a_name_with_control_characters_is_refused() -> None:
    error = refused(ScheduleSpec(interval_minutes=5, name="bad\x07name"))
    assert error.details == {"field": "name"}


# -- next_after ------------------------------------------------------------------------------


def test_interval_anchor_in_the_future_is_the_first_fire_time() -> None:
    anchor = at(minutes=30)
    assert next_after(None, 15, anchor, "UTC", T0) == anchor
    assert next_after(None, 15, anchor, "UTC", anchor - timedelta(microseconds=1)) == anchor


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (at(minutes=0), at(minutes=15)),  # strictly after the anchor itself
        (at(minutes=14, seconds=59), at(minutes=15)),
        (at(minutes=15), at(minutes=30)),  # strictly after a fire time
        (at(minutes=31), at(minutes=45)),
        (at(minutes=60 * 24 * 3 + 1), at(minutes=60 * 24 * 3 + 15)),  # days later
    ],
)
def test_interval_anchor_in_the_past_keeps_the_grid(after: datetime, expected: datetime) -> None:
    assert next_after(None, 15, T0, "UTC", after) == expected


def test_interval_of_90_minutes_from_an_odd_anchor() -> None:
    anchor = datetime(2024, 3, 1, 0, 7, tzinfo=UTC)
    assert next_after(None, 90, anchor, "UTC", datetime(2024, 3, 1, 5, 0, tzinfo=UTC)) == (
        datetime(2024, 3, 1, 6, 7, tzinfo=UTC)
    )


def test_cron_next_after_is_utc_and_follows_the_zone() -> None:
    found = next_after("0 0 9 * * ?", None, None, "Europe/Berlin", datetime(2024, 7, 1, tzinfo=UTC))
    assert found == datetime(2024, 7, 1, 7, 0, tzinfo=UTC)
    assert found is not None and found.tzinfo is UTC
    assert next_after("0 * * * * ?", None, None, "UTC", at(seconds=30)) == at(minutes=1)
    assert next_after("0 * * * * ?", None, None, "UTC", T0) == at(minutes=1)


def test_cron_with_its_years_past_has_no_next_fire_time() -> None:
    assert next_after("0 0 0 1 1 ? 2020", None, None, "UTC", T0) is None


# -- plan_firing -----------------------------------------------------------------------------


def test_on_time_fires_once_and_moves_to_the_next_minute() -> None:
    plan = plan_firing(schedule(), at(seconds=0.001), GRACE)
    assert plan.fire_at == [T0]
    assert plan.next_fire_at == at(minutes=1)
    assert plan.missed == 0
    assert plan.result == "fired"


@pytest.mark.parametrize("late", [1.0, 30.0, 59.9])
def test_late_within_the_grace_still_fires_normally(late: float) -> None:
    plan = plan_firing(schedule(), at(seconds=late), GRACE)
    assert plan.fire_at == [T0]
    assert plan.next_fire_at == at(minutes=1)
    assert plan.missed == 0


def test_late_within_a_long_grace_fires_every_due_time() -> None:
    plan = plan_firing(schedule(), at(minutes=2, seconds=5), timedelta(minutes=5))
    assert plan.fire_at == [T0, at(minutes=1), at(minutes=2)]
    assert plan.next_fire_at == at(minutes=3)
    assert plan.missed == 0


def test_misfired_fire_once_gives_one_job_for_the_latest_missed_time() -> None:
    now = at(minutes=3, seconds=20)
    plan = plan_firing(schedule(), now, GRACE)
    assert plan.fire_at == [at(minutes=3)]  # one catch-up job, at the latest missed time
    assert plan.next_fire_at == at(minutes=4)  # the first fire time after now
    assert plan.missed == 4  # 10:00, 10:01, 10:02, 10:03
    assert plan.result == (
        f"one catch-up job for 4 missed firing(s) from {T0.isoformat()} "
        f"to {at(minutes=3).isoformat()}"
    )


def test_misfired_skip_gives_no_job() -> None:
    now = at(minutes=3, seconds=20)
    plan = plan_firing(schedule(policy=MisfirePolicy.SKIP), now, GRACE)
    assert plan.fire_at == []
    assert plan.next_fire_at == at(minutes=4)
    assert plan.missed == 4
    assert plan.result.startswith("skipped 4 missed firing(s) from ")
    assert plan.result.endswith("(misfire policy skip)")


def test_exactly_the_grace_late_is_not_a_misfire() -> None:
    plan = plan_firing(schedule(), at(seconds=30), timedelta(seconds=30))
    assert (plan.fire_at, plan.missed) == ([T0], 0)


def test_a_single_missed_firing_is_reported_at_its_time() -> None:
    plan = plan_firing(schedule(), at(seconds=31), timedelta(seconds=30))
    assert plan.fire_at == [T0]
    assert plan.next_fire_at == at(minutes=1)
    assert plan.missed == 1
    assert plan.result == f"one catch-up job for 1 missed firing(s) at {T0.isoformat()}"


def test_misfired_interval_schedule() -> None:
    s = schedule(interval_minutes=15, start_at=T0)
    plan = plan_firing(s, at(minutes=60, seconds=5), GRACE)
    assert plan.fire_at == [at(minutes=60)]
    assert plan.next_fire_at == at(minutes=75)
    assert plan.missed == 5


def test_seconds_level_cron_slightly_late_fires_each_due_time() -> None:
    s = schedule(cron="*/10 * * * * ?")
    plan = plan_firing(s, at(seconds=25), GRACE)
    assert plan.fire_at == [T0, at(seconds=10), at(seconds=20)]
    assert plan.next_fire_at == at(seconds=30)
    assert plan.missed == 0


def test_a_long_outage_of_a_seconds_level_cron_is_capped() -> None:
    s = schedule(cron="* * * ? * *")
    now = at(minutes=120)
    plan = plan_firing(s, now, GRACE)
    assert plan.missed == MAX_STEPS
    assert f"{MAX_STEPS}+ missed" in plan.result
    assert plan.fire_at == [at(seconds=MAX_STEPS - 1)]
    assert plan.next_fire_at == now + timedelta(seconds=1)


def test_an_exhausted_cron_has_no_next_fire_time() -> None:
    last = datetime(2020, 1, 1, tzinfo=UTC)
    s = schedule(cron="0 0 0 1 1 ? 2020", next_fire_at=last)
    on_time = plan_firing(s, last + timedelta(seconds=1), GRACE)
    assert on_time.fire_at == [last]
    assert on_time.next_fire_at is None
    missed = plan_firing(s, T0, GRACE)
    assert missed.fire_at == [last]
    assert missed.next_fire_at is None
    assert missed.missed == 1
    skipped = plan_firing(dataclasses.replace(s, misfire_policy=MisfirePolicy.SKIP), T0, GRACE)
    assert skipped.fire_at == []
    assert skipped.next_fire_at is None


def test_plan_uses_a_given_following_fire_time() -> None:
    plan = plan_firing(schedule(), at(seconds=1), GRACE, following=at(minutes=5))
    assert plan.fire_at == [T0]
    assert plan.next_fire_at == at(minutes=5)


# -- FiringPlanner ---------------------------------------------------------------------------


@pytest.fixture
def next_after_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Count the cron/interval arithmetic the planner does."""
    calls: list[Any] = []
    real = core.schedule_next_after

    def counting(s: Schedule, after: datetime) -> datetime | None:
        calls.append((s.id, after))
        return real(s, after)

    monkeypatch.setattr(core, "schedule_next_after", counting)
    yield calls


def test_planner_cache_hit_does_no_arithmetic(next_after_calls: list[Any]) -> None:
    planner = FiringPlanner(GRACE)
    s = schedule()
    assert planner.warm([s, schedule(id=8, next_fire_at=None)]) == 1  # unscheduled skipped
    assert planner.warm([s]) == 0  # already there
    next_after_calls.clear()
    plan = planner.plan(s, at(seconds=0.5))
    assert next_after_calls == []  # the hit: nothing computed while firing
    assert plan.fire_at == [T0]
    assert plan.next_fire_at == at(minutes=1)
    # The entry is used up: planning the same firing again computes afresh.
    assert planner.plan(s, at(seconds=0.5)).next_fire_at == at(minutes=1)
    assert next_after_calls == [(7, T0)]


def test_planner_cache_misses_on_a_new_version(next_after_calls: list[Any]) -> None:
    planner = FiringPlanner(GRACE)
    planner.warm([schedule(version=1)])
    changed = schedule(cron="0 */5 * * * ?", version=2)
    next_after_calls.clear()
    plan = planner.plan(changed, at(seconds=0.5))
    assert next_after_calls == [(7, T0)]  # computed, not the stale every-minute entry
    assert plan.next_fire_at == at(minutes=5)


def test_planner_cache_misses_on_a_new_next_fire_time(next_after_calls: list[Any]) -> None:
    planner = FiringPlanner(GRACE)
    planner.warm([schedule()])
    moved = schedule(next_fire_at=at(minutes=1))
    next_after_calls.clear()
    assert planner.plan(moved, at(minutes=1, seconds=0.5)).next_fire_at == at(minutes=2)
    assert next_after_calls == [(7, at(minutes=1))]


def test_planner_forgets_stale_entries(next_after_calls: list[Any]) -> None:
    planner = FiringPlanner(GRACE)
    s = schedule()
    planner.warm([s, schedule(id=9, next_fire_at=at(minutes=10))])
    planner.forget_before(at(minutes=5))
    next_after_calls.clear()
    planner.plan(s, at(seconds=0.5))
    assert next_after_calls == [(7, T0)]  # dropped, so computed
    next_after_calls.clear()
    planner.plan(schedule(id=9, next_fire_at=at(minutes=10)), at(minutes=10, seconds=0.5))
    assert next_after_calls == []  # kept


def test_planner_applies_its_grace() -> None:
    planner = FiringPlanner(timedelta(seconds=5))
    plan = planner.plan(schedule(policy=MisfirePolicy.SKIP), at(seconds=6))
    assert plan.fire_at == []
    assert plan.missed == 1
