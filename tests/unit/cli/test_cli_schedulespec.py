"""Schedules in apply files: parsing, the plan against the server's, and export."""

from __future__ import annotations

from typing import Any

import pytest

from jobyard.cli.plan import Action, FieldChange, diff_schedule, plan_schedules
from jobyard.cli.schedulespec import ScheduleDecl, export_schedule, instant
from jobyard.cli.yamlspec import SpecError, dump_export, parse_apply_text

HEAD = "jobconfigs:\n  - name: a\n    command: [x]\n"


def schedules(text: str) -> tuple[ScheduleDecl, ...] | None:
    return parse_apply_text(HEAD + text).jobconfigs[0].schedules


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_apply_text(HEAD + text, source="f.yaml")
    return str(info.value).splitlines()


def server(**fields: Any) -> dict[str, Any]:
    """A schedule as the API returns it."""
    base: dict[str, Any] = {
        "id": 9,
        "jobconfig_id": 1,
        "name": "every 1h",
        "kind": "interval",
        "cron": None,
        "every": {"hours": 1, "minutes": 0},
        "interval_minutes": 60,
        "start_at": "2026-01-01T10:17:00Z",
        "timezone": "UTC",
        "misfire_policy": "fire_once",
        "paused": False,
        "macros": {},
        "description": "",
        "next_fire_at": "2026-01-01T11:17:00Z",
        "next_fire_at_local": "2026-01-01T11:17:00Z",
        "last_fire_at": None,
        "last_result": None,
        "version": 1,
    }
    base.update(fields)
    return base


# -- parsing ----------------------------------------------------------------------------


def test_no_key_means_leave_alone_and_an_empty_key_means_none() -> None:
    assert parse_apply_text(HEAD).jobconfigs[0].schedules is None
    assert schedules("    schedules: []\n") == ()
    assert schedules("    schedules:\n") == ()


def test_defaults_and_derived_names() -> None:
    got = schedules(
        """    schedules:
      - cron: "0  0 2 * * ?"
        timezone: Europe/Berlin
      - every: 1h30m
        misfire_policy: skip
      - every: {hours: 2}
        name: "  two-hourly "
        start_at: 2026-01-01T00:15:00
        paused: true
        macros: {MODE: quick, N: 3}
        description: d
      - every: 45
"""
    )
    assert got is not None
    cron, ninety, two, minutes = got
    assert (cron.name, cron.cron, cron.timezone, cron.line) == (
        "0 0 2 * * ?",
        "0 0 2 * * ?",
        "Europe/Berlin",
        5,
    )
    assert (ninety.name, ninety.interval_minutes, ninety.misfire_policy) == (
        "every 1h30m",
        90,
        "skip",
    )
    assert two.name == "two-hourly" and two.interval_minutes == 120
    assert two.start_at == "2026-01-01T00:15:00"  # YAML's datetime back to text
    assert two.paused and two.macros == {"MODE": "quick", "N": "3"} and two.description == "d"
    assert minutes.name == "every 45m"
    assert cron.body() == {
        "name": "0 0 2 * * ?",
        "cron": "0 0 2 * * ?",
        "timezone": "Europe/Berlin",
        "misfire_policy": "fire_once",
        "paused": False,
        "macros": {},
        "description": "",
    }
    assert two.body()["interval_minutes"] == 120 and two.body()["start_at"] == two.start_at


def test_schedule_problems_have_lines() -> None:
    found = problems(
        """    schedules:
      - cron: "0 0 2 * * ?"
        every: 1h
      - {}
      - every: soon
      - every: {hours: 1, days: 2}
      - cron: "0 0 2 * * ?"
        colour: red
      - cron: "0 0 2 * * ?"
        misfire_policy: later
      - every: 1h
        start_at: tomorrow
"""
    )
    text = "\n".join(found)
    assert "f.yaml:5: jobconfigs[0].schedules[0]: give exactly one of `cron`" in text
    assert "f.yaml:7: jobconfigs[0].schedules[1]: give exactly one of `cron`" in text
    assert "f.yaml:8: jobconfigs[0].schedules[2].every: invalid interval 'soon'" in text
    assert "f.yaml:9: jobconfigs[0].schedules[3].every: unknown key(s) days" in text
    assert (
        "f.yaml:11: jobconfigs[0].schedules[4]: unknown key 'colour' (allowed: name, cron" in text
    )
    assert "f.yaml:13: jobconfigs[0].schedules[5].misfire_policy:" in text
    assert "f.yaml:15: jobconfigs[0].schedules[6].start_at: start_at 'tomorrow' is not" in text


def test_duplicate_schedule_names_are_refused() -> None:
    found = problems(
        """    schedules:
      - cron: "0 0 2 * * ?"
      - cron: "0  0 2 * * ?"
        timezone: Europe/Paris
"""
    )
    assert found == [
        "f.yaml:6: jobconfigs[0].schedules[1]: duplicate schedule name '0 0 2 * * ?' "
        "(first at line 5): give each schedule of a jobconfig its own `name`"
    ]


# -- plan ----------------------------------------------------------------------------------


def decl(**fields: Any) -> ScheduleDecl:
    fields.setdefault("name", "every 1h")
    if "cron" not in fields:
        fields.setdefault("interval_minutes", 60)
    return ScheduleDecl(**fields)


def test_plan_creates_updates_deletes_and_keeps() -> None:
    current = [
        server(),
        server(id=10, name="gone"),
        server(
            id=11, name="cron", cron="0 0 2 * * ?", interval_minutes=None, every=None, start_at=None
        ),
    ]
    items = plan_schedules(
        [decl(), decl(name="new", cron="0 0 3 * * ?"), decl(name="cron", cron="0 0 4 * * ?")],
        current,
    )
    assert [(i.name, i.action, i.schedule_id) for i in items] == [
        ("every 1h", Action.UNCHANGED, 9),  # the anchor the server chose is not compared
        ("new", Action.CREATE, None),
        ("cron", Action.UPDATE, 11),
        ("gone", Action.DELETE, 10),
    ]
    assert items[1].changes == (FieldChange("cron", None, "0 0 3 * * ?"),)
    assert items[1].body is not None and items[1].body["name"] == "new"
    assert items[2].changes == (FieldChange("cron", "0 0 2 * * ?", "0 0 4 * * ?"),)
    assert items[2].body == {"cron": "0 0 4 * * ?"}
    assert items[2].undo == {"cron": "0 0 2 * * ?"}


def test_start_at_compares_instants_in_the_schedule_zone() -> None:
    berlin = server(timezone="Europe/Berlin", start_at="2026-01-01T09:17:00Z")
    same = decl(start_at="2026-01-01T10:17:00", timezone="Europe/Berlin")
    assert not diff_schedule(same, berlin).changes
    assert not diff_schedule(
        decl(start_at="2026-01-01T10:17:00+01:00"), server(start_at="2026-01-01T09:17:00Z")
    ).changes
    moved = diff_schedule(decl(start_at="2026-01-01T10:18:00"), server())
    assert moved.patch == {"start_at": "2026-01-01T10:18:00"}
    assert moved.undo == {"start_at": "2026-01-01T10:17:00Z"}
    assert instant("2026-07-01T02:00:00", "Europe/Berlin") == instant("2026-07-01T00:00:00Z", "UTC")
    assert instant("2026-07-01T02:00:00", "No/Such_Zone") is None


def test_cron_start_at_left_out_clears_it() -> None:
    current = server(name="c", cron="0 0 2 * * ?", interval_minutes=None, every=None)
    diff = diff_schedule(decl(name="c", cron="0 0 2 * * ?"), current)
    assert diff.patch == {"start_at": None}
    assert diff.undo == {"start_at": "2026-01-01T10:17:00Z"}


def test_switching_kind_patches_the_new_kind_and_can_be_undone() -> None:
    diff = diff_schedule(decl(name="every 1h", cron="0 0 2 * * ?", misfire_policy="skip"), server())
    assert diff.changes == [
        FieldChange("cron", None, "0 0 2 * * ?"),
        FieldChange("every", "1h", None),
        FieldChange("misfire_policy", "fire_once", "skip"),
    ]
    assert diff.patch == {"cron": "0 0 2 * * ?", "misfire_policy": "skip"}
    assert diff.undo == {
        "cron": None,
        "interval_minutes": 60,
        "start_at": "2026-01-01T10:17:00Z",
        "misfire_policy": "fire_once",
    }


def test_other_fields_are_compared() -> None:
    wanted = decl(paused=True, macros={"A": "1"}, description="x", timezone="Asia/Tokyo")
    diff = diff_schedule(wanted, server())
    assert [c.field for c in diff.changes] == ["timezone", "paused", "macros", "description"]
    assert diff.patch == {
        "timezone": "Asia/Tokyo",
        "paused": True,
        "macros": {"A": "1"},
        "description": "x",
    }


# -- export ----------------------------------------------------------------------------


def test_export_leaves_out_defaults_and_computed_fields() -> None:
    assert export_schedule(server()) == {"every": "1h", "start_at": "2026-01-01T10:17:00+00:00"}
    berlin = server(
        name="nightly",
        cron="0 0 2 * * ?",
        interval_minutes=None,
        every=None,
        start_at=None,
        timezone="Europe/Berlin",
        misfire_policy="skip",
        paused=True,
        macros={"A": "1"},
        description="d",
    )
    assert export_schedule(berlin) == {
        "name": "nightly",
        "cron": "0 0 2 * * ?",
        "timezone": "Europe/Berlin",
        "misfire_policy": "skip",
        "paused": True,
        "macros": {"A": "1"},
        "description": "d",
    }


def test_export_reads_back_as_the_same_schedules() -> None:
    items = [
        server(timezone="Europe/Berlin", name="hourly", macros={"A": "1"}),
        server(id=2, name="0 0 2 * * ?", cron="0 0 2 * * ?", start_at=None, interval_minutes=None),
    ]
    text = dump_export([{"name": "a", "command": ["x"], "schedules": items}])
    assert "next_fire" not in text and "version" not in text and "id:" not in text
    parsed = parse_apply_text(text).jobconfigs[0].schedules
    assert parsed is not None
    assert [i.action for i in plan_schedules(parsed, items)] == [Action.UNCHANGED] * 2
    without = dump_export([{"name": "a", "command": ["x"], "schedules": []}])
    assert "schedules" not in without
