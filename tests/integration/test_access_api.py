"""Access policies and the audit log through the real server, the client and the CLI."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from typer.testing import CliRunner

from jobyard.cli.main import app as cli_app
from tests.integration.conftest import Env

API = "/api/v1"
PASSWORD = "correct horse battery"


async def _user(env: Env, name: str) -> dict[str, Any]:
    body = {"name": name, "role": "user", "password": PASSWORD}
    r = await env.client.post(f"{API}/users", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _client_of(env: Env, name: str) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=env.url) as anon:
        r = await anon.post(f"{API}/login", json={"name": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    return httpx.AsyncClient(base_url=env.url, headers={"Authorization": f"Bearer {token}"})


async def test_grant_list_revoke_and_their_audit_entries(env: Env) -> None:
    alice = await _user(env, "alice")
    base = f"{API}/users/{alice['id']}/policies"
    r = await env.client.post(
        base, json={"action": "execute", "resource": "jobconfigs", "selector": "template:3"}
    )
    assert r.status_code == 201, r.text
    policy = r.json()
    assert {k: policy[k] for k in ("user_id", "action", "resource", "selector")} == {
        "user_id": alice["id"],
        "action": "execute",
        "resource": "jobconfigs",
        "selector": "template:3",
    }
    again = await env.client.post(
        base, json={"action": "execute", "resource": "jobconfigs", "selector": "template:3"}
    )
    assert again.status_code == 409
    listed = (await env.client.get(base)).json()["items"]
    assert [p["id"] for p in listed] == [policy["id"]]

    r = await env.client.delete(f"{base}/{policy['id']}")
    assert r.status_code == 204
    assert (await env.client.delete(f"{base}/{policy['id']}")).status_code == 404
    assert (await env.client.get(base)).json()["items"] == []
    assert (await env.client.get(f"{API}/users/9999/policies")).status_code == 404

    r = await env.client.get(f"{API}/audit", params={"action": "policy."})
    assert r.status_code == 200, r.text
    entries = r.json()["items"]
    assert [e["action"] for e in entries] == ["policy.revoke", "policy.grant"]
    assert entries[0]["actor"] == "user:admin" and entries[0]["object_type"] == "policy"
    assert entries[0]["object_id"] == str(policy["id"])
    assert entries[0]["remote_addr"] == "127.0.0.1"
    assert entries[1]["details"] == {
        "user_id": alice["id"],
        "action": "execute",
        "resource": "jobconfigs",
        "selector": "template:3",
    }
    by_actor = await env.client.get(f"{API}/audit", params={"actor": "admin", "limit": 1})
    page = by_actor.json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    nxt = await env.client.get(f"{API}/audit", params={"cursor": page["next_cursor"]})
    # then the grant, and before it the creation of alice (user changes are audited too)
    assert [e["action"] for e in nxt.json()["items"]] == ["policy.grant", "user.create"]
    since = await env.client.get(f"{API}/audit", params={"since": "2999-01-01T00:00:00"})
    assert since.json()["items"] == []
    empty = await env.client.get(f"{API}/audit", params={"object_type": "jobconfig"})
    assert empty.json()["items"] == []


async def test_bodies_are_validated_saying_what_is_allowed(env: Env) -> None:
    alice = await _user(env, "alice")
    base = f"{API}/users/{alice['id']}/policies"
    cases = [
        ({"action": "run", "resource": "jobconfigs", "selector": "*"}, "view"),
        ({"action": "view", "resource": "jobs", "selector": "*"}, "jobconfigs"),
        ({"action": "view", "resource": "jobconfigs", "selector": "x"}, "template:<id>"),
        ({"action": "view", "resource": "templates", "selector": "template:1"}, "an id"),
        ({"action": "view", "resource": "templates", "selector": "1", "extra": 1}, "extra"),
    ]
    for body, hint in cases:
        r = await env.client.post(base, json=body)
        assert r.status_code == 422, r.text
        assert hint in r.json()["error"]["message"], r.text
    r = await env.client.get(f"{API}/audit", params={"limit": 501})
    assert r.status_code == 422


async def test_non_admins_get_403_admin_required_even_for_bad_parameters(env: Env) -> None:
    """Admin-only routes say an admin is needed (not "no such route"), with one answer
    whatever the parameters or the user id, so nothing can be probed through them."""
    alice = await _user(env, "alice")
    answers = []
    async with await _client_of(env, "alice") as client:
        for method, path, kwargs in [
            ("GET", f"{API}/users/{alice['id']}/policies", {}),
            ("GET", f"{API}/users/9999/policies", {}),
            ("POST", f"{API}/users/{alice['id']}/policies", {"json": {"action": "nope"}}),
            ("DELETE", f"{API}/users/{alice['id']}/policies/1", {}),
            ("GET", f"{API}/audit", {}),
            ("GET", f"{API}/audit", {"params": {"limit": "many"}}),
        ]:
            r = await client.request(method, path, **kwargs)
            assert r.status_code == 403, (method, path, r.text)
            answers.append(r.json())
    error = answers[0]["error"]
    assert error["code"] == "forbidden" and error["details"] == {"required_role": "admin"}
    assert "admins only" in error["message"]
    assert all(a == answers[0] for a in answers), answers


def _cli(env: Env, *args: str) -> Any:
    runner = CliRunner(env={"COLUMNS": "240"})
    result = runner.invoke(cli_app, ["--server", env.url, "--token", env.token, *args])
    assert result.exit_code == 0, result.output
    return result.output


async def test_cli_policies_and_audit(env: Env) -> None:
    await _user(env, "bob")
    out = await asyncio.to_thread(_cli, env, "policies", "grant", "bob", "view", "templates", "*")
    assert "granted policy" in out and "bob may view templates *" in out
    listed = json.loads(await asyncio.to_thread(_cli, env, "policies", "list", "bob", "--json"))
    (policy,) = listed["items"]
    assert (policy["action"], policy["resource"], policy["selector"]) == ("view", "templates", "*")
    table = await asyncio.to_thread(_cli, env, "policies", "list", "bob")
    assert "templates" in table and "view" in table
    out = await asyncio.to_thread(_cli, env, "policies", "revoke", "bob", str(policy["id"]))
    assert f"revoked policy {policy['id']}" in out

    audit = json.loads(
        await asyncio.to_thread(
            _cli, env, "audit", "--actor", "admin", "--object", "policy", "--since", "1h", "--json"
        )
    )
    assert [e["action"] for e in audit["items"]] == ["policy.revoke", "policy.grant"]
    one = json.loads(
        await asyncio.to_thread(
            _cli, env, "audit", "--object", f"policy:{policy['id']}", "--limit", "1", "--json"
        )
    )
    assert [e["action"] for e in one["items"]] == ["policy.revoke"]
    table = await asyncio.to_thread(_cli, env, "audit", "--action", "policy.grant")
    assert "policy.grant" in table and "policy.revoke" not in table


async def test_changes_through_the_routes_are_audited_without_values(env: Env) -> None:
    await _user(env, "bob-audit")
    async with await _client_of(env, "bob-audit") as client:
        jc = (
            await client.post(f"{API}/jobconfigs", json={"name": "au", "command": ["true"]})
        ).json()
        base = f"{API}/jobconfigs/{jc['id']}"
        assert (await client.patch(base, json={"description": "d"})).status_code == 200
        macro = {"value": "Audit-Secret-77", "secure": True}
        assert (await client.put(f"{base}/macros/S", json=macro)).status_code == 200
        sched = {"interval_minutes": 60, "paused": True}
        s = (await client.post(f"{base}/schedules", json=sched)).json()
        assert (await client.post(f"{base}/schedules/{s['id']}/resume")).status_code == 200
        job = (await client.post(f"{base}/run", json={"hold": True})).json()
        assert (await client.post(f"{API}/jobs/{job['id']}/cancel")).status_code == 200
        t = (await client.post(f"{API}/templates", json={"name": "au-t"})).json()
        assert (await client.delete(f"{API}/templates/{t['id']}")).status_code == 204
        assert (await client.post(f"{API}/tokens", json={"name": "au-tok"})).status_code == 201
    r = await env.client.get(f"{API}/audit", params={"actor": "bob-audit", "limit": 100})
    entries = r.json()["items"]
    assert [e["action"] for e in reversed(entries)] == [
        "jobconfig.create",
        "jobconfig.update",
        "macro.set",
        "schedule.create",
        "schedule.resume",
        "job.submit",
        "job.cancel",
        "template.create",
        "template.delete",
        "token.create",
    ]
    assert all(e["remote_addr"] == "127.0.0.1" for e in entries)
    macro_set = next(e for e in entries if e["action"] == "macro.set")
    assert macro_set["object_type"] == "jobconfig" and macro_set["object_id"] == str(jc["id"])
    assert macro_set["details"] == {
        "level": "jobconfig", "level_id": jc["id"], "name": "S", "secure": True
    }  # fmt: skip
    assert "Audit-Secret-77" not in r.text
