"""Schedules through the real CLI (subprocesses) against a real ``jobyard up``.

``jobyard schedules ...`` commands, and ``schedules:`` in the files of ``apply`` and
``export``. Each test uses its own jobconfig names. The schedules fire hourly or at night,
so no job is submitted while the tests run.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import as_json, ok
from tests.support.server import RunningServer, jobyard_command, server_fixture

server = server_fixture(scope="module", workers=1)

CLI_TIMEOUT = 120.0
Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(server: RunningServer, tmp_path: Path) -> Cli:
    """Run ``jobyard ARGS`` against the module's server; returns the completed process."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*jobyard_command(), *args],
            env=server.client_env(COLUMNS="200"),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )

    return run


def schedules(cli: Cli, config: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = as_json(cli("schedules", "list", config, "--json"))["items"]
    return items


def schedule_actions(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    report = json.loads(result.stdout)
    return {
        f"{j['name']}/{s['name']}": s["action"]
        for j in report["jobconfigs"]
        for s in j.get("schedules") or []
    }


def apply(cli: Cli, path: Path, text: str, *extra: str) -> subprocess.CompletedProcess[str]:
    path.write_text(text)
    return cli("apply", "-f", str(path), *extra)


# -- commands -------------------------------------------------------------------------


def test_add_list_update_pause_resume_delete(cli: Cli, tmp_path: Path) -> None:
    ok(
        apply(
            cli,
            tmp_path / "c.yaml",
            "jobconfigs:\n  - name: sc-cmd\n    command: [sh, -c, exit 0]\n",
        )
    )

    added = ok(cli("schedules", "add", "sc-cmd", "--every", "1h30m", "--misfire", "skip"))
    assert "created schedule" in added.stderr and "every 1h30m" in added.stdout
    nightly = as_json(
        cli(
            "schedules",
            "add",
            "sc-cmd",
            "--cron",
            "0 0 2 * * ?",
            "--tz",
            "Europe/Berlin",
            "--name",
            "nightly",
            "--macro",
            "MODE=full",
            "--json",
        )
    )
    assert nightly["kind"] == "cron" and nightly["macros"] == {"MODE": "full"}
    assert nightly["next_fire_at_local"].endswith(("T02:00:00+01:00", "T02:00:00+02:00"))

    table = ok(cli("schedules", "list", "sc-cmd")).stdout
    for text in ("every 1h30m", "nightly", "Europe/Berlin", "skip", "02:00:00"):
        assert text in table
    assert [s["name"] for s in schedules(cli, "sc-cmd")] == ["every 1h30m", "nightly"]

    refused = ok(cli("schedules", "add", "sc-cmd", "--cron", "0 0 25 * * ?"), 4)
    assert "Hour values must be between 0 and 23" in refused.stderr and "422" in refused.stderr
    taken = ok(cli("schedules", "add", "sc-cmd", "--cron", "0 0 3 * * ?", "--name", "nightly"), 4)
    assert "409" in taken.stderr
    assert len(schedules(cli, "sc-cmd")) == 2

    ok(
        cli(
            "schedules",
            "update",
            "sc-cmd",
            "nightly",
            "--cron",
            "0 30 3 * * ?",
            "--misfire",
            "skip",
        )
    )
    changed = as_json(cli("schedules", "show", "sc-cmd", "nightly", "--json"))
    assert (changed["cron"], changed["misfire_policy"], changed["macros"]) == (
        "0 30 3 * * ?",
        "skip",
        {"MODE": "full"},
    )

    assert "paused" in ok(cli("schedules", "pause", "sc-cmd", "nightly")).stdout
    paused = as_json(cli("schedules", "show", "sc-cmd", str(changed["id"]), "--json"))
    assert paused["paused"] is True and paused["next_fire_at"] is None
    assert "resumed" in ok(cli("schedules", "resume", "sc-cmd", "nightly")).stdout
    resumed = as_json(cli("schedules", "show", "sc-cmd", "nightly", "--json"))
    assert resumed["paused"] is False and resumed["next_fire_at"]

    assert "deleted" in ok(cli("schedules", "delete", "sc-cmd", "nightly")).stdout
    assert [s["name"] for s in schedules(cli, "sc-cmd")] == ["every 1h30m"]
    missing = ok(cli("schedules", "delete", "sc-cmd", "nightly"), 4)
    assert "no schedule 'nightly'" in missing.stderr


# -- apply / export -------------------------------------------------------------------

SPEC = """\
jobconfigs:
  - name: sc-apply
    command: [sh, -c, exit 0]
    schedules:
      - cron: "0 0 2 * * ?"
        timezone: Europe/Berlin
      - every: 1h30m
        misfire_policy: skip
      - every: {hours: 2}
        name: two-hourly
        start_at: "2026-01-01T00:15:00"
        timezone: America/New_York
        macros: {MODE: quick}
"""


def test_apply_creates_is_idempotent_and_deletes_what_is_gone(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    dry = ok(apply(cli, path, SPEC, "--dry-run"))
    assert "schedule two-hourly" in dry.stdout and "3 create" in dry.stdout
    assert ok(cli("jobconfigs", "show", "sc-apply"), 4)

    first = ok(apply(cli, path, SPEC, "--json"))
    assert set(schedule_actions(first).values()) == {"created"}
    created = {s["name"]: s for s in schedules(cli, "sc-apply")}
    assert set(created) == {"0 0 2 * * ?", "every 1h30m", "two-hourly"}
    assert created["two-hourly"]["start_at"] == "2026-01-01T05:15:00Z"
    assert created["every 1h30m"]["misfire_policy"] == "skip"

    again = ok(apply(cli, path, SPEC))
    assert "0 created, 0 updated, 1 unchanged" in again.stdout
    assert "schedules: 0 created, 0 updated, 0 deleted, 3 unchanged" in again.stdout
    assert {s["name"]: s["version"] for s in schedules(cli, "sc-apply")} == {
        name: s["version"] for name, s in created.items()
    }

    fewer = SPEC.replace('      - cron: "0 0 2 * * ?"\n        timezone: Europe/Berlin\n', "")
    fewer = fewer.replace("misfire_policy: skip", "misfire_policy: fire_once")
    dry = ok(apply(cli, path, fewer, "--dry-run"))
    assert "delete" in dry.stdout and "misfire_policy: skip → fire_once" in dry.stdout
    result = ok(apply(cli, path, fewer, "--json"))
    assert schedule_actions(result) == {
        "sc-apply/every 1h30m": "updated",
        "sc-apply/two-hourly": "unchanged",
        "sc-apply/0 0 2 * * ?": "deleted",
    }
    after = {s["name"]: s for s in schedules(cli, "sc-apply")}
    assert set(after) == {"every 1h30m", "two-hourly"}
    assert after["every 1h30m"]["start_at"] == created["every 1h30m"]["start_at"]  # kept anchor
    assert set(schedule_actions(ok(apply(cli, path, fewer, "--json"))).values()) == {"unchanged"}

    no_key = "jobconfigs:\n  - name: sc-apply\n    command: [sh, -c, exit 0]\n"
    ok(apply(cli, path, no_key))
    assert len(schedules(cli, "sc-apply")) == 2  # no `schedules` key: left alone


def test_a_bad_cron_fails_with_the_servers_message_and_creates_nothing(
    cli: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    bad = """\
jobconfigs:
  - name: sc-bad
    command: [sh, -c, exit 0]
    schedules:
      - every: 15m
      - cron: "0 0 25 * * ?"
"""
    result = ok(apply(cli, path, bad), 4)
    assert "Hour values must be between 0 and 23" in result.stdout
    assert "refused" in result.stdout and "failed" in result.stdout
    ok(cli("jobconfigs", "show", "sc-bad"), 4)  # the new jobconfig was put back too

    ok(apply(cli, path, "jobconfigs:\n  - name: sc-bad\n    command: [sh, -c, exit 0]\n"))
    as_json_result = ok(apply(cli, path, bad, "--json"), 4)
    report = json.loads(as_json_result.stdout)["jobconfigs"][0]
    assert report["action"] == "failed"
    assert "Hour values must be between 0 and 23" in report["error"]
    assert schedules(cli, "sc-bad") == []

    bad_zone = bad.replace('"0 0 25 * * ?"', '"0 0 2 * * ?"\n        timezone: Mars/Base')
    zone = ok(apply(cli, path, bad_zone), 4)
    assert "unknown time zone 'Mars/Base'" in zone.stdout
    assert schedules(cli, "sc-bad") == []


def test_export_round_trips(cli: Cli, tmp_path: Path) -> None:
    ok(apply(cli, tmp_path / "jobs.yaml", SPEC.replace("sc-apply", "sc-export")))
    ok(cli("schedules", "pause", "sc-export", "two-hourly"))
    exported = tmp_path / "exported.yaml"
    ok(cli("export", "-o", str(exported), "sc-export"))
    text = exported.read_text()
    assert "schedules:" in text and "name: two-hourly" in text and "paused: true" in text
    assert "timezone: Europe/Berlin" in text and "misfire_policy: skip" in text
    for computed in ("next_fire", "last_", "version", "created_at", "kind"):
        assert computed not in text
    before = schedules(cli, "sc-export")
    result = ok(cli("apply", "-f", str(exported), "--json"))
    assert set(schedule_actions(result).values()) == {"unchanged"}
    assert schedules(cli, "sc-export") == before

    # the same file on a fresh jobconfig gives the same schedules
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(text.replace("sc-export", "sc-export-copy"))
    ok(cli("apply", "-f", str(renamed)))
    fields = ("name", "cron", "interval_minutes", "start_at", "timezone", "misfire_policy")
    copy = schedules(cli, "sc-export-copy")
    assert [{f: s[f] for f in (*fields, "paused", "macros")} for s in copy] == [
        {f: s[f] for f in (*fields, "paused", "macros")} for s in before
    ]
