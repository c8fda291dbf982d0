"""Reports carried by an acquisition (``POST /api/v1/worker/acquire`` with ``reports``).

A remote worker sends its pending RUNNING and end reports with its next acquisition:
the server writes them before the claim, in its transaction, and answers their
outcomes in ``results``. Each report keeps its guards (the holder, the status), and a
call carrying reports never long-polls: it answers at once when nothing is queued.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import MutableMapping
from types import SimpleNamespace
from typing import Any

import httpx

from jobyard.api.worker_hotpath import answer_worker
from jobyard.service.worker_tokens import authenticate_worker, worker_principal
from tests.integration.conftest import Env, ServerFactory

ACQUIRE = "/api/v1/worker/acquire"


async def _worker(env: Env) -> dict[str, str]:
    r = await env.client.post("/api/v1/worker-tokens", json={"name": "carry"})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _body(worker_id: str, free: int, wait: float, reports: list[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "worker_id": worker_id,
        "pool": "default",
        "free": free,
        "wait_seconds": wait,
    }
    if reports:
        body["reports"] = reports
    return body


def _ran(job_id: int, record: str | None = None) -> list[dict[str, Any]]:
    started = "2026-01-01T00:00:00Z"
    return [
        {"job_id": job_id, "kind": "end", "status": "FINISHED", "exit_code": 0},
        {"job_id": job_id, "kind": "running", "pid": 42, "started_at": started, "record": record},
    ]


async def _submit(env: Env) -> int:
    r = await env.client.post("/api/v1/jobs", json={"command": ["/bin/true"]})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def test_reports_ride_an_acquisition_and_are_written_before_its_claim(
    start_server: ServerFactory,
) -> None:
    env = await start_server(workers=0)
    worker = await _worker(env)
    first, second = await _submit(env), await _submit(env)
    async with httpx.AsyncClient(base_url=env.url, timeout=30, headers=worker) as http:
        r = await http.post(ACQUIRE, json=_body("w-a", 1, 0, []))
        assert r.status_code == 200, r.text
        answer = r.json()
        assert "results" not in answer  # no reports carried: the answer of old
        assert [a["job"]["id"] for a in answer["assignments"]] == [first]
        assert answer["assignments"][0]["record"] == "{}"  # no macro: nothing sealed

        record = answer["assignments"][0]["record"]
        r = await http.post(ACQUIRE, json=_body("w-a", 1, 0, _ran(first, record)))
        assert r.status_code == 200, r.text
        answer = r.json()
        assert [a["job"]["id"] for a in answer["assignments"]] == [second]
        assert [(x["job_id"], x["kind"], x["moved"]) for x in answer["results"]] == [
            (first, "running", True),
            (first, "end", True),
        ]
    job = (await env.client.get(f"/api/v1/jobs/{first}")).json()
    assert job["status"] == "FINISHED" and job["started_at"].startswith("2026-01-01")
    record = (await env.client.get(f"/api/v1/jobs/{first}/macros")).json()
    assert record["resolved"] is True  # the plain empty record was kept as the record
    events = (await env.client.get(f"/api/v1/jobs/{first}/events")).json()
    statuses = [e["status"] for e in (events["items"] if isinstance(events, dict) else events)]
    assert statuses[-2:] == ["RUNNING", "FINISHED"]


async def test_an_acquisition_carrying_reports_does_not_wait_for_a_job(
    start_server: ServerFactory,
) -> None:
    env = await start_server(workers=0)
    worker = await _worker(env)
    job_id = await _submit(env)
    async with httpx.AsyncClient(base_url=env.url, timeout=60, headers=worker) as http:
        r = await http.post(ACQUIRE, json=_body("w-b", 1, 0, []))
        assert [a["job"]["id"] for a in r.json()["assignments"]] == [job_id]
        began = time.monotonic()
        r = await http.post(ACQUIRE, json=_body("w-b", 4, 30, _ran(job_id)))
        assert r.status_code == 200, r.text
        assert time.monotonic() - began < 10  # answered at once, not after 30 s
        assert r.json()["assignments"] == []
        assert all(x["moved"] for x in r.json()["results"])
        # Nothing free to claim: the reports are written all the same.
        other = await _submit(env)
        r = await http.post(ACQUIRE, json=_body("w-b", 1, 0, []))
        assert [a["job"]["id"] for a in r.json()["assignments"]] == [other]
        r = await http.post(ACQUIRE, json=_body("w-b", 0, 30, _ran(other)))
        assert r.status_code == 200, r.text
        assert r.json()["assignments"] == [] and all(x["moved"] for x in r.json()["results"])
    assert (await env.client.get(f"/api/v1/jobs/{other}")).json()["status"] == "FINISHED"


async def test_a_worker_cannot_report_on_a_job_it_does_not_hold_through_an_acquisition(
    start_server: ServerFactory,
) -> None:
    env = await start_server(workers=0, lease_seconds=1.0)
    worker = await _worker(env)
    job_id = await _submit(env)
    async with httpx.AsyncClient(base_url=env.url, timeout=30, headers=worker) as http:
        r = await http.post(ACQUIRE, json=_body("w-holder", 1, 0, []))
        assert [a["job"]["id"] for a in r.json()["assignments"]] == [job_id]
        r = await http.post(ACQUIRE, json=_body("w-intruder", 1, 0, _ran(job_id)))
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [(x["kind"], x["moved"]) for x in results] == [("running", False), ("end", False)]
        assert all("not held by worker w-intruder" in x["error"] for x in results)
        assert (await env.client.get(f"/api/v1/jobs/{job_id}")).json()["status"] == "INITIALIZING"
        # The lease expires: the server fails the job; its holder's late reports are refused.
        deadline = time.monotonic() + 20
        while (await env.client.get(f"/api/v1/jobs/{job_id}")).json()["status"] != "FAILED":
            assert time.monotonic() < deadline, "the lease of the job never expired"
            await asyncio.sleep(0.1)
        r = await http.post(ACQUIRE, json=_body("w-holder", 1, 0, _ran(job_id)))
        assert r.status_code == 200, r.text
        assert [x["moved"] for x in r.json()["results"]] == [False, False]
    job = (await env.client.get(f"/api/v1/jobs/{job_id}")).json()
    assert job["status"] == "FAILED" and job["exit_code"] is None and job["started_at"] is None


async def test_a_malformed_carried_report_is_refused_like_the_reports_call(
    start_server: ServerFactory,
) -> None:
    env = await start_server(workers=0)
    worker = await _worker(env)
    async with httpx.AsyncClient(base_url=env.url, timeout=30, headers=worker) as http:
        bad = [{"job_id": 1, "kind": "end", "status": "RUNNING"}]
        r = await http.post(ACQUIRE, json=_body("w-c", 1, 0, bad))
        assert r.status_code == 422, r.text
        r = await http.post(ACQUIRE, json=_body("w-c", 1, 0, [{"job_id": 1, "kind": "bogus"}]))
        assert r.status_code == 422, r.text


async def test_an_acquisition_whose_caller_hung_up_claims_nothing(
    start_server: ServerFactory,
) -> None:
    env = await start_server(workers=0)
    r = await env.client.post("/api/v1/worker-tokens", json={"name": "gone"})
    stored = await authenticate_worker(env.runtime.ctx, f"Bearer {r.json()['token']}")
    job_id = await _submit(env)

    async def call(hung_up: bool) -> list[dict[str, Any]]:
        scope = {
            "type": "http",
            "method": "POST",
            "path": ACQUIRE,
            "headers": [(b"content-type", b"application/json")],
            "state": {"principal": worker_principal(stored), "worker_token": stored},
            "app": SimpleNamespace(state=SimpleNamespace(ctx=env.runtime.ctx)),
        }
        body = json.dumps(_body("w-gone", 1, 0, [])).encode()
        still_there = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if not hung_up:
                await still_there.wait()  # the caller waits for its answer
            return {"type": "http.disconnect"}

        sent: list[dict[str, Any]] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        await answer_worker(scope, body, receive, send, _never_called)
        answer = json.loads(b"".join(m.get("body", b"") for m in sent))
        return list(answer["assignments"])

    assert await call(hung_up=True) == []
    assert (await env.client.get(f"/api/v1/jobs/{job_id}")).json()["status"] == "QUEUED"
    assert [a["job"]["id"] for a in await call(hung_up=False)] == [job_id]


async def _never_called(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the fast path passed a well-formed call on")
