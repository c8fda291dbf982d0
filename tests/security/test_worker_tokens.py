"""Worker tokens, tried as an attacker would: what they open, what opens the worker
routes, and what a worker may do to jobs it does not hold.

The authorization matrix (tests/integration/test_authz_matrix.py) checks the status of
every route for a worker token; here: the messages, revocation, storage, pool scope,
and one worker trying to report for another's job.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import httpx

from tests.integration.conftest import Env, ServerFactory

API = "/api/v1"
NOW = "2026-01-01T00:00:00+00:00"


async def _token(env: Env, pool: str | None = None) -> dict[str, Any]:
    r = await env.client.post(f"{API}/worker-tokens", json={"name": "host-a", "pool": pool})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _as(env: Env, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=env.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


async def test_a_worker_token_opens_nothing_but_the_worker_routes(env: Env) -> None:
    created = await _token(env)
    value = created["token"]
    assert value.startswith("jyw_")
    async with _as(env, value) as worker:
        for path in (
            f"{API}/jobs",
            f"{API}/me",
            f"{API}/workers",
            "/metrics",
            f"{API}/worker-tokens",
        ):
            r = await worker.get(path)
            assert r.status_code == 401, (path, r.text)
            assert r.json()["error"]["code"] == "unauthorized"
        r = await worker.post(f"{API}/jobs", json={"command": ["/bin/true"]})
        assert r.status_code == 401
        r = await worker.post(
            f"{API}/worker/acquire",
            json={"worker_id": "w", "pool": "default", "free": 0, "wait_seconds": 0},
        )
        assert r.status_code == 200, r.text
    # An admin's own token is refused on the worker routes, saying what is needed.
    r = await env.client.post(
        f"{API}/worker/acquire",
        json={"worker_id": "w", "pool": "default", "free": 1, "wait_seconds": 0},
    )
    assert r.status_code == 403
    assert "worker token" in r.json()["error"]["message"]


async def test_the_token_value_is_shown_once_and_stored_hashed(env: Env) -> None:
    created = await _token(env)
    listed = (await env.client.get(f"{API}/worker-tokens")).json()["items"]
    assert [t["id"] for t in listed] == [created["id"]]
    assert all("token" not in t for t in listed)
    db = env.settings.home / "jobyard.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT token_hash FROM worker_tokens").fetchall()
    assert rows and created["token"] not in str(rows)
    for name in ("jobyard.db", "jobyard.db-wal"):
        path = env.settings.home / name
        if path.exists():
            assert created["token"].encode() not in path.read_bytes()


async def test_a_revoked_worker_token_is_refused_within_seconds(env: Env) -> None:
    created = await _token(env)
    async with _as(env, created["token"]) as worker:
        hello = {
            "worker_id": "w",
            "host": "h",
            "pid": 1,
            "version": "v",
            "pool": "default",
            "slots": 1,
            "started_at": NOW,
        }
        assert (await worker.post(f"{API}/worker/heartbeat", json=hello)).status_code == 200
        r = await env.client.delete(f"{API}/worker-tokens/{created['id']}")
        assert r.status_code == 200 and r.json()["revoked"] is True
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            async with _as(env, created["token"]) as fresh:  # a new connection each time
                status = (await fresh.post(f"{API}/worker/heartbeat", json=hello)).status_code
            if status == 401:
                break
            assert asyncio.get_running_loop().time() < deadline, "revoked token still accepted"
            await asyncio.sleep(0.1)
    r = await env.client.delete(f"{API}/worker-tokens/999999")
    assert r.status_code == 404


async def test_a_pool_token_serves_its_pool_only(env: Env) -> None:
    created = await _token(env, pool="gpu")
    async with _as(env, created["token"]) as worker:
        body = {"worker_id": "w", "pool": "default", "free": 1, "wait_seconds": 0}
        r = await worker.post(f"{API}/worker/acquire", json=body)
        assert r.status_code == 403
        assert "gpu" in r.json()["error"]["message"]
        r = await worker.post(f"{API}/worker/acquire", json={**body, "pool": "gpu"})
        assert r.status_code == 200 and r.json() == {"assignments": []}


async def test_a_worker_cannot_report_for_a_job_it_does_not_hold(
    start_server: ServerFactory,
) -> None:
    env = await start_server(workers=0)
    value = (await _token(env))["token"]
    job = (await env.client.post(f"{API}/jobs", json={"command": ["/bin/true"]})).json()
    async with _as(env, value) as worker:
        body = {"worker_id": "holder", "pool": "default", "free": 1, "wait_seconds": 5}
        r = await worker.post(f"{API}/worker/acquire", json=body)
        assert r.status_code == 200, r.text
        (assignment,) = r.json()["assignments"]
        assert assignment["job"]["id"] == job["id"]
        base = f"{API}/worker/jobs/{job['id']}"
        rogue = {"worker_id": "rogue"}
        r = await worker.post(f"{base}/end", json={**rogue, "status": "FAILED", "reason": "x"})
        assert r.status_code == 409, r.text
        r = await worker.post(f"{base}/log", params={**rogue, "offset": "0"}, content=b"forged")
        assert r.status_code == 409
        r = await worker.put(f"{base}/outputs/forged.txt", params=rogue, content=b"forged")
        assert r.status_code == 409
        running = {"worker_id": "holder", "pid": 1, "started_at": NOW, "record": "forged"}
        r = await worker.post(f"{base}/running", json=running)
        assert r.status_code == 200, r.text  # a forged record is dropped, not trusted
        r = await worker.post(
            f"{base}/log", params={"worker_id": "holder", "offset": "0"}, content=b"ok\n"
        )
        assert r.status_code == 200 and r.json() == {"size": 3}
        # A gap is refused with the size to resend from; a repeated piece changes nothing.
        r = await worker.post(
            f"{base}/log", params={"worker_id": "holder", "offset": "9"}, content=b"x"
        )
        assert r.status_code == 409 and r.json()["error"]["details"]["size"] == 3
        r = await worker.post(
            f"{base}/log", params={"worker_id": "holder", "offset": "0"}, content=b"ok\n"
        )
        assert r.json() == {"size": 3}
        r = await worker.post(
            f"{base}/end", json={"worker_id": "holder", "status": "FINISHED", "exit_code": 0}
        )
        assert r.status_code == 200, r.text
        # A batch: each report refused on its own (the job ended), not the call.
        r = await worker.post(
            f"{API}/worker/reports",
            json={
                "worker_id": "holder",
                "reports": [{"job_id": job["id"], "kind": "end", "status": "FAILED"}],
            },
        )
        assert r.status_code == 200, r.text
        (result,) = r.json()["results"]
        assert result["moved"] is False and "FINISHED" in result["error"]
        # Ended: nothing more of it is accepted, not even from its holder.
        r = await worker.post(f"{base}/end", json={"worker_id": "holder", "status": "FAILED"})
        assert r.status_code == 409
        r = await worker.post(
            f"{base}/log", params={"worker_id": "holder", "offset": "3"}, content=b"late"
        )
        assert r.status_code == 409
    done = (await env.client.get(f"{API}/jobs/{job['id']}")).json()
    assert done["status"] == "FINISHED"
    assert (await env.client.get(f"{API}/jobs/{job['id']}/log")).text == "ok\n"
    outputs = (await env.client.get(f"{API}/jobs/{job['id']}/outputs")).json()
    assert not (outputs["items"] if isinstance(outputs, dict) else outputs)
