"""The console's Drain button on the workers page, attacked over HTTP.

A real server with two worker processes; browsers are cookie-keeping httpx clients.
Only admins see the button, and its ``POST`` needs the session's CSRF token and a
same-origin request; a non-admin who posts it anyway gets the API's 403, and an
unknown worker the API's 404. Nothing is drained by a refused request.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx

from tests.integration.conftest import Env, ServerFactory
from tests.security.web_support import signed_in

PASSWORD = "console-admin-pass-1"


async def _user(env: Env, name: str, role: str) -> None:
    r = await env.client.post(
        "/api/v1/users", json={"name": name, "role": role, "password": PASSWORD}
    )
    assert r.status_code == 201, r.text


async def _workers(env: Env) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        items = (await env.client.get("/api/v1/workers")).json()["items"]
        if len([w for w in items if w["health"] == "healthy"]) >= 2:
            return list(items)
        assert asyncio.get_running_loop().time() < deadline, items
        await asyncio.sleep(0.05)


async def test_only_an_admin_drains_a_worker_from_the_console(
    start_server: ServerFactory,
) -> None:
    env = await start_server(workers=2, worker_processes=2)
    target, other = (w["id"] for w in await _workers(env))
    action = f"/workers/{quote(target, safe='')}/drain"
    await _user(env, "root2", "admin")
    await _user(env, "alice", "user")

    # A user sees no button, and posting the form anyway is the API's 403.
    async with signed_in(env, "alice", PASSWORD, page="/workers") as (client, csrf):
        page = await client.get("/workers")
        assert page.status_code == 200 and "/drain" not in page.text
        r = await client.post(action, data={"csrf_token": csrf})
        assert r.status_code == 403 and "only an admin may drain a worker" in r.text, r.text

    async with signed_in(env, "root2", PASSWORD, page="/workers") as (client, csrf):
        page = await client.get("/workers")
        assert f'action="{action}"' in page.text, page.text
        # Refused without the token, with a wrong one, or from another site.
        for why, data, headers in (
            ("no token", {}, {}),
            ("wrong token", {"csrf_token": "x" * 43}, {}),
            ("cross-site Origin", {"csrf_token": csrf}, {"Origin": "http://evil.example"}),
            ("cross-site fetch", {"csrf_token": csrf}, {"Sec-Fetch-Site": "cross-site"}),
        ):
            r = await client.post(action, data=data, headers=headers)
            assert r.status_code == 403, (why, r.status_code, r.text)
        async with httpx.AsyncClient(base_url=env.url, headers={"Origin": env.url}) as anon:
            assert (await anon.post(action, data={"csrf_token": csrf})).status_code == 403
        listed = {w["id"]: w for w in (await env.client.get("/api/v1/workers")).json()["items"]}
        assert not listed[target]["drain_requested"], "a refused request drained it"

        # An unknown worker: the API's 404.
        r = await client.post("/workers/nobody%3A1%3Ax/drain", data={"csrf_token": csrf})
        assert r.status_code == 404 and "worker nobody:1:x does not exist" in r.text

        # The admin's drain: back to the page, which confirms it and shows it draining.
        r = await client.post(action, data={"csrf_token": csrf})
        assert r.status_code == 303, r.text
        shown = await client.get(r.headers["location"])
        assert shown.status_code == 200
        assert f"Worker {target} was asked to drain" in shown.text, shown.text
        listed = {w["id"]: w for w in (await env.client.get("/api/v1/workers")).json()["items"]}
        assert listed[target]["health"] == "draining" and listed[target]["drain_requested"]
        assert not listed[other]["drain_requested"]
