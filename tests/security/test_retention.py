"""Retention cannot be used to destroy history: who may purge, who may set retention.

* a non-admin user cannot run (or dry-run) a purge: 403, and nothing goes;
* an admin's job cannot purge through its SESSION_ID: 403 (a job token never
  administers), even though its user is an admin;
* a user who may run, or only view, an admin's jobconfig cannot shorten its retention
  (which would let them wipe its jobs on the next pass): refused, field unchanged.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.integration.conftest import Env, ServerFactory

API = "/api/v1"
PASSWORD = "correct horse battery"
PYTHON = "/usr/bin/python3"

#: A job's probe: POST /admin/purge with its SESSION_ID; prints ``RESULT <status>``.
PROBE = r"""
import json, os, urllib.error, urllib.request
req = urllib.request.Request(
    os.environ["JOBYARD_API_URL"] + "/api/v1/admin/purge",
    data=json.dumps({"dry_run": False}).encode(), method="POST",
    headers={"Authorization": "Bearer " + os.environ["SESSION_ID"],
             "Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=60) as r:
        status = r.status
except urllib.error.HTTPError as e:
    status = e.code
print("RESULT %d" % status, flush=True)
"""


async def _user_client(env: Env, name: str) -> tuple[int, httpx.AsyncClient]:
    r = await env.client.post(
        f"{API}/users", json={"name": name, "role": "user", "password": PASSWORD}
    )
    assert r.status_code == 201, r.text
    user_id = int(r.json()["id"])
    async with httpx.AsyncClient(base_url=env.url) as anon:
        r = await anon.post(f"{API}/login", json={"name": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    client = httpx.AsyncClient(
        base_url=env.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    return user_id, client


async def _ended_jobs(env: Env, count: int) -> tuple[int, list[int]]:
    r = await env.client.post(
        f"{API}/jobconfigs", json={"name": "history", "command": ["/bin/sh", "-c", "true"]}
    )
    assert r.status_code == 201, r.text
    jc = int(r.json()["id"])
    ids = []
    for _ in range(count):
        r = await env.client.post(f"{API}/jobconfigs/{jc}/run", json={})
        ids.append(int(r.json()["id"]))
    for job_id in ids:
        assert (await env.wait_status(job_id))["status"] == "FINISHED"
    return jc, ids


async def _all_there(env: Env, ids: list[int]) -> bool:
    codes = [(await env.client.get(f"{API}/jobs/{i}")).status_code for i in ids]
    return codes == [200] * len(ids)


async def test_a_non_admin_cannot_purge(start_server: ServerFactory) -> None:
    env = await start_server(retention={"enabled": False, "max_jobs_per_jobconfig": 1})
    _, ids = await _ended_jobs(env, 3)
    _, mallory = await _user_client(env, "mallory")
    async with mallory:
        for body in ({"dry_run": False}, {"dry_run": True}, {}):
            r = await mallory.post(f"{API}/admin/purge", json=body)
            assert r.status_code == 403, r.text
            assert r.json()["error"]["code"] == "forbidden"
    assert await _all_there(env, ids)


async def test_a_job_token_cannot_purge_even_an_admins(start_server: ServerFactory) -> None:
    env = await start_server(retention={"enabled": False, "max_jobs_per_jobconfig": 1})
    _, ids = await _ended_jobs(env, 2)
    r = await env.client.post(f"{API}/jobs", json={"command": [PYTHON, "-c", PROBE]})
    assert r.status_code == 201, r.text
    job = await env.wait_status(int(r.json()["id"]))
    assert job["status"] == "FINISHED", job
    log = (await env.client.get(f"{API}/jobs/{job['id']}/log")).text
    results = [line.split(" out ", 1)[-1] for line in log.splitlines() if " out RESULT " in line]
    assert results == ["RESULT 403"], log
    assert await _all_there(env, ids)


async def test_retention_is_set_only_by_who_may_edit(start_server: ServerFactory) -> None:
    env = await start_server(retention={"enabled": False})
    jc, _ = await _ended_jobs(env, 1)
    runner_id, runner = await _user_client(env, "runner")
    viewer_id, viewer = await _user_client(env, "viewer")
    _, stranger = await _user_client(env, "stranger")
    grants: list[tuple[int, str]] = [(runner_id, "execute"), (viewer_id, "view")]
    for user_id, action in grants:
        body: dict[str, Any] = {"action": action, "resource": "jobconfigs", "selector": str(jc)}
        r = await env.client.post(f"{API}/users/{user_id}/policies", json=body)
        assert r.status_code == 201, r.text
    change = {"retention": {"max_jobs": 1, "max_age_days": 0.0001}}
    async with runner, viewer, stranger:
        for client in (runner, viewer):
            r = await client.patch(f"{API}/jobconfigs/{jc}", json=change)
            assert r.status_code == 403, r.text
            r = await client.put(
                f"{API}/jobconfigs/{jc}",
                json={"name": "history", "command": ["true"], **change},
            )
            assert r.status_code == 403, r.text
        # Someone who may not even view it gets the answer of a missing jobconfig.
        r = await stranger.patch(f"{API}/jobconfigs/{jc}", json=change)
        missing = await stranger.patch(f"{API}/jobconfigs/999999", json=change)
        assert r.status_code == missing.status_code == 404
        assert json.dumps(r.json()).replace(str(jc), "ID") == json.dumps(missing.json()).replace(
            "999999", "ID"
        )
    got = (await env.client.get(f"{API}/jobconfigs/{jc}")).json()
    assert got["retention"] == {"max_age_days": None, "max_jobs": None}
