"""``jobyard schedules ...`` and schedules in ``apply`` / ``export``, against the fake API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobyard.cli.context import EXIT_API
from tests.unit.cli.conftest import Invoke
from tests.unit.cli.fakeapi import DEFAULTS, FakeApi


@pytest.fixture
def configs(fake: FakeApi) -> FakeApi:
    fake.jobconfigs[1] = {**DEFAULTS, "id": 1, "name": "etl", "command": ["x"]}
    return fake


def ok(result: Any, code: int = 0) -> Any:
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def listed(invoke: Invoke, config: str = "etl") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        ok(invoke("schedules", "list", config, "--json")).stdout
    )["items"]
    return items


# -- commands ------------------------------------------------------------------------


def test_add_list_show(invoke: Invoke, configs: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the table's cells unwrapped
    result = ok(invoke("schedules", "add", "etl", "--every", "1h30m", "--misfire", "skip"))
    assert "created schedule 1 (every 1h30m) of jobconfig etl" in result.stderr
    assert "every 1h30m" in result.stdout
    created = json.loads(
        ok(
            invoke(
                "schedules",
                "add",
                "1",
                "--cron",
                "0 0 2 * * ?",
                "--tz",
                "Europe/Berlin",
                "--name",
                "nightly",
                "--macro",
                "MODE=full",
                "--description",
                "the nightly one",
                "--start",
                "2026-02-01T00:00:00",
                "--paused",
                "--json",
            )
        ).stdout
    )
    assert created["name"] == "nightly" and created["paused"] is True
    assert created["macros"] == {"MODE": "full"} and created["start_at"] == "2026-01-31T23:00:00Z"
    items = listed(invoke)
    assert [(i["name"], i["kind"], i["misfire_policy"]) for i in items] == [
        ("every 1h30m", "interval", "skip"),
        ("nightly", "cron", "fire_once"),
    ]
    table = ok(invoke("schedules", "list", "etl")).stdout
    for text in ("every 1h30m", "nightly", "interval", "Europe/Berlin", "paused", "skip"):
        assert text in table
    shown = ok(invoke("schedules", "show", "etl", "nightly")).stdout
    assert "0 0 2 * * ?" in shown and "MODE=full" in shown
    assert json.loads(ok(invoke("schedules", "show", "etl", "2", "--json")).stdout)["id"] == 2


def test_update_pause_resume_delete(invoke: Invoke, configs: FakeApi) -> None:
    ok(invoke("schedules", "add", "etl", "--every", "1h"))
    result = ok(invoke("schedules", "update", "etl", "every 1h", "--every", "2h", "--tz", "UTC"))
    assert "updated schedule 1 (every 1h) of jobconfig etl" in result.stderr
    patches = [p for m, p in configs.requests if m == "PATCH"]
    assert patches == ["/api/v1/jobconfigs/1/schedules/1"]
    item = listed(invoke)[0]
    assert item["interval_minutes"] == 120 and item["name"] == "every 1h"

    ok(invoke("schedules", "update", "etl", "1", "--cron", "0 15 * * * ?", "--macro", "A=1"))
    item = listed(invoke)[0]
    assert item["kind"] == "cron" and item["macros"] == {"A": "1"} and item["start_at"] is None
    ok(invoke("schedules", "update", "etl", "1", "--clear-macros", "--paused"))
    item = listed(invoke)[0]
    assert item["macros"] == {} and item["paused"] is True

    assert "resumed schedule 1" in ok(invoke("schedules", "resume", "etl", "1")).stdout
    assert listed(invoke)[0]["paused"] is False
    assert "paused schedule 1" in ok(invoke("schedules", "pause", "etl", "every 1h")).stdout
    assert listed(invoke)[0]["paused"] is True
    assert "deleted schedule 1" in ok(invoke("schedules", "delete", "etl", "1")).stdout
    assert listed(invoke) == []
    assert "no schedules on etl" in ok(invoke("schedules", "list", "etl")).stderr


def test_server_refusals_exit_4_with_the_message(invoke: Invoke, configs: FakeApi) -> None:
    result = ok(invoke("schedules", "add", "etl", "--cron", "0 0 25 * * ?"), EXIT_API)
    assert "Hour values must be between 0 and 23" in result.stderr
    assert "HTTP 422" in result.stderr
    result = ok(invoke("schedules", "add", "etl", "--every", "soon"), EXIT_API)
    assert "invalid interval 'soon'" in result.stderr
    result = ok(invoke("schedules", "add", "etl", "--every", "1h", "--tz", "Mars/Base"), EXIT_API)
    assert "unknown time zone 'Mars/Base'" in result.stderr
    ok(invoke("schedules", "add", "etl", "--every", "1h"))
    result = ok(invoke("schedules", "add", "etl", "--every", "60m"), EXIT_API)
    assert "HTTP 409" in result.stderr
    assert listed(invoke)[0]["name"] == "every 1h" and len(listed(invoke)) == 1
    result = ok(invoke("schedules", "pause", "etl", "nope"), EXIT_API)
    assert "no schedule 'nope' on jobconfig 'etl'" in result.stderr
    result = ok(invoke("schedules", "list", "nope"), EXIT_API)
    assert "no jobconfig named 'nope'" in result.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["add", "etl"], "give --cron EXPR or --every INTERVAL"),
        (["add", "etl", "--cron", "0 0 * * * ?", "--every", "1h"], "not both"),
        (["add", "etl", "--every", "1h", "--misfire", "later"], "not one of fire_once, skip"),
        (["add", "etl", "--every", "1h", "--macro", "X"], "is not NAME=VALUE"),
        (["update", "etl", "1"], "nothing to change"),
        (["update", "etl", "1", "--macro", "A=1", "--clear-macros"], "not both"),
        (["list"], "Missing argument"),
    ],
)
def test_usage_errors_exit_2(
    invoke: Invoke, configs: FakeApi, args: list[str], needle: str
) -> None:
    result = ok(invoke("schedules", *args), 2)
    assert needle in result.output
    assert not configs.schedules.items


# -- apply / export --------------------------------------------------------------------

SPEC = """\
jobconfigs:
  - name: etl
    command: [x]
    schedules:
      - cron: "0 0 2 * * ?"
        timezone: Europe/Berlin
      - every: 1h30m
        misfire_policy: skip
"""


def actions(output: str) -> dict[str, str]:
    report = json.loads(output)
    return {
        f"{j['name']}/{s['name']}": s["action"]
        for j in report["jobconfigs"]
        for s in j["schedules"]
    }


def apply(invoke: Invoke, path: Path, text: str, *extra: str) -> Any:
    path.write_text(text)
    return invoke("apply", "-f", str(path), *extra)


def test_apply_creates_keeps_updates_and_deletes(
    invoke: Invoke, fake: FakeApi, tmp_path: Path
) -> None:
    path = tmp_path / "jobs.yaml"
    dry = ok(apply(invoke, path, SPEC, "--dry-run"))
    assert "schedule 0 0 2 * * ?" in dry.stdout and "timezone: Europe/Berlin" in dry.stdout
    assert "schedules: 2 create, 0 update, 0 delete, 0 unchanged" in dry.stdout
    assert not fake.jobconfigs and not fake.schedules.items

    first = ok(apply(invoke, path, SPEC, "--json"))
    assert actions(first.stdout) == {"etl/0 0 2 * * ?": "created", "etl/every 1h30m": "created"}
    assert len(fake.schedules.items) == 2
    writes = len([m for m, _ in fake.requests if m != "GET"])
    again = ok(apply(invoke, path, SPEC))
    assert "schedules: 0 created, 0 updated, 0 deleted, 2 unchanged" in again.stdout
    assert len([m for m, _ in fake.requests if m != "GET"]) == writes

    changed = SPEC.replace("misfire_policy: skip", "misfire_policy: fire_once")
    changed = changed.replace('      - cron: "0 0 2 * * ?"\n        timezone: Europe/Berlin\n', "")
    dry = ok(apply(invoke, path, changed, "--dry-run"))
    assert "misfire_policy: skip → fire_once" in dry.stdout
    assert "schedule 0 0 2 * * ?" in dry.stdout and "delete" in dry.stdout
    result = ok(apply(invoke, path, changed, "--json"))
    assert actions(result.stdout) == {
        "etl/every 1h30m": "updated",
        "etl/0 0 2 * * ?": "deleted",
    }
    [left] = fake.schedules.items.values()
    assert left["misfire_policy"] == "fire_once" and left["start_at"] is not None

    no_key = "jobconfigs:\n  - name: etl\n    command: [x]\n"
    result = ok(apply(invoke, path, no_key, "--json"))
    assert "schedules" not in json.loads(result.stdout)["jobconfigs"][0]
    assert len(fake.schedules.items) == 1
    ok(apply(invoke, path, no_key + "    schedules: []\n"))
    assert not fake.schedules.items


def test_a_refused_schedule_puts_the_jobconfig_back(
    invoke: Invoke, fake: FakeApi, tmp_path: Path
) -> None:
    path = tmp_path / "jobs.yaml"
    ok(apply(invoke, path, SPEC))
    before = {k: dict(v) for k, v in fake.schedules.items.items()}
    bad = SPEC.replace("command: [x]", "command: [y]").replace(
        "misfire_policy: skip", "misfire_policy: fire_once\n      - cron: 0 0 25 * * ?"
    )
    bad = bad.replace('      - cron: "0 0 2 * * ?"\n        timezone: Europe/Berlin\n', "")
    bad += "  - name: fresh\n    command: [z]\n    schedules:\n      - cron: 0 0 3 * * * *\n"
    result = ok(apply(invoke, path, bad, "--json"), EXIT_API)
    report = json.loads(result.stdout)["jobconfigs"]
    assert [j["action"] for j in report] == ["failed", "failed"]
    assert report[0]["error"].startswith(
        "schedule '0 0 25 * * ?': hour: Hour values must be between 0 and 23 (HTTP 422"
    )
    assert report[0]["schedules"][1]["action"] == "failed"
    assert "Support for specifying both a day-of-week AND a day-of-month" in report[1]["error"]
    # nothing of this run is left: the update, the deletion and the new jobconfig
    assert fake.jobconfigs[1]["command"] == ["x"]
    assert [j["name"] for j in fake.jobconfigs.values()] == ["etl"]
    assert {k: (v["misfire_policy"], v["name"]) for k, v in fake.schedules.items.items()} == {
        k: (v["misfire_policy"], v["name"]) for k, v in before.items()
    }
    table = ok(apply(invoke, path, bad), EXIT_API)
    assert "schedule '0 0 25 * * ?' refused (below)" in table.stdout
    assert "Hour values must be between 0 and 23" in table.stdout


def test_export_writes_schedules_and_applies_as_a_no_op(
    invoke: Invoke, fake: FakeApi, tmp_path: Path
) -> None:
    path = tmp_path / "jobs.yaml"
    ok(apply(invoke, path, SPEC))
    exported = ok(invoke("export")).stdout
    assert "schedules:" in exported and "timezone: Europe/Berlin" in exported
    assert "next_fire" not in exported and "version" not in exported
    again = ok(apply(invoke, tmp_path / "exported.yaml", exported, "--json"))
    assert set(actions(again.stdout).values()) == {"unchanged"}
