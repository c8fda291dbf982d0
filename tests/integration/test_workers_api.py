"""``GET /api/v1/workers`` and pools nobody serves, against a real server.

The server's own worker processes register by heartbeat; other workers (a lost one, a
late one) are written into the same ``workers`` table through the server's real store,
as a remote worker's heartbeat would, so the health rules are exercised without waiting
minutes for a worker to be lost.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobyard import __version__
from jobyard.core.models import WorkerInfo
from jobyard.core.timeutil import utcnow
from tests.integration.conftest import Env, ServerFactory

API = "/api/v1"
PASSWORD = "correct horse battery"
SLEEP = ["/bin/sh", "-c", "sleep 60"]


async def _workers(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await client.get(f"{API}/workers", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _wait_workers(env: Env, count: int) -> list[dict[str, Any]]:
    """The server's own workers once ``count`` of them are healthy (deadline 20 s)."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        items = [w for w in (await _workers(env.client))["items"] if w["health"] == "healthy"]
        if len(items) >= count:
            return items
        assert asyncio.get_running_loop().time() < deadline, f"workers: {items}"
        await asyncio.sleep(0.05)


async def _user_client(env: Env, name: str) -> httpx.AsyncClient:
    r = await env.client.post(
        f"{API}/users", json={"name": name, "role": "user", "password": PASSWORD}
    )
    assert r.status_code == 201, r.text
    r = await env.client.post(f"{API}/login", json={"name": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    return httpx.AsyncClient(
        base_url=env.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


async def _register(env: Env, worker_id: str, pool: str, heard_ago: float) -> None:
    """A worker row as another host's heartbeat would leave it, ``heard_ago`` s old."""
    now = utcnow()
    info = WorkerInfo(
        id=worker_id,
        name=worker_id,
        pool=pool,
        host="elsewhere",
        pid=4242,
        slots=2,
        kind="remote",
        started_at=now - timedelta(seconds=heard_ago + 60),
        heartbeat_at=now - timedelta(seconds=heard_ago),
        draining=False,
        labels={"zone": "eu-1"},
    )
    await env.runtime.ctx.store.worker_upsert(info)


async def test_workers_list_health_slots_and_the_jobs_each_holds(
    start_server: ServerFactory,
) -> None:
    env = await start_server(worker_processes=2, workers=2)
    mine = await _wait_workers(env, 2)
    assert {w["pool"] for w in mine} == {"default"}
    assert all(w["host"] and w["pid"] and w["kind"] == "local" for w in mine)
    assert all(w["version"] == __version__ and w["labels"] == {} for w in mine)
    r = await env.client.post(f"{API}/jobconfigs", json={"name": "busy", "command": SLEEP})
    assert r.status_code == 201, r.text
    job = (await env.client.post(f"{API}/jobconfigs/{r.json()['id']}/run", json={})).json()
    await env.wait_status(job["id"], {"RUNNING"})

    listing = await _workers(env.client)
    holder = next(w for w in listing["items"] if w["jobs"])
    assert holder["jobs"] == [
        {"id": job["id"], "status": "RUNNING", "jobconfig_id": job["jobconfig_id"]}
    ]
    assert holder["slots_busy"] == 1 and holder["jobs_hidden"] == 0
    assert listing["slots_busy"] == 1 and listing["slots_total"] == sum(w["slots"] for w in mine)

    # A user who may not view the job sees that a slot is taken, not by what.
    async with await _user_client(env, "nosy") as nosy:
        r = await nosy.get(f"{API}/workers")
        assert r.status_code == 200, r.text
        seen = next(w for w in r.json()["items"] if w["id"] == holder["id"])
        assert seen["jobs"] == [] and seen["jobs_hidden"] == 1 and seen["slots_busy"] == 1
        assert seen["host"] is None and seen["pid"] is None and seen["version"] is None
        assert f'"id":{job["id"]}' not in r.text.replace(" ", "")

        # Pages follow each other with the cursor, and a made-up cursor is refused.
        first = await _workers(nosy, limit=1)
        assert len(first["items"]) == 1 and first["next_cursor"]
        second = await _workers(nosy, limit=1, cursor=first["next_cursor"])
        assert second["items"][0]["id"] != first["items"][0]["id"]
        r = await nosy.get(f"{API}/workers", params={"cursor": "bm9wZQ"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_cursor"
    await env.client.post(f"{API}/jobs/{job['id']}/abort")


async def test_a_jobconfig_in_a_pool_nobody_serves_warns_and_its_job_says_why_it_waits(
    start_server: ServerFactory,
) -> None:
    env = await start_server(pool="gpu", workers=1, worker_processes=1)
    await _wait_workers(env, 1)
    await _register(env, "gone:1:aa", "stale", heard_ago=3600)  # lost: serves nothing
    await _register(env, "slow:1:bb", "slow", heard_ago=3.0)  # late: still serves

    async def create(name: str, **extra: Any) -> dict[str, Any]:
        r = await env.client.post(
            f"{API}/jobconfigs", json={"name": name, "command": ["true"], **extra}
        )
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    served = await create("on-gpu", pool="gpu")
    assert served["warnings"] == []
    assert (await create("on-slow", pool="slow"))["warnings"] == []
    unserved = await create("on-default")
    [warning] = unserved["warnings"]
    assert warning["code"] == "pool_unserved"
    assert warning["details"] == {"pool": "default", "jobconfigs": ["on-default"]}
    assert "no worker serves pool 'default'" in warning["message"]
    [stale] = (await create("on-stale", pool="stale"))["warnings"]
    assert stale["details"]["pool"] == "stale"

    r = await env.client.patch(f"{API}/jobconfigs/{served['id']}", json={"pool": "cpu"})
    assert r.status_code == 200 and r.json()["warnings"][0]["details"]["pool"] == "cpu"
    r = await env.client.put(
        f"{API}/jobconfigs/{served['id']}",
        json={"name": "on-gpu", "command": ["true"], "pool": "gpu"},
    )
    assert r.status_code == 200 and r.json()["warnings"] == []
    assert "warnings" not in (await env.client.get(f"{API}/jobconfigs/{served['id']}")).json()

    # A QUEUED job of the unserved pool says why it waits; a served one says nothing.
    waiting = (await env.client.post(f"{API}/jobconfigs/{unserved['id']}/run", json={})).json()
    assert waiting["waiting_reason"] is None  # the submit answer does not look
    shown = await env.wait_status(waiting["id"], {"QUEUED"})
    assert shown["waiting_reason"]["code"] == "pool_unserved"
    assert shown["waiting_reason"]["details"] == {"pool": "default"}
    ran = (await env.client.post(f"{API}/jobconfigs/{served['id']}/run", json={})).json()
    done = await env.wait_status(ran["id"])
    assert done["status"] == "FINISHED" and done["waiting_reason"] is None

    # Lost workers are listed as lost; the late one as late.
    health = {w["id"]: w["health"] for w in (await _workers(env.client))["items"]}
    assert health["slow:1:bb"] == "late"
    slow = next(w for w in (await _workers(env.client))["items"] if w["id"] == "slow:1:bb")
    assert slow["labels"] == {"zone": "eu-1"} and slow["kind"] == "remote"
    assert "gone:1:aa" not in health  # lost over an hour ago, holding nothing: counted
    assert (await _workers(env.client))["older_lost"] == 1


async def test_template_import_clone_and_apply_warn_about_unserved_pools(env: Env) -> None:
    await _wait_workers(env, 1)
    document = {
        "format": "jobyard.template/1",
        "template": {"name": "acme", "command": ["true"]},
        "jobconfigs": [
            {"name": "acme-a", "pool": "nowhere"},
            {"name": "acme-b", "pool": "nowhere"},
            {"name": "acme-c"},
        ],
    }
    r = await env.client.post(f"{API}/templates/import", json=document)
    assert r.status_code == 200, r.text
    [warning] = r.json()["warnings"]
    assert warning["details"] == {"pool": "nowhere", "jobconfigs": ["acme-a", "acme-b"]}

    template_id = r.json()["template"]["id"]
    r = await env.client.post(
        f"{API}/templates/{template_id}/clone", json={"name": "globex", "with_jobconfigs": True}
    )
    assert r.status_code == 201, r.text
    [warning] = r.json()["warnings"]
    assert warning["details"]["jobconfigs"] == ["globex.acme-a", "globex.acme-b"]
    r = await env.client.post(f"{API}/templates/{template_id}/clone", json={"name": "solo"})
    assert r.status_code == 201 and r.json()["warnings"] == []

    doc = {
        "jobconfigs": [
            {"name": "applied-gpu", "command": ["true"], "pool": "gpu"},
            {"name": "applied-default", "command": ["true"]},
        ]
    }
    for dry_run in ("true", "false"):
        r = await env.client.post(f"{API}/apply", params={"dry_run": dry_run}, json=doc)
        assert r.status_code == 200, r.text
        [warning] = r.json()["warnings"]
        assert warning["code"] == "pool_unserved"
        assert warning["details"] == {"pool": "gpu", "jobconfigs": ["applied-gpu"]}


@pytest.mark.pg
async def test_replicas_on_postgres_see_each_others_workers(
    pg_url: str, start_server: ServerFactory, tmp_path: Path
) -> None:
    """An API-only replica (no local slots) warns by the workers of the others: the
    registry is the shared database's, not one process's."""
    blobs = tmp_path / "shared-blobs"
    a = await start_server(database_url=pg_url, blobs_dir=blobs, pool="gpu", workers=1)
    b = await start_server(database_url=pg_url, blobs_dir=blobs, workers=0, token=a.token)
    [worker] = await _wait_workers(a, 1)
    listed = await _workers(b.client)
    assert [w["id"] for w in listed["items"]] == [worker["id"]]
    r = await b.client.post(
        f"{API}/jobconfigs", json={"name": "trains", "command": ["true"], "pool": "gpu"}
    )
    assert r.status_code == 201 and r.json()["warnings"] == [], r.text
    r = await b.client.post(f"{API}/jobconfigs", json={"name": "loads", "command": ["true"]})
    assert r.status_code == 201, r.text
    assert [w["details"]["pool"] for w in r.json()["warnings"]] == ["default"]
    job = (await b.client.post(f"{API}/jobconfigs/{r.json()['id']}/run", json={})).json()
    shown = await b.wait_status(job["id"], {"QUEUED"})
    assert shown["waiting_reason"]["details"] == {"pool": "default"}
