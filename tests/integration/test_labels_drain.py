"""Required worker labels and drain requests, against a real server and its workers.

The server's local slots get labels from ``JOBYARD_WORKER_LABELS`` (``worker_labels``);
a job requiring labels its workers lack waits QUEUED and says why. A drained worker
process finishes the job it holds, claims nothing more, and shows ``draining``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.integration.conftest import Env, ServerFactory

API = "/api/v1"
PASSWORD = "correct horse battery"


async def _workers(env: Env) -> list[dict[str, Any]]:
    r = await env.client.get(f"{API}/workers")
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def _wait_workers(env: Env, count: int) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        items = [w for w in await _workers(env) if w["health"] == "healthy"]
        if len(items) >= count:
            return items
        assert asyncio.get_running_loop().time() < deadline, f"workers: {items}"
        await asyncio.sleep(0.05)


async def _jobconfig(env: Env, name: str, **extra: Any) -> dict[str, Any]:
    r = await env.client.post(f"{API}/jobconfigs", json={"name": name, **extra})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _run(env: Env, jobconfig_id: int) -> dict[str, Any]:
    r = await env.client.post(f"{API}/jobconfigs/{jobconfig_id}/run", json={})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_only_workers_with_the_required_labels_run_a_job(
    start_server: ServerFactory,
) -> None:
    env = await start_server(workers=1, worker_processes=1, worker_labels="gpu=1, zone=a")
    [worker] = await _wait_workers(env, 1)
    assert worker["labels"] == {"gpu": "1", "zone": "a"}

    gpu = await _jobconfig(env, "gpu", command=["true"], labels={"gpu": "1"})
    assert gpu["labels"] == {"gpu": "1"} and gpu["warnings"] == []
    elsewhere = await _jobconfig(
        env, "zone-b", command=["true"], labels={"zone": "b"}, max_concurrent=0
    )
    [warning] = elsewhere["warnings"]
    assert warning["code"] == "pool_unserved"
    assert warning["details"] == {
        "pool": "default",
        "jobconfigs": ["zone-b"],
        "labels": {"zone": "b"},
    }
    assert "no live worker of pool 'default' has labels zone=b" in warning["message"]

    # The job copies its jobconfig's labels; the waiting one says why it waits.
    waiting = await _run(env, elsewhere["id"])
    assert waiting["labels"] == {"zone": "b"}
    ran = await env.wait_status((await _run(env, gpu["id"]))["id"])
    assert ran["status"] == "FINISHED" and ran["worker_id"] == worker["id"]
    assert ran["labels"] == {"gpu": "1"}
    shown = (await env.client.get(f"{API}/jobs/{waiting['id']}")).json()
    assert shown["status"] == "QUEUED", shown
    assert shown["waiting_reason"]["details"] == {"pool": "default", "labels": {"zone": "b"}}
    assert "has labels zone=b" in shown["waiting_reason"]["message"]

    # A template's labels apply to its jobconfigs that set none.
    r = await env.client.post(
        f"{API}/templates", json={"name": "t", "command": ["true"], "labels": {"zone": "a"}}
    )
    assert r.status_code == 201 and r.json()["labels"] == {"zone": "a"}, r.text
    child = await _jobconfig(env, "child", template_id=r.json()["id"])
    assert child["labels"] == {} and child["warnings"] == []
    inherited = await env.wait_status((await _run(env, child["id"]))["id"])
    assert inherited["labels"] == {"zone": "a"} and inherited["status"] == "FINISHED"

    # Export carries the labels; importing the export back changes nothing.
    exported = (await env.client.get(f"{API}/templates/{r.json()['id']}/export")).json()
    assert exported["template"]["labels"] == {"zone": "a"}
    assert [j["labels"] for j in exported["jobconfigs"]] == [{}]
    r = await env.client.post(f"{API}/templates/import", json=exported)
    assert r.status_code == 200, r.text
    assert r.json()["template"]["action"] == "unchanged" and r.json()["warnings"] == []
    exported["template"]["labels"] = {"zone": "c"}
    r = await env.client.post(f"{API}/templates/import", json=exported)
    assert r.json()["template"]["action"] == "updated", r.text
    assert r.json()["warnings"][0]["details"]["labels"] == {"zone": "c"}

    # apply warns by the labels of a jobconfig, or of its template (of the file or the
    # server's), and not when a worker has them.
    doc = {
        "templates": [{"name": "in-file", "command": ["true"], "labels": {"zone": "f"}}],
        "jobconfigs": [
            {"name": "a-own", "command": ["true"], "labels": {"zone": "o"}},
            {"name": "a-file", "template": "in-file"},
            {"name": "a-server", "template": "t"},
            {"name": "a-served", "command": ["true"], "labels": {"gpu": "1"}},
        ],
    }
    r = await env.client.post(f"{API}/apply", params={"dry_run": "true"}, json=doc)
    assert r.status_code == 200, r.text
    warned = {w["details"]["jobconfigs"][0]: w["details"]["labels"] for w in r.json()["warnings"]}
    assert warned == {"a-server": {"zone": "c"}, "a-file": {"zone": "f"}, "a-own": {"zone": "o"}}

    # Labels the job requires stay its own: clearing the jobconfig's frees new jobs only.
    r = await env.client.patch(f"{API}/jobconfigs/{elsewhere['id']}", json={"labels": {}})
    assert r.status_code == 200 and r.json()["labels"] == {} and r.json()["warnings"] == []
    freed = await env.wait_status((await _run(env, elsewhere["id"]))["id"])
    assert freed["status"] == "FINISHED" and freed["labels"] is None
    assert (await env.client.get(f"{API}/jobs/{waiting['id']}")).json()["status"] == "QUEUED"

    # Invalid labels answer 422 naming what to fix.
    r = await env.client.post(
        f"{API}/jobconfigs", json={"name": "bad", "command": ["true"], "labels": {"a b": "1"}}
    )
    assert r.status_code == 422 and "label key 'a b' is invalid" in r.text, r.text
    await env.client.post(f"{API}/jobs/{waiting['id']}/cancel")


async def test_a_drained_worker_finishes_its_job_takes_no_new_one_and_shows_draining(
    start_server: ServerFactory,
) -> None:
    env = await start_server(workers=2, worker_processes=2)
    await _wait_workers(env, 2)
    slow = await _jobconfig(env, "slow", command=["/bin/sh", "-c", "sleep 4"])
    quick = await _jobconfig(env, "quick", command=["true"], max_concurrent=0)
    long_job = await env.wait_status((await _run(env, slow["id"]))["id"], {"RUNNING"})
    holder = long_job["worker_id"]

    r = await env.client.post(f"{API}/workers/{holder}/drain")
    assert r.status_code == 202, r.text
    assert r.json()["drain_requested"] is True and r.json()["id"] == holder
    listed = {w["id"]: w for w in await _workers(env)}
    assert listed[holder]["health"] == "draining" and listed[holder]["drain_requested"]

    # The worker hears it at its next heartbeat (0.5 s here) and reports draining while
    # its job still runs.
    deadline = asyncio.get_running_loop().time() + 10
    while not {w["id"]: w for w in await _workers(env)}[holder]["draining"]:
        assert asyncio.get_running_loop().time() < deadline, "the worker never drained"
        await asyncio.sleep(0.05)
    assert (await env.client.get(f"{API}/jobs/{long_job['id']}")).json()["status"] == "RUNNING"

    # New jobs go to the other worker only, while and after the long job runs.
    first = [(await _run(env, quick["id"]))["id"] for _ in range(6)]
    done = await env.wait_status(long_job["id"], timeout=30)
    assert done["status"] == "FINISHED", done
    later = [(await _run(env, quick["id"]))["id"] for _ in range(6)]
    for job_id in first + later:
        job = await env.wait_status(job_id)
        assert job["status"] == "FINISHED" and job["worker_id"] != holder, job
    after = {w["id"]: w for w in await _workers(env)}[holder]
    assert after["health"] == "draining" and after["slots_busy"] == 0 and after["draining"]

    # Again is harmless; an unknown worker is a 404; a user is told an admin is needed.
    assert (await env.client.post(f"{API}/workers/{holder}/drain")).status_code == 202
    r = await env.client.post(f"{API}/workers/nobody:1:x/drain")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    r = await env.client.post(
        f"{API}/users", json={"name": "joe", "role": "user", "password": PASSWORD}
    )
    assert r.status_code == 201, r.text
    r = await env.client.post(f"{API}/login", json={"name": "joe", "password": PASSWORD})
    token = r.json()["access_token"]
    async with httpx.AsyncClient(
        base_url=env.url, headers={"Authorization": f"Bearer {token}"}
    ) as joe:
        r = await joe.post(f"{API}/workers/{holder}/drain")
        assert r.status_code == 403 and r.json()["error"]["details"]["required_role"] == "admin"
    r = await env.client.get(f"{API}/audit", params={"action": "worker.drain"})
    assert r.status_code == 200 and r.json()["items"][0]["object_id"] == holder, r.text
