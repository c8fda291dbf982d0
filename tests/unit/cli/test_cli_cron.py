"""``jobyard cron next``: one time per line, errors on stderr, and the ``--batch`` filter."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner, Result

from jobyard.cli.cron import answer_line
from jobyard.cli.main import app
from jobyard.core.cron import CronExpression
from jobyard.core.cron.preview import parse_after

JOBYARD = Path(sys.executable).with_name("jobyard")


def run(*args: str, stdin: str | bytes | None = None) -> Result:
    return CliRunner().invoke(app, ["cron", "next", *args], input=stdin, prog_name="jobyard")


def batch(*lines: str | dict[str, Any], args: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Run ``--batch`` over ``lines`` (dicts as JSON); the answers, one dict per line."""
    text = "".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines)
    result = run("--batch", *args, stdin=text)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.endswith("\n")
    return [json.loads(line) for line in result.stdout.splitlines()]


# ----------------------------------------------------------------------------- one expression


def test_help() -> None:
    result = CliRunner().invoke(app, ["cron", "next", "--help"], prog_name="jobyard")
    assert result.exit_code == 0, result.output
    for option in ("--after", "--count", "--tz", "--batch"):
        assert option in result.output
    assert CliRunner().invoke(app, ["cron", "--help"]).exit_code == 0


def test_one_time_per_line_with_offsets() -> None:
    result = run("0 0 12 ? * MON-FRI", "--after", "2026-03-26T00:00:00", "--tz", "Europe/Berlin")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "2026-03-26T12:00:00+01:00",
        "2026-03-27T12:00:00+01:00",
        "2026-03-30T12:00:00+02:00",
        "2026-03-31T12:00:00+02:00",
        "2026-04-01T12:00:00+02:00",
    ]
    assert result.stderr == ""


def test_count_and_short_option() -> None:
    result = run("0 0 12 * * ?", "--after", "2026-01-01T00:00:00Z", "--count", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "2026-01-01T12:00:00+00:00",
        "2026-01-02T12:00:00+00:00",
        "2026-01-03T12:00:00+00:00",
    ]
    assert len(run("* * * ? * *", "-n", "1000").stdout.splitlines()) == 1000


def test_tz_changes_zone_and_offset() -> None:
    args = ("0 0 2 * * ?", "--after", "2026-10-24T12:00:00", "--count", "2")
    result = run(*args, "--tz", "Europe/Berlin")
    assert result.stdout.splitlines() == ["2026-10-25T02:00:00+01:00", "2026-10-26T02:00:00+01:00"]
    result = run(*args, "--tz", "America/New_York")
    assert result.stdout.splitlines() == ["2026-10-25T02:00:00-04:00", "2026-10-26T02:00:00-04:00"]


def test_default_after_is_now() -> None:
    result = run("0 0 12 * * ?", "--count", "2")
    assert result.exit_code == 0, result.output
    first, second = (datetime.fromisoformat(t) for t in result.stdout.splitlines())
    assert datetime.now(ZoneInfo("UTC")) < first < second


def test_fewer_times_say_so_on_stderr() -> None:
    result = run("0 0 12 1 1 ? 2027", "--after", "2026-01-01T00:00:00Z", "--count", "3")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["2027-01-01T12:00:00+00:00"]
    assert "only 1" in result.stderr
    result = run("0 0 12 1 1 ? 2020", "--after", "2026-01-01T00:00:00Z")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no fire time" in result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("0 0 0 32 * ?",), "day-of-month: "),
        (("bad",), "second: "),
        (("0 0 12 * * ?", "--tz", "Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (("0 0 12 * * ?", "--tz", "europe/berlin"), "did you mean 'Europe/Berlin'"),
        (("0 0 12 * * ?", "--after", "tomorrow"), "after: 'tomorrow' is not an ISO 8601"),
        (("0 0 12 * * ?", "--count", "0"), "count must be an integer from 1 to 1000"),
        (("0 0 12 * * ?", "--count", "1001"), "count must be an integer from 1 to 1000"),
        (("0 0 12 * * ?", "--count", "many"), "Invalid value for '--count'"),
        ((), "missing EXPR"),
        (("0 0 12 * * ?", "--batch"), "either EXPR or --batch"),
    ],
)
def test_errors_go_to_stderr_with_exit_2(args: tuple[str, ...], fragment: str) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert fragment in " ".join(result.stderr.split()), result.stderr


# ----------------------------------------------------------------------------- --batch


def test_batch_good_line() -> None:
    answers = batch(
        {"expr": "0 0 2 * * ?", "tz": "Europe/Berlin", "after": "2026-03-28T00:00:00", "count": 3}
    )
    assert answers == [
        {
            "next": [
                "2026-03-28T02:00:00+01:00",
                "2026-03-30T02:00:00+02:00",
                "2026-03-31T02:00:00+02:00",
            ]
        }
    ]


def test_batch_one_answer_per_line_in_order() -> None:
    good = {"expr": "0 0 12 * * ?", "after": "2026-01-01T00:00:00Z", "count": 1}
    answers = batch(
        good,
        {"expr": "0 0 0 32 * ?"},
        {"expr": "0 0 12 * * ?", "tz": "Mars/Olympus"},
        "not json",
        '{"expr": "0 0 12 * * ?"',
        "[1, 2]",
        '"0 0 12 * * ?"',
        {"expr": 5},
        {"tz": "UTC"},
        {"expr": "0 0 12 * * ?", "count": "3"},
        {"expr": "0 0 12 * * ?", "count": 2.0},
        {"expr": "0 0 12 * * ?", "count": True},
        {"expr": "0 0 12 * * ?", "count": 0},
        {"expr": "0 0 12 * * ?", "tz": 1},
        {"expr": "0 0 12 * * ?", "after": 20260101},
        {"expr": "0 0 12 * * ?", "after": "soon"},
        {"expr": "0 0 12 * * ?", "when": "now", "zone": "UTC"},
        good,
    )
    assert len(answers) == 18
    assert answers[0] == answers[-1] == {"next": ["2026-01-01T12:00:00+00:00"]}
    errors = [a["error"] for a in answers[1:-1]]
    assert all(set(a) == {"error"} for a in answers[1:-1])
    assert errors[0].startswith("day-of-month: ")
    assert "unknown time zone 'Mars/Olympus'" in errors[1]
    assert errors[2].startswith("line is not valid JSON")
    assert errors[3].startswith("line is not valid JSON")
    assert "must be a JSON object" in errors[4]
    assert "must be a JSON object" in errors[5]
    assert errors[6].startswith("expr: required, a string")
    assert errors[7].startswith("expr: required, a string")
    for message in errors[8:11]:
        assert message.startswith("count: must be an integer"), message
    assert errors[11].startswith("count must be an integer from 1 to 1000")
    assert errors[12].startswith("tz: must be a string")
    assert errors[13].startswith("after: must be an ISO 8601 date-time string")
    assert errors[14].startswith("after: 'soon' is not an ISO 8601")
    assert errors[15] == "unknown key(s) 'when', 'zone': the keys are expr, after, tz, count"


def test_batch_skips_blank_lines_and_reads_without_final_newline() -> None:
    line = json.dumps({"expr": "0 0 12 * * ?", "after": "2026-01-01", "count": 1})
    result = run("--batch", stdin=f"\n   \n{line}\n\n\t\n{line}")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ['{"next": ["2026-01-01T12:00:00+00:00"]}'] * 2


def test_batch_nulls_and_options_are_defaults() -> None:
    answers = batch(
        {"expr": "0 0 12 * * ?"},
        {"expr": "0 0 12 * * ?", "tz": None, "after": None, "count": None},
        {"expr": "0 0 12 * * ?", "tz": "UTC", "count": 1},
        args=("--tz", "Europe/Berlin", "--after", "2026-07-01T00:00:00", "--count", "2"),
    )
    two = {"next": ["2026-07-01T12:00:00+02:00", "2026-07-02T12:00:00+02:00"]}
    assert answers == [two, two, {"next": ["2026-07-01T12:00:00+00:00"]}]


def test_batch_bad_utf8_is_one_bad_line() -> None:
    good = json.dumps({"expr": "0 0 12 * * ?", "after": "2026-01-01T00:00:00Z", "count": 1})
    result = run("--batch", stdin=b'{"expr": "\xff"}\n' + good.encode() + b"\n")
    assert result.exit_code == 0
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["error"].startswith("line is not valid JSON")
    assert second == {"next": ["2026-01-01T12:00:00+00:00"]}


def test_batch_answers_are_single_lines_even_for_odd_input() -> None:
    answer = answer_line('{"expr": "0 0 12 * * ?\\n", "tz": "Bad\\nZone"}')
    assert "\n" not in answer
    assert "error" in json.loads(answer)
    assert "\n" not in answer_line("[" * 100_000)


def test_batch_of_2000_lines() -> None:
    exprs = ["0 0 12 * * ?", "0 */5 * * * ?", "0 0 0 L * ?", "0 0 0 32 * ?", "0 15 10 ? * 6#3"]
    lines = [
        {"expr": exprs[i % len(exprs)], "after": f"2026-{i % 12 + 1:02d}-01T00:00:00", "count": 3}
        for i in range(2000)
    ]
    answers = batch(*lines)
    assert len(answers) == 2000
    assert sum("error" in a for a in answers) == 400
    assert all(len(a["next"]) == 3 for a in answers if "next" in a)


# ----------------------------------------------------------------------------- conformance

SPOT = [
    ("0 0 12 * * ?", "UTC"),
    ("0 15 10 ? * *", "Europe/Berlin"),
    ("0 0/5 14 * * ?", "America/New_York"),
    ("0 0/5 14,18 * * ?", "Asia/Kolkata"),
    ("0 0-5 14 * * ?", "Australia/Sydney"),
    ("0 10,44 14 ? 3 WED", "Europe/Berlin"),
    ("0 15 10 ? * MON-FRI", "America/Sao_Paulo"),
    ("0 15 10 15 * ?", "UTC"),
    ("0 15 10 L * ?", "Europe/Berlin"),
    ("0 15 10 L-2 * ?", "America/New_York"),
    ("0 15 10 ? * 6L", "Europe/London"),
    ("0 15 10 ? * 6#3", "Asia/Tokyo"),
    ("0 0 12 1/5 * ?", "UTC"),
    ("0 11 11 11 11 ?", "Europe/Berlin"),
    ("0 30 2 * * ?", "Europe/Berlin"),
    ("0 30 1 * * ?", "America/New_York"),
    ("*/20 * * ? * *", "UTC"),
    ("0 0 0 LW * ?", "Pacific/Auckland"),
    ("0 0 12 15W * ?", "Europe/Berlin"),
    ("0 0 12 ? JAN,JUL SUN 2026-2027", "UTC"),
]
SPOT_AFTER = ["2026-03-28T12:00:00", "2026-10-24T22:30:00", "2026-12-31T23:59:59"]


def test_batch_agrees_with_cron_expression() -> None:
    cases = [(expr, tz, after) for expr, tz in SPOT for after in SPOT_AFTER]
    answers = batch(*({"expr": e, "tz": tz, "after": a, "count": 7} for e, tz, a in cases))
    assert len(answers) == len(cases) == 60
    for (expr, tz, after), answer in zip(cases, answers, strict=True):
        zone = ZoneInfo(tz)
        cron = CronExpression.parse(expr)
        expected: list[str] = []
        t: datetime | None = parse_after(after, zone)
        while t is not None and len(expected) < 7:
            t = cron.next_after(t, zone)
            if t is not None:
                expected.append(t.isoformat())
        assert answer == {"next": expected}, (expr, tz, after)


# ----------------------------------------------------------------------------- the real program


def test_installed_program_prints_and_filters() -> None:
    assert JOBYARD.exists(), f"{JOBYARD} is not installed: pip install -e ."
    done = subprocess.run(
        [str(JOBYARD), "cron", "next", "0 0 12 ? * MON-FRI", "--tz", "Europe/Berlin", "-n", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    assert all(datetime.fromisoformat(t).utcoffset() is not None for t in lines)

    stdin = (
        '{"expr":"0 0 2 * * ?","tz":"Europe/Berlin","after":"2026-03-28T00:00:00","count":3}\n'
        '{"expr":"bad"}\n'
        "not json\n"
    )
    done = subprocess.run(
        [str(JOBYARD), "cron", "next", "--batch"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert answers[0] == {
        "next": [
            "2026-03-28T02:00:00+01:00",
            "2026-03-30T02:00:00+02:00",
            "2026-03-31T02:00:00+02:00",
        ]
    }
    assert answers[1]["error"].startswith("second: ")
    assert answers[2]["error"].startswith("line is not valid JSON")
    assert len(answers) == 3


def test_installed_program_error_exit_code() -> None:
    done = subprocess.run(
        [str(JOBYARD), "cron", "next", "0 0 0 32 * ?"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "day-of-month:" in done.stderr
