"""The job path's door (``api/door.py``) answers its four routes as the whole stack does.

``POST /api/v1/jobs``, ``/api/v1/jobconfigs/{id}/run``, ``/api/v1/worker/acquire`` and
``/api/v1/worker/reports`` are taken before FastAPI's middleware: authentication, the
body limit, the request metrics and the 500 of an unexpected error must come out as
they do for every other route, and a call the fast paths are not sure of must reach
the routes once (one answer, one observation in /metrics).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from jobyard.api import hotpath
from jobyard.api.door import DoorRoute, door_route
from jobyard.api.dto import MAX_ID
from jobyard.api.metrics import FAST_ROUTES
from tests.integration.conftest import Env, ServerFactory

API = "/api/v1"
LIMIT = 4096
DOOR_ROUTES = ("/jobs", "/jobconfigs/1/run", "/worker/acquire", "/worker/reports")


def _observed(metrics: str, route: str, status: int) -> float:
    """The count of ``POST route status`` in the request histogram."""
    pattern = (
        r'jobyard_http_request_duration_seconds_count\{method="POST",'
        rf'route="{re.escape(route)}",status="{status}"\}} ([0-9.e+]+)'
    )
    found = re.search(pattern, metrics)
    return float(found.group(1)) if found else 0.0


async def _metrics(env: Env) -> str:
    r = await env.client.get("/metrics")
    assert r.status_code == 200
    return r.text


async def _worker_token(env: Env) -> str:
    r = await env.client.post(f"{API}/worker-tokens", json={"name": "door"})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


@pytest.fixture
async def env(start_server: ServerFactory) -> AsyncIterator[Env]:
    yield await start_server(workers=0, max_json_bytes=LIMIT)


def test_the_door_takes_exactly_the_fast_paths_routes() -> None:
    assert door_route("/api/v1/jobs") == DoorRoute("/api/v1/jobs")
    assert door_route("/api/v1/worker/acquire") == DoorRoute("/api/v1/worker/acquire", worker=True)
    assert door_route("/api/v1/worker/reports") == DoorRoute("/api/v1/worker/reports", worker=True)
    # The run route carries its jobconfig's id, parsed once here for the fast path.
    run = "/api/v1/jobconfigs/{jobconfig_id}/run"
    assert door_route("/api/v1/jobconfigs/7/run") == DoorRoute(run, jobconfig_id=7)
    assert door_route(f"/api/v1/jobconfigs/{MAX_ID}/run") == DoorRoute(run, jobconfig_id=MAX_ID)
    for other in (
        "/api/v1/jobs/",
        "/api/v1/jobconfigs/07/run",
        "/api/v1/jobconfigs/0/run",
        "/api/v1/jobconfigs/x/run",
        "/api/v1/jobconfigs/-1/run",
        "/api/v1/jobconfigs/\u0667/run",  # a non-ASCII digit
        f"/api/v1/jobconfigs/{MAX_ID + 1}/run",
        f"/api/v1/jobconfigs/{10**30}/run",
        "/api/v1/jobconfigs/7/run/",
        "/api/v1/worker/heartbeat",
        "/api/v1/jobs/1/cancel",
        "/jobs",
    ):
        assert door_route(other) is None, other
    # Its templates are the ones /metrics uses for these routes without the door.
    for path in ("/api/v1/jobs", "/api/v1/jobconfigs/7/run", "/api/v1/worker/reports"):
        route = door_route(path)
        assert route is not None
        assert [t for p, t in FAST_ROUTES if p.fullmatch(path)] == [route.template]


async def test_no_token_is_answered_401_and_observed(env: Env) -> None:
    async with httpx.AsyncClient(base_url=env.url, timeout=30) as anon:
        for route in DOOR_ROUTES:
            r = await anon.post(f"{API}{route}", json={})
            assert r.status_code == 401, (route, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["error"]["code"] == "unauthorized"
            r = await anon.post(f"{API}{route}", json={}, headers={"Authorization": "Bearer x"})
            assert r.status_code == 401
    metrics = await _metrics(env)
    assert _observed(metrics, "/api/v1/jobs", 401) == 2
    assert _observed(metrics, "/api/v1/jobconfigs/{jobconfig_id}/run", 401) == 2
    assert _observed(metrics, "/api/v1/worker/reports", 401) == 2


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_bodies_over_the_json_limit_are_refused_413(env: Env, chunked: bool) -> None:
    worker = {"Authorization": f"Bearer {await _worker_token(env)}"}
    big = b'{"command": ["true"], "pad": "' + b"x" * (LIMIT + 10) + b'"}'

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    for route in DOOR_ROUTES:
        headers = {"content-type": "application/json"}
        if route.startswith("/worker/"):
            headers.update(worker)
        else:
            headers.update(env.client.headers)
        content: Any = stream() if chunked else big
        async with httpx.AsyncClient(base_url=env.url, timeout=30) as http:
            r = await http.post(f"{API}{route}", content=content, headers=headers)
        assert r.status_code == 413, (route, r.text)
        assert r.headers["connection"] == "close"
        assert r.json()["error"] == {
            "code": "too_large",
            "message": f"a request body may hold at most {LIMIT} bytes (JOBYARD_MAX_JSON_BYTES)",
            "details": {"limit": LIMIT},
        }
    metrics = await _metrics(env)
    assert _observed(metrics, "/api/v1/jobs", 413) == 1
    assert _observed(metrics, "/api/v1/worker/acquire", 413) == 1


async def test_what_the_fast_path_is_not_sure_of_reaches_the_route_once(env: Env) -> None:
    r = await env.client.post(f"{API}/jobs", json={"command": "not a list"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"
    r = await env.client.post(
        f"{API}/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
    r = await env.client.post(f"{API}/jobs", json={"command": ["true"]})
    assert r.status_code == 201 and r.json()["status"] == "QUEUED"
    r = await env.client.post(f"{API}/jobconfigs", json={"name": "door", "command": ["true"]})
    assert r.status_code == 201, r.text
    r = await env.client.post(f"{API}/jobconfigs/{r.json()['id']}/run")
    assert r.status_code == 201 and r.json()["trigger"] == "api"
    r = await env.client.post(f"{API}/jobconfigs/999999/run")
    assert r.status_code == 404
    # A user's token on a worker route: the route's own 403.
    r = await env.client.post(f"{API}/worker/reports", json={"worker_id": "w", "reports": []})
    assert r.status_code == 403
    metrics = await _metrics(env)
    assert _observed(metrics, "/api/v1/jobs", 422) == 1
    assert _observed(metrics, "/api/v1/jobs", 400) == 1
    assert _observed(metrics, "/api/v1/jobs", 201) == 1
    assert _observed(metrics, "/api/v1/jobconfigs/{jobconfig_id}/run", 201) == 1
    assert _observed(metrics, "/api/v1/jobconfigs/{jobconfig_id}/run", 404) == 1
    assert _observed(metrics, "/api/v1/worker/reports", 403) == 1


async def test_bodies_only_the_routes_parse_get_the_routes_answers(env: Env) -> None:
    # The fast paths parse with pydantic-core; JSON it does not read (nested beyond
    # Python's recursion limit, or in UTF-16) goes to the route, which answers 400 for
    # the first (not a 500: the error is the caller's) and reads the second.
    worker = {"Authorization": f"Bearer {await _worker_token(env)}"}
    json_type = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=env.url, timeout=30) as http:
        for route in DOOR_ROUTES:
            auth = worker if route.startswith("/worker/") else dict(env.client.headers)
            headers = {**auth, **json_type}
            r = await http.post(f"{API}{route}", content=b"[" * 3000, headers=headers)
            assert r.status_code == 400, (route, r.text)
            assert r.json()["error"]["code"] == "bad_request"
        body = json.dumps({"command": ["true"]}).encode("utf-16")
        r = await env.client.post(f"{API}/jobs", content=body, headers=json_type)
        assert r.status_code == 201 and r.json()["command"] == ["true"]
        body = json.dumps({"worker_id": "w", "reports": []}).encode("utf-16")
        r = await http.post(f"{API}/worker/reports", content=body, headers={**worker, **json_type})
        assert r.status_code == 200 and r.json() == {"results": []}
    metrics = await _metrics(env)
    assert _observed(metrics, "/api/v1/jobs", 400) == 1
    assert _observed(metrics, "/api/v1/worker/acquire", 400) == 1
    assert _observed(metrics, "/api/v1/worker/reports", 200) == 1


async def test_an_unexpected_error_is_the_apps_500(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(hotpath, "submit_adhoc_body", broken)
    r = await env.client.post(f"{API}/jobs", json={"command": ["true"]})
    assert r.status_code == 500
    assert r.json() == {
        "error": {
            "code": "internal",
            "message": "internal server error; see the server log",
            "details": {},
        }
    }
    assert _observed(await _metrics(env), "/api/v1/jobs", 500) == 1
