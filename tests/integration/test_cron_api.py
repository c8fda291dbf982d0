"""``GET /api/v1/cron/next``: previews of cron expressions through the real server."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.integration.conftest import Env

NEXT = "/api/v1/cron/next"


async def get_next(env: Env, **params: Any) -> httpx.Response:
    return await env.client.get(NEXT, params=params)


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    body: dict[str, Any] = response.json()["error"]
    assert set(body) == {"code", "message", "details"}
    return body


async def test_next_fire_times(env: Env) -> None:
    r = await get_next(env, expr="0 0 12 * * ?", tz="UTC", after="2026-01-01T00:00:00Z", count=3)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "expr": "0 0 12 * * ?",
        "tz": "UTC",
        "next": [
            "2026-01-01T12:00:00+00:00",
            "2026-01-02T12:00:00+00:00",
            "2026-01-03T12:00:00+00:00",
        ],
    }


async def test_defaults_are_utc_five_times_from_now(env: Env) -> None:
    r = await get_next(env, expr="0 0 12 * * ?")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tz"] == "UTC"
    assert len(body["next"]) == 5
    times = [datetime.fromisoformat(t) for t in body["next"]]
    assert times == sorted(times)
    assert all(t.utcoffset() == timedelta(0) for t in times)
    # an empty after is "now" as well
    assert (await get_next(env, expr="0 0 12 * * ?", after="")).json()["next"] == body["next"]


async def test_zone_offsets_across_daylight_saving(env: Env) -> None:
    r = await get_next(
        env, expr="0 0 12 * * ?", tz="Europe/Berlin", after="2026-03-28T00:00:00", count=2
    )
    assert r.status_code == 200, r.text
    assert r.json()["next"] == ["2026-03-28T12:00:00+01:00", "2026-03-29T12:00:00+02:00"]


async def test_expression_that_stops_firing_gives_fewer(env: Env) -> None:
    r = await get_next(env, expr="0 0 12 1 1 ? 2027", after="2026-01-01T00:00:00Z", count=5)
    assert r.status_code == 200, r.text
    assert r.json()["next"] == ["2027-01-01T12:00:00+00:00"]


async def test_bad_expression_names_the_field(env: Env) -> None:
    body = error_of(await get_next(env, expr="0 0 0 32 * ?"))
    assert body["code"] == "invalid_cron"
    assert body["message"].startswith("day-of-month: ")
    assert body["details"] == {"field": "day-of-month", "expression": "0 0 0 32 * ?"}


async def test_bad_zone(env: Env) -> None:
    body = error_of(await get_next(env, expr="0 0 12 * * ?", tz="Mars/Olympus"))
    assert body["code"] == "invalid_timezone"
    assert "unknown time zone 'Mars/Olympus'" in body["message"]


async def test_count_out_of_range(env: Env) -> None:
    for count in (0, 1001, "many"):
        body = error_of(await get_next(env, expr="0 0 12 * * ?", count=count))
        assert body["code"] == "invalid_input"
        assert body["message"].startswith("query.count: "), body
    r = await get_next(env, expr="* * * ? * *", count=1000)
    assert r.status_code == 200
    assert len(r.json()["next"]) == 1000


async def test_bad_after(env: Env) -> None:
    body = error_of(await get_next(env, expr="0 0 12 * * ?", after="tomorrow"))
    assert body["message"].startswith("after: 'tomorrow' is not an ISO 8601 date-time")
    assert body["details"] == {"after": "tomorrow"}


async def test_missing_expr(env: Env) -> None:
    body = error_of(await env.client.get(NEXT))
    assert body["message"].startswith("query.expr: ")


async def test_token_required(env: Env) -> None:
    async with httpx.AsyncClient(base_url=env.url, timeout=30) as anonymous:
        r = await anonymous.get(NEXT, params={"expr": "0 0 12 * * ?"})
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "unauthorized"
        bad = await anonymous.get(
            NEXT,
            params={"expr": "0 0 12 * * ?"},
            headers={"Authorization": "Bearer not-the-token"},
        )
        assert bad.status_code == 401, bad.text
