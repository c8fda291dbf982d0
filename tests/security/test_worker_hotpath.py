"""The worker routes' fast path (``api/worker_hotpath.py``) answers as the routes do.

``POST /api/v1/worker/acquire`` and ``/reports`` are answered before FastAPI's routing:
the same token checks, validation errors and domain errors must come out, and a call it
is not sure of must reach the documented route unchanged. The fast path is also driven
directly (with the running server's own context) to prove it answers a well-formed call
itself instead of passing it on.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from types import SimpleNamespace
from typing import Any

import httpx

from jobyard.api.worker_hotpath import answer_worker
from jobyard.service.worker_tokens import authenticate_worker, worker_principal
from tests.integration.conftest import Env, ServerFactory


async def _token(env: Env, pool: str | None = None) -> str:
    body: dict[str, Any] = {"name": f"hot-{pool}"}
    if pool is not None:
        body["pool"] = pool
    r = await env.client.post("/api/v1/worker-tokens", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def _acquire_body(**extra: Any) -> dict[str, Any]:
    return {"worker_id": "w-hot", "pool": "default", "free": 1, "wait_seconds": 0, **extra}


async def test_the_fast_path_answers_like_the_routes(start_server: ServerFactory) -> None:
    env = await start_server(workers=0)
    token = await _token(env)
    gpu = await _token(env, "gpu")
    async with httpx.AsyncClient(base_url=env.url, timeout=30) as http:
        worker = {"Authorization": f"Bearer {token}"}
        # No token: 401; a user's (admin) token: 403 from the route's own check.
        r = await http.post("/api/v1/worker/acquire", json=_acquire_body())
        assert r.status_code == 401
        r = await env.client.post("/api/v1/worker/acquire", json=_acquire_body())
        assert r.status_code == 403 and r.json()["error"]["code"]
        r = await env.client.post("/api/v1/worker/reports", json={"worker_id": "w", "reports": []})
        assert r.status_code == 403
        # A body that does not validate: FastAPI's 422 envelope.
        r = await http.post("/api/v1/worker/acquire", json=_acquire_body(free=-1), headers=worker)
        assert r.status_code == 422 and "error" in r.json()
        r = await http.post(
            "/api/v1/worker/reports",
            json={"worker_id": "w", "reports": [{"job_id": 1, "kind": "bogus"}]},
            headers=worker,
        )
        assert r.status_code == 422 and "error" in r.json()
        # A domain error: a token of another pool.
        r = await http.post(
            "/api/v1/worker/acquire",
            json=_acquire_body(),
            headers={"Authorization": f"Bearer {gpu}"},
        )
        assert r.status_code == 403 and "pool 'gpu'" in r.json()["error"]["message"]
        # Well-formed: a job claimed, then its RUNNING and end reports in one call.
        r = await env.client.post("/api/v1/jobs", json={"command": ["/bin/true"]})
        job_id = r.json()["id"]
        r = await http.post("/api/v1/worker/acquire", json=_acquire_body(), headers=worker)
        assert r.status_code == 200, r.text
        (assignment,) = r.json()["assignments"]
        reports = [
            {"job_id": job_id, "kind": "end", "status": "FINISHED", "exit_code": 0},
            {"job_id": job_id, "kind": "running", "started_at": "2026-01-01T00:00:00+00:00"},
            {"job_id": job_id + 1000, "kind": "end", "status": "FINISHED", "exit_code": 0},
        ]
        r = await http.post(
            "/api/v1/worker/reports",
            json={"worker_id": "w-hot", "reports": reports},
            headers=worker,
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [(x["kind"], x["moved"]) for x in results] == [
            ("running", True),
            ("end", True),
            ("end", False),
        ]
        assert assignment["job"]["id"] == job_id
        job = (await env.client.get(f"/api/v1/jobs/{job_id}")).json()
        assert job["status"] == "FINISHED"
        metrics = (await env.client.get("/metrics")).text
        assert 'route="/api/v1/worker/acquire"' in metrics
        assert 'route="/api/v1/worker/reports"' in metrics


async def test_the_fast_path_answers_a_well_formed_call_itself(
    start_server: ServerFactory,
) -> None:
    env = await start_server(workers=0)
    stored = await authenticate_worker(env.runtime.ctx, f"Bearer {await _token(env)}")
    passed_on: list[tuple[str, bytes]] = []

    async def fastapi(scope: Any, receive: Any, send: Any) -> None:
        passed_on.append((scope["path"], (await receive())["body"]))  # the body replayed

    sent: list[dict[str, Any]] = []

    async def call(path: str, body: dict[str, Any]) -> None:
        scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "headers": [(b"content-type", b"application/json")],
            "state": {"principal": worker_principal(stored), "worker_token": stored},
            "app": SimpleNamespace(state=SimpleNamespace(ctx=env.runtime.ctx)),
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        await answer_worker(scope, json.dumps(body).encode(), receive, send, fastapi)

    await call("/api/v1/worker/acquire", _acquire_body())
    await call("/api/v1/worker/reports", {"worker_id": "w-hot", "reports": []})
    assert passed_on == []
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert statuses == [200, 200]
    await call("/api/v1/worker/acquire", _acquire_body(free="many"))
    # Not sure: FastAPI answers, given the same body.
    assert passed_on == [
        ("/api/v1/worker/acquire", json.dumps(_acquire_body(free="many")).encode())
    ]
