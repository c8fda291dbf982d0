"""Statistics and metrics leak nothing: who may read /metrics, what jobstats counts.

* a non-admin user's token cannot read /metrics (403), nor can an admin's job through
  its SESSION_ID (a job token never administers); no token: 401;
* the metrics token reads /metrics and is an unknown token (401) on every other route;
* a user's jobstats never count, nor name, a jobconfig they cannot view, nor ad-hoc
  jobs of others; asking for such a jobconfig answers the 404 of a missing one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from jobyard.api.app import create_app
from jobyard.api.auth import OPEN_PATHS
from jobyard.runtime import Runtime
from jobyard.web.paths import is_console_path
from tests.integration.conftest import Env, ServerFactory
from tests.support.authz import fill, route_table

API = "/api/v1"
PASSWORD = "correct horse battery"
METRICS_TOKEN = "metrics-only-3f9a7c1e5b2d4a60"
FAST = {"fold_lag_seconds": 0}

#: A job's probe: GET /metrics with its SESSION_ID; prints ``RESULT <status>``.
PROBE = r"""
import os, urllib.error, urllib.request
req = urllib.request.Request(os.environ["JOBYARD_API_URL"] + "/metrics",
    headers={"Authorization": "Bearer " + os.environ["SESSION_ID"]})
try:
    with urllib.request.urlopen(req, timeout=60) as r:
        status = r.status
except urllib.error.HTTPError as e:
    status = e.code
print("RESULT %d" % status, flush=True)
"""


async def _user(env: Env, name: str) -> httpx.AsyncClient:
    r = await env.client.post(
        f"{API}/users", json={"name": name, "role": "user", "password": PASSWORD}
    )
    assert r.status_code == 201, r.text
    async with httpx.AsyncClient(base_url=env.url) as anon:
        r = await anon.post(f"{API}/login", json={"name": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return httpx.AsyncClient(
        base_url=env.url,
        headers={"Authorization": f"Bearer {r.json()['access_token']}"},
        timeout=30,
    )


async def _run(client: httpx.AsyncClient, env: Env, name: str, times: int) -> int:
    r = await client.post(
        f"{API}/jobconfigs",
        json={"name": name, "command": ["/bin/sh", "-c", "true"], "max_concurrent": 0},
    )
    assert r.status_code == 201, r.text
    jc = int(r.json()["id"])
    for _ in range(times):
        r = await client.post(f"{API}/jobconfigs/{jc}/run", json={})
        assert r.status_code == 201, r.text
        await env.wait_status(int(r.json()["id"]))
    return jc


async def _stats(client: httpx.AsyncClient, total: int, **params: Any) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        r = await client.get(f"{API}/jobstats", params=params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["overall"]["total"] >= total:
            return body
        assert asyncio.get_running_loop().time() < deadline, body["overall"]
        await asyncio.sleep(0.1)


async def test_only_admins_and_the_metrics_token_read_metrics(start_server: ServerFactory) -> None:
    env = await start_server(metrics={"token": METRICS_TOKEN})
    alice = await _user(env, "alice")
    async with alice, httpx.AsyncClient(base_url=env.url) as anon:
        r = await alice.get("/metrics")
        assert r.status_code == 403, r.text
        assert "metrics.token" in r.json()["error"]["message"]
        assert "jobyard_" not in r.text
        assert (await anon.get("/metrics")).status_code == 401
        wrong = await anon.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}x"})
        assert wrong.status_code == 401
        ok = await anon.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert ok.status_code == 200
        assert "jobyard_jobs_submitted_total" in ok.text or "jobyard_jobs " in ok.text
        assert (await env.client.get("/metrics")).status_code == 200  # an admin

    # an admin's job cannot read /metrics with its SESSION_ID
    r = await env.client.post(f"{API}/jobs", json={"command": ["/usr/bin/python3", "-c", PROBE]})
    assert r.status_code == 201, r.text
    job_id = int(r.json()["id"])
    assert await env.wait_log_line(job_id, "RESULT ") == "403"


async def test_the_metrics_token_opens_no_other_route(start_server: ServerFactory) -> None:
    env = await start_server(metrics={"token": METRICS_TOKEN})
    jc = await _run(env.client, env, "x", 1)
    ids = {"jobconfig_id": jc, "job_id": 1, "package_id": 1, "template_id": 1,
           "schedule_id": 1, "user_id": 1, "token_id": 1, "policy_id": 1,
           "name": "x", "kind": "outputs", "filename": "f", "sha256": "0" * 64,
           "worker_id": "w"}  # fmt: skip
    table = route_table(create_app(Runtime(env.settings)))
    open_paths = set(OPEN_PATHS)
    checked = 0
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    async with httpx.AsyncClient(base_url=env.url, headers=headers, timeout=30) as client:
        for method, path in sorted(table):
            if path in open_paths or path == "/metrics" or is_console_path(path):
                continue  # the console ignores bearer tokens (tests/security/test_web_*)
            url = fill(path, ids) if "{" in path else path
            r = await client.request(method, url)
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            checked += 1
        assert (await client.get("/metrics")).status_code == 200
    assert checked > 40


async def test_jobstats_count_only_what_the_caller_may_view(start_server: ServerFactory) -> None:
    env = await start_server(stats=FAST)
    secret = await _run(env.client, env, "payroll-secret", 3)  # the admin's
    r = await env.client.post(f"{API}/jobs", json={"command": ["/bin/sh", "-c", "true"]})
    await env.wait_status(int(r.json()["id"]))  # an ad-hoc job of the admin
    alice = await _user(env, "alice")
    async with alice:
        mine = await _run(alice, env, "alice-etl", 2)
        assert (await _stats(env.client, 6))["overall"]["total"] == 6  # the admin sees all

        r = await alice.get(f"{API}/jobstats")
        body = r.json()
        assert body["overall"]["total"] == 2, body["overall"]
        assert [(j["jobconfig_id"], j["name"]) for j in body["jobconfigs"]] == [(mine, "alice-etl")]
        assert sum(b["total"] for b in body["buckets"]) == 2
        assert "payroll" not in r.text
        for bucket in ("hour", "day"):
            r = await alice.get(f"{API}/jobstats", params={"bucket": bucket})
            assert r.json()["overall"]["total"] == 2
            assert "payroll" not in r.text

        # an invisible jobconfig answers exactly like a missing one
        hidden = await alice.get(f"{API}/jobstats", params={"jobconfig_id": secret})
        missing = await alice.get(f"{API}/jobstats", params={"jobconfig_id": 999_999})
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["error"]["code"] == missing.json()["error"]["code"]
        assert hidden.json()["error"]["message"].replace(str(secret), "N") == missing.json()[
            "error"
        ]["message"].replace("999999", "N")
        assert "payroll" not in hidden.text

        # a view grant makes it count
        me = (await alice.get(f"{API}/me")).json()
        r = await env.client.post(
            f"{API}/users/{me['user']['id']}/policies",
            json={"action": "view", "resource": "jobconfigs", "selector": str(secret)},
        )
        assert r.status_code == 201, r.text
        body = (await alice.get(f"{API}/jobstats")).json()
        assert body["overall"]["total"] == 5  # still not the admin's ad-hoc job
        assert {j["name"] for j in body["jobconfigs"]} == {"alice-etl", "payroll-secret"}
