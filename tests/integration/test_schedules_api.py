"""Schedules through the real API: CRUD, bad input (422, nothing stored), 404/409/401, firing."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Env, ServerFactory

JOBCONFIGS = "/api/v1/jobconfigs"
HOURLY = "0 0 * * * ?"


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.text}"
    body = r.json()
    assert set(body) == {"error"}
    assert {"code", "message", "details"} <= set(body["error"])
    assert body["error"]["message"]
    return dict(body["error"])


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _now() -> datetime:
    return datetime.now(UTC)


async def _jobconfig(env: Env, name: str = "nightly") -> dict[str, Any]:
    r = await env.client.post(JOBCONFIGS, json={"name": name, "command": ["true"]})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _base(jobconfig_id: int) -> str:
    return f"{JOBCONFIGS}/{jobconfig_id}/schedules"


async def _create(env: Env, jobconfig_id: int, body: dict[str, Any]) -> dict[str, Any]:
    r = await env.client.post(_base(jobconfig_id), json=body)
    assert r.status_code == 201, f"{body}: {r.text}"
    return dict(r.json())


async def _items(env: Env, jobconfig_id: int) -> list[dict[str, Any]]:
    r = await env.client.get(_base(jobconfig_id))
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def _rows(env: Env, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the embedded SQLite database directly (what is really stored)."""
    db = sqlite3.connect(f"file:{env.settings.home / 'jobyard.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


# ----------------------------------------------------------------------------- CRUD


async def test_crud_round_trip(env: Env) -> None:
    jc = await _jobconfig(env)
    assert jc["owner"] == "admin"
    base = _base(jc["id"])
    assert await _items(env, jc["id"]) == []

    before = _now()
    cron = await _create(env, jc["id"], {"cron": "0  0 9 * * ?", "timezone": "Europe/Berlin"})
    assert cron["kind"] == "cron"
    assert cron["cron"] == "0 0 9 * * ?"  # whitespace normalised
    assert cron["name"] == "0 0 9 * * ?"  # default name: the expression
    assert (cron["every"], cron["interval_minutes"], cron["start_at"]) == (None, None, None)
    assert cron["timezone"] == "Europe/Berlin"
    assert (cron["misfire_policy"], cron["paused"], cron["version"]) == ("fire_once", False, 1)
    assert (cron["last_fire_at"], cron["last_result"]) == (None, None)
    assert cron["jobconfig_id"] == jc["id"]
    utc, local = _ts(cron["next_fire_at"]), _ts(cron["next_fire_at_local"])
    assert utc == local  # the same instant ...
    assert utc.utcoffset() == timedelta(0)
    assert cron["next_fire_at_local"][-6:] in {"+01:00", "+02:00"}  # ... in Berlin time
    assert (local.hour, local.minute, local.second) == (9, 0, 0)
    assert before < utc <= before + timedelta(days=1, hours=1)

    every_obj = await _create(env, jc["id"], {"every": {"hours": 2}})
    every_txt = await _create(env, jc["id"], {"every": "1h30m", "description": "text form"})
    minutes = await _create(env, jc["id"], {"interval_minutes": 45, "misfire_policy": "skip"})
    for s, total, name in [
        (every_obj, 120, "every 2h"),
        (every_txt, 90, "every 1h30m"),
        (minutes, 45, "every 45m"),
    ]:
        assert s["kind"] == "interval"
        assert s["name"] == name
        assert s["cron"] is None
        assert s["interval_minutes"] == total
        assert s["every"] == {"hours": total // 60, "minutes": total % 60}
        anchor = _ts(s["start_at"])  # default anchor: creation, on the whole minute
        assert (anchor.second, anchor.microsecond) == (0, 0)
        assert before - timedelta(minutes=1) < anchor <= _now()
        assert _ts(s["next_fire_at"]) - anchor == timedelta(minutes=total)
        assert s["next_fire_at_local"] == s["next_fire_at"]  # UTC zone
    assert every_txt["description"] == "text form"
    assert minutes["misfire_policy"] == "skip"

    listed = await _items(env, jc["id"])
    created = [cron, every_obj, every_txt, minutes]
    assert [s["id"] for s in listed] == [s["id"] for s in created]
    assert listed == created
    for s in created:
        got = await env.client.get(f"{base}/{s['id']}")
        assert got.status_code == 200
        assert got.json() == s

    # PUT replaces every writable field; the next fire time is recomputed.
    r = await env.client.put(
        f"{base}/{cron['id']}",
        json={
            "cron": "0 30 18 ? * MON-FRI",
            "timezone": "America/New_York",
            "misfire_policy": "skip",
            "description": "weekdays",
        },
    )
    assert r.status_code == 200, r.text
    put = r.json()
    assert (put["id"], put["created_at"]) == (cron["id"], cron["created_at"])
    assert put["version"] == 2
    assert _ts(put["updated_at"]) > _ts(cron["updated_at"])
    assert put["name"] == "0 30 18 ? * MON-FRI"
    assert (put["timezone"], put["misfire_policy"], put["description"]) == (
        "America/New_York",
        "skip",
        "weekdays",
    )
    local = _ts(put["next_fire_at_local"])
    assert (local.hour, local.minute, local.weekday() < 5) == (18, 30, True)
    assert put["next_fire_at_local"][-6:] in {"-05:00", "-04:00"}
    assert _ts(put["next_fire_at"]) == local != utc
    # A PUT without the optional fields resets them to their defaults.
    r = await env.client.put(f"{base}/{cron['id']}", json={"cron": "0 15 10 * * ?"})
    assert r.status_code == 200, r.text
    reset = r.json()
    assert (reset["timezone"], reset["misfire_policy"], reset["description"]) == (
        "UTC",
        "fire_once",
        "",
    )
    assert reset["version"] == 3
    assert reset["next_fire_at"].endswith("T10:15:00Z")

    # PATCH changes only the given fields; a non-timing change keeps the next fire time.
    r = await env.client.patch(f"{base}/{every_txt['id']}", json={"description": "changed"})
    assert r.status_code == 200, r.text
    patched = r.json()
    assert patched["description"] == "changed"
    assert patched["version"] == every_txt["version"] + 1
    unchanged = {k: v for k, v in every_txt.items() if k not in {"description", "version"}}
    assert {k: patched[k] for k in unchanged if k != "updated_at"} == {
        k: v for k, v in unchanged.items() if k != "updated_at"
    }
    # A new cron re-times.
    r = await env.client.patch(f"{base}/{cron['id']}", json={"cron": "0 45 23 * * ?"})
    assert r.status_code == 200, r.text
    assert r.json()["next_fire_at"].endswith("T23:45:00Z")
    assert r.json()["version"] == 4
    # A default name follows the expression (a name given by the user would stay).
    assert reset["name"] != "0 45 23 * * ?"
    assert r.json()["name"] == "0 45 23 * * ?"

    # PATCH cron onto an interval switches kind (the interval and its anchor go).
    r = await env.client.patch(
        f"{base}/{every_obj['id']}", json={"cron": "0 0 6 * * ?", "timezone": "Asia/Kolkata"}
    )
    assert r.status_code == 200, r.text
    switched = r.json()
    assert switched["kind"] == "cron"
    assert (switched["every"], switched["interval_minutes"], switched["start_at"]) == (
        None,
        None,
        None,
    )
    assert switched["next_fire_at_local"].endswith("T06:00:00+05:30")
    # ... and an interval onto a cron schedule switches back.
    r = await env.client.patch(f"{base}/{every_obj['id']}", json={"every": "15m"})
    assert r.status_code == 200, r.text
    back = r.json()
    assert (back["kind"], back["cron"], back["interval_minutes"]) == ("interval", None, 15)
    assert back["start_at"] is not None
    assert _ts(back["next_fire_at"]) - _ts(back["start_at"]) == timedelta(minutes=15)

    # Pause: no next fire time; idempotent; resume fires from after now.
    r = await env.client.post(f"{base}/{minutes['id']}/pause")
    assert r.status_code == 200, r.text
    paused = r.json()
    assert paused["paused"] is True
    assert (paused["next_fire_at"], paused["next_fire_at_local"]) == (None, None)
    again = await env.client.post(f"{base}/{minutes['id']}/pause")
    assert again.status_code == 200
    assert again.json() == paused  # nothing changed, not even the version
    assert (await env.client.get(f"{base}/{minutes['id']}")).json() == paused
    resume_at = _now()
    r = await env.client.post(f"{base}/{minutes['id']}/resume")
    assert r.status_code == 200, r.text
    resumed = r.json()
    assert resumed["paused"] is False
    assert _ts(resumed["next_fire_at"]) > resume_at
    assert resumed["version"] == paused["version"] + 1
    assert (await env.client.post(f"{base}/{minutes['id']}/resume")).json() == resumed
    # PATCH {"paused": true} pauses too.
    r = await env.client.patch(f"{base}/{minutes['id']}", json={"paused": True})
    assert r.status_code == 200, r.text
    assert (r.json()["paused"], r.json()["next_fire_at"]) == (True, None)

    # Delete: 204, then 404.
    r = await env.client.delete(f"{base}/{every_txt['id']}")
    assert r.status_code == 204
    assert r.content == b""
    _error(await env.client.get(f"{base}/{every_txt['id']}"), 404)
    _error(await env.client.delete(f"{base}/{every_txt['id']}"), 404)
    assert [s["id"] for s in await _items(env, jc["id"])] == [
        cron["id"],
        every_obj["id"],
        minutes["id"],
    ]


async def test_deleting_the_jobconfig_deletes_its_schedules(env: Env) -> None:
    jc = await _jobconfig(env, "doomed")
    keep = await _jobconfig(env, "kept")
    ids = [
        (await _create(env, jc["id"], {"cron": HOURLY}))["id"],
        (await _create(env, jc["id"], {"every": "5m"}))["id"],
    ]
    kept = await _create(env, keep["id"], {"cron": HOURLY})
    assert (await env.client.delete(f"{JOBCONFIGS}/{jc['id']}")).status_code == 204
    _error(await env.client.get(_base(jc["id"])), 404)
    _error(await env.client.get(f"{_base(jc['id'])}/{ids[0]}"), 404)
    assert _rows(env, "SELECT id FROM schedules WHERE jobconfig_id = ?", jc["id"]) == []
    assert await _items(env, keep["id"]) == [kept]


async def test_start_at_and_misfire_policy_round_trip(env: Env) -> None:
    jc = await _jobconfig(env)
    # An interval anchored at a wall time in its zone (no offset given).
    s = await _create(
        env,
        jc["id"],
        {"every": "1h", "start_at": "2030-07-01T08:15:00", "timezone": "Europe/Berlin"},
    )
    assert _ts(s["start_at"]) == datetime(2030, 7, 1, 6, 15, tzinfo=UTC)
    assert _ts(s["next_fire_at"]) == _ts(s["start_at"])  # the anchor is the first firing
    assert s["next_fire_at_local"].endswith("T08:15:00+02:00")
    # For cron, start_at means "not before".
    c = await _create(
        env,
        jc["id"],
        {"cron": HOURLY, "start_at": "2031-01-01T00:30:00Z", "misfire_policy": "skip"},
    )
    assert _ts(c["next_fire_at"]) == datetime(2031, 1, 1, 1, 0, tzinfo=UTC)
    assert c["misfire_policy"] == "skip"


async def test_daylight_saving_follows_quartz(env: Env) -> None:
    """As Quartz 2.3: a wall time inside the spring-forward gap does not fire that day; a
    repeated wall time fires once, at its later (standard-time) instant."""
    jc = await _jobconfig(env)
    daily = {"cron": "0 30 2 * * ?", "timezone": "Europe/Berlin"}
    spring = await _create(env, jc["id"], {**daily, "start_at": "2030-03-30T12:00:00Z"})
    assert _ts(spring["next_fire_at"]) == datetime(2030, 4, 1, 0, 30, tzinfo=UTC)
    assert spring["next_fire_at_local"].endswith("T02:30:00+02:00")
    autumn = await _create(
        env, jc["id"], {**daily, "start_at": "2030-10-26T12:00:00Z", "name": "autumn"}
    )
    assert _ts(autumn["next_fire_at"]) == datetime(2030, 10, 27, 1, 30, tzinfo=UTC)
    assert autumn["next_fire_at_local"] == "2030-10-27T02:30:00+01:00"
    # An interval is an absolute duration: its anchor is read in the zone once, then
    # every firing is start_at + n * interval whatever the clocks do.
    interval = await _create(
        env,
        jc["id"],
        {"every": "1h", "start_at": "2030-03-31T01:00:00", "timezone": "Europe/Berlin"},
    )
    assert _ts(interval["next_fire_at"]) == datetime(2030, 3, 31, 0, 0, tzinfo=UTC)


# ----------------------------------------------------------------------------- bad input

#: (cron expression, field named in the message, problem substring)
BAD_CRONS: list[tuple[str, str, str]] = [
    ("60 * * * * ?", "second", "between 0 and 59"),
    ("0 60 * * * ?", "minute", "between 0 and 59"),
    ("0 0 24 * * ?", "hour", "between 0 and 23"),
    ("0 0 0 32 * ?", "day-of-month", "between 1 and 31"),
    ("0 0 0 0 * ?", "day-of-month", "between 1 and 31"),
    ("0 0 0 1 13 ?", "month", "between 1 and 12"),
    ("0 0 0 ? * 8", "day-of-week", "between 1 and 7"),
    ("0 0 0 ? * 1-9", "day-of-week", "between 1 and 7"),
    ("0 0 0 ? * ?", "day-of-week", "'?' can only be specified"),
    ("0 0 0 * * *", "day-of-week", "day-of-week AND a day-of-month"),
    ("0 0 0 1 * MON", "day-of-week", "day-of-week AND a day-of-month"),
    ("0 0 0 ? * FOO", "day-of-week", "'FOO'"),
    ("0 0 0 ? FOO *", "month", "'FOO'"),
    ("0 0 0 L-40 * ?", "day-of-month", "<= 30"),
    ("0 0 0 ? * 5#6", "day-of-week", "between 1 and 5"),
    ("0 0 0 ? * MON#0", "day-of-week", "between 1 and 5"),
    ("0 0/60 * * * ?", "minute", "Increment"),
    ("0 0 *", "day-of-month", "6 or 7 fields"),
    ("0 0 0 * *", "day-of-week", "6 or 7 fields"),
    ("@daily", "second", "@"),
    ("bad", "second", "'BAD'"),
]

#: Seconds-level cron, refused unless scheduler.allow_seconds.
SECONDS_CRONS = ["* * * * * ?", "0/10 * * * * ?", "0,30 * * * * ?", "*/0 * * * * ?"]

#: (body, substrings of the message) for POST; each must answer 422 and store nothing.
BAD_BODIES: list[tuple[dict[str, Any], list[str]]] = [
    # zones
    ({"cron": HOURLY, "timezone": "Mars/Base"}, ["unknown time zone 'Mars/Base'", "IANA"]),
    ({"cron": HOURLY, "timezone": ""}, ["timezone"]),
    ({"cron": HOURLY, "timezone": "europe/berlin"}, ["did you mean 'Europe/Berlin'"]),
    ({"cron": HOURLY, "timezone": "AMERICA/NEW_YORK"}, ["did you mean 'America/New_York'"]),
    ({"cron": HOURLY, "timezone": "../etc/passwd"}, ["unknown time zone"]),
    ({"cron": HOURLY, "timezone": "+01:00"}, ["unknown time zone"]),
    ({"cron": HOURLY, "timezone": None}, ["timezone"]),
    ({"every": "1h", "timezone": "Nope/Zone"}, ["unknown time zone 'Nope/Zone'"]),
    # intervals
    ({"interval_minutes": 0}, ["interval_minutes", "greater than or equal to 1"]),
    ({"interval_minutes": -5}, ["interval_minutes", "greater than or equal to 1"]),
    ({"interval_minutes": 366 * 24 * 60 + 1}, ["interval_minutes", "527040"]),
    ({"every": {"hours": 0, "minutes": 0}}, ["smallest is 1 minute"]),
    ({"every": {}}, ["smallest is 1 minute"]),
    ({"every": "0m"}, ["smallest is 1 minute"]),
    ({"every": "9000h"}, ["largest 527040 minutes"]),
    ({"every": {"hours": 9000}}, ["every", "8784"]),
    ({"every": {"hours": 9000, "minutes": 1}}, ["every", "8784"]),
    ({"every": {"hours": 8784, "minutes": 60}}, ["largest 527040 minutes"]),
    ({"every": {"minutes": -1}}, ["every", "greater than or equal to 0"]),
    ({"every": "-5m"}, ["invalid interval '-5m'", "1h30m"]),
    ({"every": "90x"}, ["invalid interval '90x'", "1h30m"]),
    ({"every": "1.5h"}, ["invalid interval '1.5h'"]),
    ({"every": "   "}, ["invalid interval", "1h30m"]),
    ({"every": ""}, ["every"]),
    ({"every": {"hours": 1, "seconds": 5}}, ["every", "seconds"]),
    # structure
    ({"cron": HOURLY, "every": "1h"}, ["exactly one of 'cron'", "'every'"]),
    ({"cron": HOURLY, "interval_minutes": 60}, ["exactly one of 'cron'", "'every'"]),
    ({}, ["exactly one of 'cron'", "'every'"]),
    ({"cron": None, "every": None}, ["exactly one of 'cron'"]),
    ({"every": "1h", "interval_minutes": 60}, ["'every' or 'interval_minutes', not both"]),
    ({"cron": ""}, ["cron"]),
    ({"cron": "0 " * 300}, ["cron", "400"]),
    ({"cron": HOURLY, "misfire_policy": "later"}, ["misfire_policy", "'fire_once' or 'skip'"]),
    ({"cron": HOURLY, "start_at": "tomorrow"}, ["start_at"]),
    ({"cron": HOURLY, "start_at": "2030-13-01T00:00:00Z"}, ["start_at"]),
    ({"cron": HOURLY, "paused": "maybe"}, ["paused"]),
    ({"cron": HOURLY, "bogus": 1}, ["bogus", "not permitted"]),
    ({"cron_expr": HOURLY}, ["cron_expr", "not permitted"]),
    ({"cron": HOURLY, "name": "a\nb"}, ["schedule name", "control characters"]),
    ({"cron": HOURLY, "name": "x" * 129}, ["name"]),
    ({"cron": HOURLY, "description": "x" * 2001}, ["description"]),
    # macros
    ({"cron": HOURLY, "macros": {"JOB_ID": "1"}}, ["'JOB_ID'", "cannot be overridden"]),
    ({"cron": HOURLY, "macros": {"bad name": "1"}}, ["invalid macro name 'bad name'"]),
    ({"cron": HOURLY, "macros": {"1ab": "1"}}, ["invalid macro name '1ab'"]),
    ({"cron": HOURLY, "macros": {"": "1"}}, ["macro"]),
    ({"cron": HOURLY, "macros": {"A": 1}}, ["macros"]),
    ({"cron": HOURLY, "macros": ["A"]}, ["macros"]),
]


def _check_422(
    r: httpx.Response, case: object, substrings: list[str], failures: list[str]
) -> dict[str, Any] | None:
    if r.status_code != 422:
        failures.append(f"{r.request.method} {case!r}: {r.status_code} {r.text}")
        return None
    err = dict(r.json()["error"])
    missing = [s for s in substrings if s.lower() not in err["message"].lower()]
    if missing:
        failures.append(f"{r.request.method} {case!r}: message lacks {missing}: {err['message']}")
    return err


async def test_bad_input_is_refused_with_what_to_fix_and_nothing_stored(env: Env) -> None:
    jc = await _jobconfig(env)
    base = _base(jc["id"])
    existing = await _create(env, jc["id"], {"cron": "0 0 3 * * ?", "name": "existing"})
    stored = await _items(env, jc["id"])
    db_before = _rows(env, "SELECT * FROM schedules ORDER BY id")
    failures: list[str] = []

    for expr, field, problem in BAD_CRONS:
        err = _check_422(
            await env.client.post(base, json={"cron": expr}), expr, [problem], failures
        )
        if err is None:
            continue
        if not err["message"].startswith(f"{field}: "):
            failures.append(f"{expr!r}: message does not start with {field!r}: {err['message']}")
        if (err["code"], err["details"].get("field")) != ("invalid_cron", field):
            failures.append(f"{expr!r}: code/details {err['code']} {err['details']}")

    for expr in SECONDS_CRONS:
        _check_422(
            await env.client.post(base, json={"cron": expr}),
            expr,
            ["more often than once a minute", "scheduler.allow_seconds"],
            failures,
        )

    for body, substrings in BAD_BODIES:
        err = _check_422(await env.client.post(base, json=body), body, substrings, failures)
        if err is not None and err["code"] not in {"invalid_input", "invalid_timezone"}:
            failures.append(f"{body!r}: code {err['code']}")

    assert not failures, "\n".join(failures)
    assert await _items(env, jc["id"]) == stored
    assert _rows(env, "SELECT * FROM schedules ORDER BY id") == db_before
    assert (await env.client.get(f"{base}/{existing['id']}")).json() == existing


#: (body, substrings) refused by both PUT and PATCH of a stored schedule.
BAD_UPDATES: list[tuple[dict[str, Any], list[str]]] = [
    ({"cron": "0 0 0 32 * ?"}, ["day-of-month", "between 1 and 31"]),
    ({"cron": "0 0 0 ? * ?"}, ["day-of-week", "'?'"]),
    ({"cron": "0/10 * * * * ?"}, ["scheduler.allow_seconds"]),
    ({"cron": HOURLY, "timezone": "Mars/Base"}, ["unknown time zone 'Mars/Base'"]),
    ({"cron": HOURLY, "timezone": "europe/paris"}, ["did you mean 'Europe/Paris'"]),
    ({"every": "0m"}, ["smallest is 1 minute"]),
    ({"every": "90x"}, ["invalid interval '90x'"]),
    ({"interval_minutes": 0}, ["interval_minutes"]),
    ({"every": "1h", "interval_minutes": 60}, ["not both"]),
    ({"cron": HOURLY, "every": "1h"}, ["exactly one of 'cron'"]),
    ({"cron": HOURLY, "misfire_policy": "sometimes"}, ["misfire_policy"]),
    ({"cron": HOURLY, "start_at": "noon"}, ["start_at"]),
    ({"cron": HOURLY, "bogus": True}, ["bogus"]),
    ({"cron": HOURLY, "macros": {"JOB_ID": "7"}}, ["JOB_ID"]),
    ({"cron": HOURLY, "name": "a\tb"}, ["schedule name"]),
]

#: Refused by PATCH only (PUT gives every field, so these mean something else there).
BAD_PATCHES: list[tuple[dict[str, Any], list[str]]] = [
    ({"timezone": "Nope/Zone"}, ["unknown time zone 'Nope/Zone'"]),
    ({"timezone": None}, ["timezone cannot be null"]),
    ({"misfire_policy": None}, ["misfire_policy cannot be null"]),
    ({"paused": None}, ["paused cannot be null"]),
    ({"macros": None}, ["macros cannot be null"]),
    ({"description": None}, ["description cannot be null"]),
    ({"every": "0m"}, ["smallest is 1 minute"]),
    ({"every": {"hours": 9000}}, ["every", "8784"]),
]


async def test_bad_updates_leave_the_schedule_unchanged(env: Env) -> None:
    jc = await _jobconfig(env)
    base = _base(jc["id"])
    cron = await _create(env, jc["id"], {"cron": "0 0 3 * * ?", "timezone": "Europe/Berlin"})
    interval = await _create(env, jc["id"], {"every": "2h", "name": "two-hourly"})
    db_before = _rows(env, "SELECT * FROM schedules ORDER BY id")
    failures: list[str] = []
    # Removing the timing a schedule has leaves it with none.
    no_timing = {"cron": {"cron": None}, "interval": {"interval_minutes": None}}
    for s in (cron, interval):
        url = f"{base}/{s['id']}"
        body = no_timing[s["kind"]]
        _check_422(await env.client.patch(url, json=body), body, ["exactly one of"], failures)
        for body, substrings in BAD_UPDATES:
            _check_422(await env.client.put(url, json=body), body, substrings, failures)
            _check_422(await env.client.patch(url, json=body), body, substrings, failures)
        for body, substrings in BAD_PATCHES:
            _check_422(await env.client.patch(url, json=body), body, substrings, failures)
        _check_422(await env.client.put(url, json={}), {}, ["exactly one of 'cron'"], failures)
    assert not failures, "\n".join(failures)
    assert (await env.client.get(f"{base}/{cron['id']}")).json() == cron
    assert (await env.client.get(f"{base}/{interval['id']}")).json() == interval
    assert _rows(env, "SELECT * FROM schedules ORDER BY id") == db_before


#: start_at values whose UTC or local reading falls outside the representable date range.
EDGE_START_AT: list[dict[str, Any]] = [
    {"every": "1m", "start_at": "0001-01-01T00:00:00", "timezone": "Asia/Tokyo"},
    {"every": "1h", "start_at": "9999-12-31T23:00:00", "timezone": "America/New_York"},
    {"every": "2h", "start_at": "9999-12-31T23:00:00Z", "timezone": "Asia/Tokyo"},
    {"cron": HOURLY, "start_at": "0001-01-01T00:00:00", "timezone": "Asia/Tokyo"},
]


async def test_start_at_out_of_range_is_422_not_500(env: Env) -> None:
    """Extreme start_at values are refused (422 naming start_at), never a 500 or a stored
    schedule that then breaks the listing."""
    failures: list[str] = []
    for i, body in enumerate(EDGE_START_AT):  # a jobconfig each: a stored one breaks its list
        jc = await _jobconfig(env, f"edge{i}")
        base = _base(jc["id"])
        existing = await _create(env, jc["id"], {"every": "1h", "name": "existing"})
        _check_422(await env.client.post(base, json=body), body, ["start_at"], failures)
        patch = {k: v for k, v in body.items() if k in {"start_at", "timezone"}}
        url = f"{base}/{existing['id']}"
        _check_422(await env.client.patch(url, json=patch), patch, ["start_at"], failures)
        r = await env.client.get(base)
        if r.status_code != 200 or r.json()["items"] != [existing]:
            failures.append(f"after {body!r} the list is {r.status_code} {r.text[:200]}")
        r = await env.client.get(url)
        if r.status_code != 200 or r.json() != existing:
            failures.append(f"after PATCH {patch!r} the schedule is {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)


async def test_step_zero_follows_quartz(env: Env) -> None:
    """Quartz 2.3 accepts a step of 0: ``a/0`` is just ``a``, ``*/0`` is ``*``."""
    jc = await _jobconfig(env)
    s = await _create(env, jc["id"], {"cron": "0 0/0 * * * ?"})
    nxt = _ts(s["next_fire_at"])
    assert (nxt.minute, nxt.second) == (0, 0)
    s = await _create(env, jc["id"], {"cron": "0 */0 * * * ?"})
    assert _ts(s["next_fire_at"]) - _now() <= timedelta(minutes=1)


# ----------------------------------------------------------------------------- 404 / 409 / 401


async def test_unknown_ids_are_404_and_touch_nothing(env: Env) -> None:
    jc = await _jobconfig(env, "first")
    other = await _jobconfig(env, "second")
    mine = await _create(env, jc["id"], {"cron": HOURLY})
    body = {"cron": "0 0 5 * * ?"}
    for url in [_base(424242), f"{_base(424242)}/{mine['id']}"]:
        err = _error(await env.client.get(url), 404)
        assert "424242" in err["message"], err
    _error(await env.client.post(_base(424242), json=body), 404)
    # An unknown schedule, and a schedule of another jobconfig.
    for url in [f"{_base(jc['id'])}/999999", f"{_base(other['id'])}/{mine['id']}"]:
        _error(await env.client.get(url), 404)
        _error(await env.client.put(url, json=body), 404)
        _error(await env.client.patch(url, json={"description": "x"}), 404)
        _error(await env.client.post(f"{url}/pause"), 404)
        _error(await env.client.post(f"{url}/resume"), 404)
        _error(await env.client.delete(url), 404)
    assert (await env.client.get(f"{_base(jc['id'])}/{mine['id']}")).json() == mine
    assert await _items(env, other["id"]) == []
    # Malformed ids are 422, not 500.
    _error(await env.client.get(f"{_base(jc['id'])}/abc"), 422)
    _error(await env.client.get(f"{_base(jc['id'])}/0"), 422)
    _error(await env.client.get(f"{JOBCONFIGS}/abc/schedules"), 422)


async def test_duplicate_names_are_409(env: Env) -> None:
    jc = await _jobconfig(env)
    other = await _jobconfig(env, "other")
    base = _base(jc["id"])
    named = await _create(env, jc["id"], {"cron": HOURLY, "name": "hourly"})
    default = await _create(env, jc["id"], {"every": "1h"})  # named "every 1h"
    stored = await _items(env, jc["id"])
    err = _error(await env.client.post(base, json={"every": "5m", "name": "hourly"}), 409)
    assert err["code"] == "conflict"
    assert "'hourly'" in err["message"]
    err = _error(await env.client.post(base, json={"interval_minutes": 60}), 409)
    assert "'every 1h'" in err["message"]
    # A PUT without a name takes the expression as name: taken by an explicit name here.
    await _create(env, jc["id"], {"cron": "0 0 12 * * ?", "name": "0 0 4 * * ?"})
    stored = await _items(env, jc["id"])
    err = _error(await env.client.put(f"{base}/{default['id']}", json={"cron": "0 0 4 * * ?"}), 409)
    assert "'0 0 4 * * ?'" in err["message"]
    _error(
        await env.client.put(
            f"{base}/{default['id']}", json={"cron": "0 5 * * * ?", "name": "hourly"}
        ),
        409,
    )
    _error(await env.client.patch(f"{base}/{default['id']}", json={"name": "hourly"}), 409)
    _error(await env.client.patch(f"{base}/{named['id']}", json={"name": " every 1h "}), 409)
    assert await _items(env, jc["id"]) == stored
    # Names are unique per jobconfig only.
    await _create(env, other["id"], {"cron": HOURLY, "name": "hourly"})


async def test_schedules_need_a_token(env: Env) -> None:
    jc = await _jobconfig(env)
    s = await _create(env, jc["id"], {"cron": HOURLY})
    base, one = _base(jc["id"]), f"{_base(jc['id'])}/{s['id']}"
    async with httpx.AsyncClient(base_url=env.url) as anon:
        for method, url, body in [
            ("GET", base, None),
            ("POST", base, {"cron": "0 0 1 * * ?"}),
            ("GET", one, None),
            ("PUT", one, {"cron": "0 0 1 * * ?"}),
            ("PATCH", one, {"paused": True}),
            ("POST", f"{one}/pause", None),
            ("POST", f"{one}/resume", None),
            ("DELETE", one, None),
        ]:
            err = _error(await anon.request(method, url, json=body), 401)
            assert err["code"] == "unauthorized"
            bad = {"Authorization": "Bearer nope"}
            _error(await anon.request(method, url, json=body, headers=bad), 401)
    assert await _items(env, jc["id"]) == [s]


# ----------------------------------------------------------------------------- firing


async def _jobs_of(env: Env, jobconfig_id: int) -> list[dict[str, Any]]:
    r = await env.client.get("/api/v1/jobs", params={"jobconfig_id": jobconfig_id, "limit": 500})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_seconds_level_cron_fires_exactly_once_per_fire_time(
    start_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBYARD_SCHEDULER__ALLOW_SECONDS", "true")  # the documented env form
    env = await start_server()
    assert env.settings.scheduler.allow_seconds is True
    jc = await _jobconfig(env, "tick")
    base = _base(jc["id"])
    created_at = _now()
    s = await _create(env, jc["id"], {"cron": "*/5 * * * * ?", "name": "tick"})
    answered_at = _now()
    first = _ts(s["next_fire_at"])
    assert first.second % 5 == 0 and first.microsecond == 0
    # The first fire is the next 5 s boundary after the server's own "now", which lies
    # somewhere between sending the request and reading its answer.
    assert created_at < first <= answered_at + timedelta(seconds=5)

    deadline = asyncio.get_running_loop().time() + 16
    jobs: list[dict[str, Any]] = []
    while len(jobs) < 2:
        assert asyncio.get_running_loop().time() < deadline, f"fired only {jobs}"
        await asyncio.sleep(0.1)
        jobs = await _jobs_of(env, jc["id"])
    r = await env.client.post(f"{base}/{s['id']}/pause")
    assert r.status_code == 200, r.text
    jobs = await _jobs_of(env, jc["id"])
    fire_times = [j["scheduled_for"] for j in jobs]
    assert len(set(fire_times)) == len(fire_times), fire_times
    for job in jobs:
        assert job["trigger"] == "schedule"
        assert job["schedule_id"] == s["id"]
        assert job["submitted_by"] == "admin"
        assert job["jobconfig_id"] == jc["id"]
        when = _ts(job["scheduled_for"])
        assert when.second % 5 == 0 and when.microsecond == 0, when
        assert when >= first
        assert _ts(job["created_at"]) >= when  # never early
    # The schedule records its last firing and a later next fire time (before the pause).
    got = (await env.client.get(f"{base}/{s['id']}")).json()
    assert got["last_fire_at"] is not None
    assert _ts(got["last_fire_at"]) == max(_ts(t) for t in fire_times)
    assert got["last_result"]
    # Paused: nothing more fires.
    await asyncio.sleep(5.5)
    assert len(await _jobs_of(env, jc["id"])) == len(jobs)


async def test_fired_job_json_and_events(start_server: ServerFactory) -> None:
    env = await start_server(scheduler={"allow_seconds": True})
    jc = await _jobconfig(env, "tock")
    s = await _create(env, jc["id"], {"cron": "0/2 * * * * ?", "macros": {"FROM": "schedule"}})
    deadline = asyncio.get_running_loop().time() + 12
    jobs: list[dict[str, Any]] = []
    while not jobs:
        assert asyncio.get_running_loop().time() < deadline, "the schedule never fired"
        await asyncio.sleep(0.1)
        jobs = await _jobs_of(env, jc["id"])
    await env.client.post(f"{_base(jc['id'])}/{s['id']}/pause")
    job = jobs[-1]  # the oldest (newest first)
    done = await env.wait_status(job["id"])
    assert done["status"] == "FINISHED", done
    r = await env.client.get(f"/api/v1/jobs/{job['id']}")
    body = r.json()
    assert body["schedule_id"] == s["id"]
    assert body["scheduled_for"] is not None
    assert _ts(body["scheduled_for"]).second % 2 == 0
    assert body["trigger"] == "schedule"
    assert body["macros"].get("FROM") == "schedule"
    events = (await env.client.get(f"/api/v1/jobs/{job['id']}/events")).json()["items"]
    assert events[0]["status"] == "SEQUENCED", events
    assert events[0]["actor"] == "scheduler", events
    assert [e["status"] for e in events][-1] == "FINISHED"


async def test_non_timing_patch_keeps_a_past_fire_time_timing_patch_retimes(
    start_server: ServerFactory,
) -> None:
    """With the scheduler off nothing fires, so a stored fire time ages into the past:
    a description change keeps it, a new expression (or resume) moves it after now."""
    env = await start_server(scheduler={"allow_seconds": True, "enabled": False})
    jc = await _jobconfig(env)
    url = f"{_base(jc['id'])}/{(await _create(env, jc['id'], {'cron': '0/2 * * * * ?'}))['id']}"
    s = (await env.client.get(url)).json()
    stored = _ts(s["next_fire_at"])
    await asyncio.sleep(max(0.0, (stored - _now()).total_seconds()) + 0.3)
    assert _now() > stored
    for change in [{"description": "new"}, {"misfire_policy": "skip"}, {"timezone": "UTC"}]:
        r = await env.client.patch(url, json=change)
        assert r.status_code == 200, r.text
        assert _ts(r.json()["next_fire_at"]) == stored, change
    now = _now()
    r = await env.client.patch(url, json={"cron": "1/2 * * * * ?"})
    assert r.status_code == 200, r.text
    assert _ts(r.json()["next_fire_at"]) > now
    assert await _jobs_of(env, jc["id"]) == []
