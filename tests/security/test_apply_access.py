"""Apply, export and run-by-name as a user who may not see or change everything: every
access rule holds per object, and an invisible jobconfig stays invisible (no id, no
field of it in any answer; the same 404 as a missing name)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.conftest import Env

API = "/api/v1"
PASSWORD = "correct horse battery"
SECRET = "a-secret-description-7f3a"


async def _login(env: Env, name: str) -> httpx.AsyncClient:
    body = {"name": name, "role": "user", "password": PASSWORD}
    user = await env.client.post(f"{API}/users", json=body)
    assert user.status_code == 201, user.text
    async with httpx.AsyncClient(base_url=env.url) as anon:
        r = await anon.post(f"{API}/login", json={"name": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    client = httpx.AsyncClient(base_url=env.url, headers=headers)
    client.user_id = user.json()["id"]  # type: ignore[attr-defined]
    return client


async def _admin_jobconfig(env: Env, name: str) -> dict[str, Any]:
    body = {"name": name, "command": ["/bin/sh", "-c", "echo x"], "description": SECRET}
    r = await env.client.post(f"{API}/jobconfigs", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_an_invisible_jobconfig_stays_invisible(env: Env) -> None:
    hidden = await _admin_jobconfig(env, "hidden-etl")
    bob = await _login(env, "bob")
    async with bob:
        exported = await bob.get(f"{API}/export")
        assert exported.status_code == 200, exported.text
        assert "hidden-etl" not in exported.text and SECRET not in exported.text

        r = await bob.get(f"{API}/export", params={"name": "hidden-etl"})
        missing = await bob.get(f"{API}/export", params={"name": "never-was"})
        assert r.status_code == missing.status_code == 404
        assert r.json()["error"]["message"] == "no jobconfig named 'hidden-etl'"

        document = {"jobconfigs": [{"name": "hidden-etl", "command": ["true"]}]}
        plan = await bob.post(f"{API}/apply", params={"dry_run": "true"}, json=document)
        assert plan.status_code == 200, plan.text
        (item,) = plan.json()["jobconfigs"]
        # refused as creating that name is refused, without the object's id or fields
        assert item["action"] == "failed" and item["id"] is None
        assert item["error"].startswith("a jobconfig named 'hidden-etl' already exists")
        assert SECRET not in plan.text and f'"id":{hidden["id"]}' not in plan.text

        refused = await bob.post(f"{API}/apply", json=document)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "apply_refused"
        assert SECRET not in refused.text and f'"id":{hidden["id"]}' not in refused.text

        run = await bob.post(f"{API}/jobconfigs/by-name/hidden-etl/run")
        nothing = await bob.post(f"{API}/jobconfigs/by-name/never-was/run")
        assert run.status_code == nothing.status_code == 404
        assert run.text == nothing.text.replace("never-was", "hidden-etl")
    after = await env.client.get(f"{API}/jobconfigs/{hidden['id']}")
    assert after.json()["command"] == ["/bin/sh", "-c", "echo x"]  # untouched


async def test_a_viewer_may_not_change_through_apply(env: Env) -> None:
    shared = await _admin_jobconfig(env, "shared-etl")
    carol = await _login(env, "carol")
    grant = {"action": "view", "resource": "jobconfigs", "selector": str(shared["id"])}
    uid = carol.user_id  # type: ignore[attr-defined]
    r = await env.client.post(f"{API}/users/{uid}/policies", json=grant)
    assert r.status_code == 201, r.text
    async with carol:
        exported = await carol.get(f"{API}/export")
        assert "name: shared-etl" in exported.text
        # her export applies as a no-op: she changes nothing, so she needs no edit right
        same = await carol.post(
            f"{API}/apply",
            content=exported.text,
            headers={"Content-Type": "application/yaml"},
        )
        assert same.status_code == 200, same.text
        assert same.json()["jobconfigs"][0]["action"] == "unchanged"

        changed = exported.text.replace("timeout: 0", "timeout: 7")
        plan = await carol.post(
            f"{API}/apply",
            params={"dry_run": "true"},
            content=changed,
            headers={"Content-Type": "application/yaml"},
        )
        (item,) = plan.json()["jobconfigs"]
        assert item["action"] == "failed" and "may not edit jobconfig 'shared-etl'" in item["error"]
        r = await carol.post(
            f"{API}/apply", content=changed, headers={"Content-Type": "application/yaml"}
        )
        assert r.status_code == 422 and r.json()["error"]["code"] == "apply_refused"
        # a jobconfig of her own in the same document is not created either
        both = changed + "  - name: carols-own\n    command: [x]\n"
        r = await carol.post(
            f"{API}/apply", content=both, headers={"Content-Type": "application/yaml"}
        )
        assert r.status_code == 422
        assert (await carol.get(f"{API}/jobconfigs", params={"name": "carols-own"})).json()[
            "items"
        ] == []
    after = await env.client.get(f"{API}/jobconfigs/{shared['id']}")
    assert after.json()["timeout"] == 0
