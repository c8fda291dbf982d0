"""Two servers in one process keep their own caches of tokens and policies.

Servers on different databases number their users alike (``admin`` 1, the next one 2):
a policy cache shared by the process would let a user of one server see another
server's objects with the grants of their namesake there.
"""

from __future__ import annotations

import httpx

from tests.integration.conftest import Env, ServerFactory

API = "/api/v1"
PASSWORD = "correct horse battery"


async def _alice(env: Env) -> tuple[int, httpx.AsyncClient]:
    r = await env.client.post(
        f"{API}/users", json={"name": "alice", "role": "user", "password": PASSWORD}
    )
    assert r.status_code == 201, r.text
    async with httpx.AsyncClient(base_url=env.url) as anon:
        login = await anon.post(f"{API}/login", json={"name": "alice", "password": PASSWORD})
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    client = httpx.AsyncClient(base_url=env.url, headers={"Authorization": f"Bearer {token}"})
    return int(r.json()["id"]), client


async def test_policies_granted_on_one_server_open_nothing_on_another(
    start_server: ServerFactory,
) -> None:
    first = await start_server(workers=0)
    second = await start_server(workers=0)
    first_id, alice_first = await _alice(first)
    second_id, alice_second = await _alice(second)
    try:
        assert first_id == second_id  # the same user id, on two different databases

        # On the second server, an admin's jobconfig alice was granted nothing on.
        r = await second.client.post(
            f"{API}/jobconfigs", json={"name": "payroll", "command": ["true"]}
        )
        assert r.status_code == 201, r.text
        payroll = r.json()["id"]

        # On the first server alice may view every jobconfig; her policies are cached.
        grant = {"action": "view", "resource": "jobconfigs", "selector": "*"}
        r = await first.client.post(f"{API}/users/{first_id}/policies", json=grant)
        assert r.status_code == 201, r.text
        assert (await alice_first.get(f"{API}/jobconfigs")).status_code == 200

        # The second server answers from its own policies: none.
        r = await alice_second.get(f"{API}/jobconfigs/{payroll}")
        assert r.status_code == 404, r.text
        listed = await alice_second.get(f"{API}/jobconfigs")
        assert listed.status_code == 200 and listed.json()["items"] == []
    finally:
        await alice_first.aclose()
        await alice_second.aclose()
