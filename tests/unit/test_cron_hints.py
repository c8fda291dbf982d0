"""Refused cron expressions say the fix for the two common mistakes (Unix cron, no '?')."""

from __future__ import annotations

import pytest

from jobyard.core.cron import CronError, CronExpression


def _refusal(expr: str) -> str:
    with pytest.raises(CronError) as caught:
        CronExpression.parse(expr)
    return caught.value.message


@pytest.mark.parametrize(
    ("unix", "quartz"),
    [
        ("*/5 * * * *", "0 */5 * * * ?"),
        ("0 2 * * *", "0 0 2 * * ?"),
        ("0 9 * * 1-5", "0 0 9 ? * MON-FRI"),  # Unix 1-5 is MON-FRI; Quartz 1-5 SUN-THU
        ("30 6 1 * *", "0 30 6 1 * ?"),
        ("0 0 * * 0,6", "0 0 0 ? * SUN,SAT"),
    ],
)
def test_a_unix_expression_gets_its_quartz_translation(unix: str, quartz: str) -> None:
    message = _refusal(unix)  # Quartz's own problem first (the missing field, a month 0)
    assert "Quartz cron starts with seconds" in message
    assert f"did you mean '{quartz}'?" in message
    CronExpression.parse(quartz)  # the suggestion itself is valid


@pytest.mark.parametrize(
    ("expr", "fixed"),
    [
        ("0 0 2 * * *", "0 0 2 * * ?"),
        ("0 0 2 1 * *", "0 0 2 1 * ?"),
        ("0 0 2 * * MON", "0 0 2 ? * MON"),
        ("0 0 2 * * * 2030", "0 0 2 * * ? 2030"),
    ],
)
def test_both_day_fields_get_the_question_mark_fix(expr: str, fixed: str) -> None:
    message = _refusal(expr)
    assert "day-of-week AND a day-of-month" in message
    assert "use '?' in day-of-month or day-of-week" in message
    assert f"did you mean '{fixed}'?" in message
    CronExpression.parse(fixed)


def test_both_days_given_explicitly_get_the_rule_without_a_guess() -> None:
    message = _refusal("0 0 0 1 * MON")
    assert "use '?' in day-of-month or day-of-week" in message
    assert "did you mean" not in message


def test_other_refusals_get_no_hint() -> None:
    assert _refusal("0 0 25 * * ?") == "hour: Hour values must be between 0 and 23"
    assert "did you mean" not in _refusal("* * * ?")
