"""A submission claims for a waiting long-poll in its own transaction (``ride_submits``):
attempts to get jobs that way that the worker's own claim would not give it.

* a long-poll of another pool is never claimed for;
* a long-poll whose caller hung up is never claimed for (the job would sit held by a
  worker that is gone, until its lease ran out).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.integration.conftest import Env, ServerFactory
from tests.support.rawhttp import RawRequest, head

ACQUIRE = "/api/v1/worker/acquire"


async def _token(env: Env, pool: str) -> str:
    r = await env.client.post("/api/v1/worker-tokens", json={"name": f"ride-{pool}", "pool": pool})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def _long_poll(pool: str, wait: float) -> dict[str, Any]:
    return {"worker_id": f"w-{pool}", "pool": pool, "free": 4, "wait_seconds": wait}


async def _submit_while_waiting(
    env: Env, token: str, pool: str, wait: float
) -> tuple[httpx.Response, dict[str, Any]]:
    """A long-poll of ``pool`` that found nothing and waits; then a job of pool
    ``default`` is submitted. The long-poll's answer and the job as submitted."""
    async with httpx.AsyncClient(base_url=env.url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {token}"}
        poll = asyncio.ensure_future(
            http.post(ACQUIRE, json=_long_poll(pool, wait), headers=headers)
        )
        await asyncio.sleep(0.5)  # the long-poll found nothing and waits
        job = await env.run_command(["true"])
        return await poll, job


async def test_a_long_poll_of_another_pool_is_not_claimed_for(start_server: ServerFactory) -> None:
    env = await start_server(workers=0)
    r, job = await _submit_while_waiting(env, await _token(env, "gpu"), "gpu", 1.5)
    assert r.status_code == 200, r.text
    assert r.json()["assignments"] == []
    shown = (await env.client.get(f"/api/v1/jobs/{job['id']}")).json()
    assert shown["status"] == "QUEUED" and shown["worker_id"] is None


async def test_a_long_poll_whose_caller_hung_up_is_not_claimed_for(
    start_server: ServerFactory,
) -> None:
    env = await start_server(workers=0)
    token = await _token(env, "default")
    body = json.dumps(_long_poll("default", 20)).encode()
    raw = RawRequest(env.url)
    try:
        raw.send(head("POST", ACQUIRE, token=token, length=len(body)) + body)
        await asyncio.sleep(0.5)  # the long-poll found nothing and waits
    finally:
        raw.close()  # the worker is gone (killed, its host lost...)
    await asyncio.sleep(0.3)  # the server has seen the connection close
    job = await env.run_command(["true"])
    await asyncio.sleep(0.3)
    shown = (await env.client.get(f"/api/v1/jobs/{job['id']}")).json()
    assert shown["status"] == "QUEUED" and shown["worker_id"] is None


async def test_a_waiting_long_poll_of_the_pool_gets_the_job(start_server: ServerFactory) -> None:
    """The riding claim itself (the control of the two tests above)."""
    env = await start_server(workers=0)
    r, job = await _submit_while_waiting(env, await _token(env, "default"), "default", 10)
    assert r.status_code == 200, r.text
    assert [a["job"]["id"] for a in r.json()["assignments"]] == [job["id"]]
    shown = (await env.client.get(f"/api/v1/jobs/{job['id']}")).json()
    assert shown["status"] == "INITIALIZING" and shown["worker_id"] == "w-default"
    assert shown["acquired_at"] == shown["created_at"]  # in the submit's transaction
