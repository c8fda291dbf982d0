"""The console's users, tokens, policies and audit pages, attacked over HTTP.

A real server; browsers are cookie-keeping httpx clients. A non-admin gets on every
admin page and action what the API gives them for the same use case (403 where it
answers 403, the 404 of a missing user for another user, never a name or a number of
an invisible object); every new ``POST`` needs the session's CSRF token and a
same-origin request; a personal token's value is shown once, in the answer to the
``POST`` that made it, and on no ``GET`` page, URL or redirect afterwards.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx

from tests.integration.conftest import Env
from tests.security.web_support import signed_in

PASSWORD = "console-admin-pass-1"


async def _user(env: Env, name: str, role: str = "user") -> dict[str, Any]:
    r = await env.client.post(
        "/api/v1/users", json={"name": name, "role": role, "password": PASSWORD}
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _main(html: str) -> str:
    """The ``<main>`` of a page (what differs between two users' pages of the same kind)."""
    found = re.search(r"<main.*</main>", html, re.DOTALL)
    assert found, html
    return found.group(0)


def _signed_in(env: Env, name: str) -> AbstractAsyncContextManager[tuple[httpx.AsyncClient, str]]:
    """A browser logged in to the console as ``name``, and its session's CSRF token."""
    return signed_in(env, name, PASSWORD)


@asynccontextmanager
async def _api_as(env: Env, name: str) -> AsyncIterator[httpx.AsyncClient]:
    """An API client with a login token of ``name``."""
    async with httpx.AsyncClient(base_url=env.url, timeout=30) as anon:
        r = await anon.post("/api/v1/login", json={"name": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
    async with httpx.AsyncClient(
        base_url=env.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        yield client


async def test_admin_manages_users_policies_and_tokens(env: Env) -> None:
    await _user(env, "root2", role="admin")
    jc = await env.client.post(
        "/api/v1/jobconfigs", json={"name": "nightly-report", "command": ["/bin/true"]}
    )
    assert jc.status_code == 201, jc.text
    async with _signed_in(env, "root2") as (client, csrf):
        # Create: a weak password is the API's 422, saying what to fix, the form kept.
        form = {"csrf_token": csrf, "name": "newbie", "role": "user"}
        r = await client.post("/users", data={**form, "password": "short", "password2": "short"})
        assert r.status_code == 422, r.text
        assert "a password needs 8 to 1024 characters" in r.text
        assert 'value="newbie"' in r.text
        strong = {"password": PASSWORD, "password2": PASSWORD}
        r = await client.post("/users", data={**form, "password": PASSWORD, "password2": "x"})
        assert r.status_code == 422 and "the two passwords differ" in r.text
        r = await client.post("/users", data={**form, **strong})
        assert r.status_code == 303, r.text
        where = r.headers["location"]
        assert re.fullmatch(r"/users/\d+\?done=created", where), where
        page = await client.get(where)
        assert page.status_code == 200 and "User created." in page.text
        user_id = int(where.split("/")[2].split("?")[0])
        # A name taken: the API's 409.
        r = await client.post("/users", data={**form, **strong})
        assert r.status_code == 409, r.text
        # Role, password reset, deactivate, reactivate.
        r = await client.post(f"/users/{user_id}/role", data={"csrf_token": csrf, "role": "admin"})
        assert r.status_code == 303 and r.headers["location"].endswith("?done=role")
        api_user = (await env.client.get(f"/api/v1/users/{user_id}")).json()
        assert api_user["role"] == "admin"
        r = await client.post(
            f"/users/{user_id}/role", data={"csrf_token": csrf, "role": "superuser"}
        )
        assert r.status_code == 422 and "role must be one of" in r.text
        new_pw = {"password": "another-pass-2", "password2": "another-pass-2"}
        r = await client.post(f"/users/{user_id}/password", data={"csrf_token": csrf, **new_pw})
        assert r.status_code == 303, r.text
        login = await env.client.post(
            "/api/v1/login", json={"name": "newbie", "password": "another-pass-2"}
        )
        assert login.status_code == 200
        r = await client.post(f"/users/{user_id}/deactivate", data={"csrf_token": csrf})
        assert r.status_code == 303 and r.headers["location"].endswith("?done=deactivated")
        assert not (await env.client.get(f"/api/v1/users/{user_id}")).json()["active"]
        r = await client.post(f"/users/{user_id}/activate", data={"csrf_token": csrf})
        assert r.status_code == 303
        assert (await env.client.get(f"/api/v1/users/{user_id}")).json()["active"]
        # An admin cannot deactivate themselves: the API's 409.
        me = (await env.client.get("/api/v1/users")).json()["items"]
        root2 = next(u for u in me if u["name"] == "root2")
        r = await client.post(f"/users/{root2['id']}/deactivate", data={"csrf_token": csrf})
        assert r.status_code == 409 and "you cannot deactivate yourself" in r.text

        # Grant by names (as the CLI), then revoke.
        grant = {
            "csrf_token": csrf,
            "user": "newbie",
            "action": "execute",
            "resource": "jobconfigs",
            "selector": "nightly-report",
        }
        r = await client.post("/policies", data=grant)
        assert r.status_code == 303, r.text
        assert r.headers["location"] == "/policies?user=newbie&done=granted"
        policies = (await env.client.get(f"/api/v1/users/{user_id}/policies")).json()["items"]
        assert [(p["action"], p["selector"]) for p in policies] == [
            ("execute", str(jc.json()["id"]))
        ]
        r = await client.post("/policies", data=grant)
        assert r.status_code == 409, r.text
        r = await client.post("/policies", data={**grant, "selector": "no-such-jobconfig"})
        assert r.status_code == 404 and "no jobconfig named" in r.text
        assert 'value="no-such-jobconfig"' in r.text  # the form kept as typed
        r = await client.post("/policies", data={**grant, "user": "ghost"})
        assert r.status_code == 404 and "no user named" in r.text
        r = await client.post("/policies", data={**grant, "action": "own"})
        assert r.status_code == 422 and "is not one of" in r.text
        # Template names, for templates and as template:NAME for jobconfigs; ids and '*'.
        tpl = await env.client.post(
            "/api/v1/templates", json={"name": "base-tpl", "command": ["/bin/true"]}
        )
        assert tpl.status_code == 201, tpl.text
        tpl_id = tpl.json()["id"]
        for resource, selector, stored in (
            ("templates", "base-tpl", str(tpl_id)),
            ("jobconfigs", "template:base-tpl", f"template:{tpl_id}"),
            ("jobconfigs", f"template:{tpl_id}", None),  # the same grant again: 409
            ("jobconfigs", "*", "*"),
            ("adhoc", "*", "*"),
        ):
            action = "execute" if resource == "adhoc" else "view"
            r = await client.post(
                "/policies",
                data={**grant, "action": action, "resource": resource, "selector": selector},
            )
            assert r.status_code == (409 if stored is None else 303), (selector, r.text)
            if stored is not None:
                got = (await env.client.get(f"/api/v1/users/{user_id}/policies")).json()
                assert (action, resource, stored) in [
                    (p["action"], p["resource"], p["selector"]) for p in got["items"]
                ]
        r = await client.post(
            "/policies", data={**grant, "resource": "templates", "selector": "template:base-tpl"}
        )
        assert r.status_code == 422, r.text
        got = (await env.client.get(f"/api/v1/users/{user_id}/policies")).json()["items"]
        for p in got:  # back to the one jobconfig grant
            if p["id"] != policies[0]["id"]:
                r = await client.post(
                    f"/policies/{user_id}/{p['id']}/revoke", data={"csrf_token": csrf}
                )
                assert r.status_code == 303, r.text
        page = await client.get("/policies?user=newbie&done=granted")
        assert page.status_code == 200 and "Policy granted." in page.text
        pid = policies[0]["id"]
        r = await client.post(
            f"/policies/{user_id}/{pid}/revoke", data={"csrf_token": csrf, "user": "newbie"}
        )
        assert r.status_code == 303, r.text
        assert (await env.client.get(f"/api/v1/users/{user_id}/policies")).json()["items"] == []
        r = await client.post(f"/policies/{user_id}/{pid}/revoke", data={"csrf_token": csrf})
        assert r.status_code == 404

        # The audit log holds all of it, newest first, filtered.
        page = await client.get("/audit", params={"action": "policy."})
        assert page.status_code == 200
        text = page.text
        assert text.index("policy.revoke") < text.index("policy.grant")
        assert "user.create" not in text
        page = await client.get("/audit", params={"actor": "root2", "object_type": "user"})
        assert "user.create" in page.text and "user.deactivate" in page.text
        page = await client.get("/audit", params={"since": "yesterday"})
        assert page.status_code == 422 and "is not a time" in page.text
        page = await client.get(
            "/audit", params={"since": "2000-01-01T00:00", "until": "2000-01-02T00:00"}
        )
        assert page.status_code == 200 and "No entry matches these filters." in page.text


async def test_a_non_admin_gets_what_the_api_gives_them(env: Env) -> None:
    alice = await _user(env, "alice")
    bob = await _user(env, "bob")
    admin_token = await env.client.post("/api/v1/tokens", json={"name": "admins-own"})
    assert admin_token.status_code == 201
    admin_token_id = admin_token.json()["id"]
    async with _signed_in(env, "alice") as (client, csrf), _api_as(env, "alice") as api:
        # The nav offers only what alice may use.
        home = (await client.get("/")).text
        assert 'href="/tokens"' in home and 'href="/me"' in home
        for admin_link in ('href="/users"', 'href="/policies"', 'href="/audit"'):
            assert admin_link not in home
        # The users list: only herself, as GET /api/v1/users.
        page = await client.get("/users")
        assert page.status_code == 200
        assert [u["name"] for u in (await api.get("/api/v1/users")).json()["items"]] == ["alice"]
        assert "alice" in page.text and "bob" not in page.text
        assert "New user" not in page.text
        # Another user's page: exactly the 404 of a missing one.
        other = await client.get(f"/users/{bob['id']}")
        missing = await client.get("/users/999999")
        assert (await api.get(f"/api/v1/users/{bob['id']}")).status_code == 404
        assert other.status_code == missing.status_code == 404
        assert _main(other.text).replace(str(bob["id"]), "N") == _main(missing.text).replace(
            "999999", "N"
        )
        assert "bob" not in other.text
        assert (await client.get(f"/users/{alice['id']}")).status_code == 200
        # Admin-only pages: the API's 403 with its message.
        api_audit = await api.get("/api/v1/audit")
        assert api_audit.status_code == 403
        for path in ("/policies", "/audit", "/policies?user=bob", "/audit?actor=bob"):
            r = await client.get(path)
            assert r.status_code == 403, (path, r.status_code)
            assert "for admins only" in r.text
            assert "bob" not in r.text.replace("user=bob", "")
        # Tokens of another user: the 404 the API answers.
        assert (await api.get("/api/v1/tokens", params={"user": "bob"})).status_code == 404
        r = await client.get("/tokens", params={"user": "bob"})
        assert r.status_code == 404
        # Every admin action, as the API answers it (and nothing changes).
        strong = {"password": PASSWORD, "password2": PASSWORD}
        posts: list[tuple[str, dict[str, str], int]] = [
            ("/users", {"name": "mallory", "role": "admin", **strong}, 403),
            (f"/users/{bob['id']}/role", {"role": "admin"}, 404),
            (f"/users/{alice['id']}/role", {"role": "admin"}, 403),
            (f"/users/{bob['id']}/password", strong, 404),
            (f"/users/{bob['id']}/deactivate", {}, 404),
            (f"/users/{alice['id']}/deactivate", {}, 403),
            (f"/users/{bob['id']}/activate", {}, 404),
            (
                "/policies",
                {"user": "alice", "action": "view", "resource": "jobconfigs", "selector": "*"},
                403,
            ),
            (f"/policies/{bob['id']}/1/revoke", {}, 403),
            (f"/tokens/{admin_token_id}/revoke", {}, 404),
        ]
        api_answers = [
            (await api.post("/api/v1/users", json={"name": "mallory", "role": "admin"})),
            (await api.patch(f"/api/v1/users/{bob['id']}", json={"role": "admin"})),
            (await api.patch(f"/api/v1/users/{alice['id']}", json={"role": "admin"})),
            (await api.patch(f"/api/v1/users/{bob['id']}", json={"password": PASSWORD})),
            (await api.post(f"/api/v1/users/{bob['id']}/deactivate")),
            (await api.post(f"/api/v1/users/{alice['id']}/deactivate")),
            (await api.post(f"/api/v1/users/{bob['id']}/activate")),
            (
                await api.post(
                    f"/api/v1/users/{alice['id']}/policies",
                    json={"action": "view", "resource": "jobconfigs", "selector": "*"},
                )
            ),
            (await api.delete(f"/api/v1/users/{bob['id']}/policies/1")),
            (await api.delete(f"/api/v1/tokens/{admin_token_id}")),
        ]
        for (path, form, want), api_answer in zip(posts, api_answers, strict=True):
            assert api_answer.status_code == want, (path, api_answer.text)
            r = await client.post(path, data={"csrf_token": csrf, **form})
            assert r.status_code == want, (path, r.status_code, r.text)
            if want == 404:
                assert "bob" not in r.text and "admins-own" not in r.text
        users = (await env.client.get("/api/v1/users")).json()["items"]
        assert {u["name"]: (u["role"], u["active"]) for u in users} == {
            "admin": ("admin", True),
            "alice": ("user", True),
            "bob": ("user", True),
        }
        assert (await env.client.get(f"/api/v1/users/{alice['id']}/policies")).json()["items"] == []
        tokens = (await env.client.get("/api/v1/tokens")).json()["items"]
        assert not next(t for t in tokens if t["id"] == admin_token_id)["revoked"]
        # Her own password she may change (the API allows it), from /me.
        r = await client.post(
            "/me/password",
            data={"csrf_token": csrf, "password": "alice-new-pass", "password2": "alice-new-pass"},
        )
        assert r.status_code == 303 and r.headers["location"] == "/me?done=password"
        login = await env.client.post(
            "/api/v1/login", json={"name": "alice", "password": "alice-new-pass"}
        )
        assert login.status_code == 200


async def test_every_new_post_needs_the_csrf_token_and_the_same_origin(env: Env) -> None:
    await _user(env, "root2", role="admin")
    victim = await _user(env, "victim")
    token = await env.client.post("/api/v1/tokens", json={"name": "keep-me"})
    policy = await env.client.post(
        f"/api/v1/users/{victim['id']}/policies",
        json={"action": "view", "resource": "jobconfigs", "selector": "*"},
    )
    assert token.status_code == 201 and policy.status_code == 201
    strong = {"password": "evil-pass-123", "password2": "evil-pass-123"}
    posts: list[tuple[str, dict[str, str]]] = [
        ("/users", {"name": "intruder", "role": "admin", **strong}),
        (f"/users/{victim['id']}/role", {"role": "admin"}),
        (f"/users/{victim['id']}/password", strong),
        (f"/users/{victim['id']}/deactivate", {}),
        ("/me/password", strong),
        ("/tokens", {"name": "stolen"}),
        (f"/tokens/{token.json()['id']}/revoke", {}),
        (
            "/policies",
            {"user": "victim", "action": "edit", "resource": "jobconfigs", "selector": "*"},
        ),
        (f"/policies/{victim['id']}/{policy.json()['id']}/revoke", {}),
    ]
    async with _signed_in(env, "root2") as (client, csrf):
        for path, form in posts:
            refusals: list[tuple[str, dict[str, str], dict[str, str]]] = [
                ("no token", form, {}),
                ("wrong token", {**form, "csrf_token": "x" * 43}, {}),
                (
                    "cross-site Origin",
                    {**form, "csrf_token": csrf},
                    {"Origin": "http://evil.example"},
                ),
                (
                    "cross-site fetch",
                    {**form, "csrf_token": csrf},
                    {"Sec-Fetch-Site": "cross-site"},
                ),
            ]
            for why, data, headers in refusals:
                r = await client.post(path, data=data, headers=headers)
                assert r.status_code == 403, (path, why, r.status_code, r.text)
        # Without a session at all.
        async with httpx.AsyncClient(base_url=env.url, headers={"Origin": env.url}) as anon:
            for path, form in posts:
                r = await anon.post(path, data={**form, "csrf_token": csrf})
                assert r.status_code == 403, (path, r.text)
    # Nothing changed.
    users = (await env.client.get("/api/v1/users")).json()["items"]
    assert {u["name"]: u["role"] for u in users} == {
        "admin": "admin",
        "root2": "admin",
        "victim": "user",
    }
    assert all(u["active"] for u in users)
    for name in ("victim", "root2"):
        login = await env.client.post(
            "/api/v1/login", json={"name": name, "password": "evil-pass-123"}
        )
        assert login.status_code == 401
    items = (await env.client.get(f"/api/v1/users/{victim['id']}/policies")).json()["items"]
    assert [p["action"] for p in items] == ["view"]
    tokens = (await env.client.get("/api/v1/tokens", params={"user": "root2"})).json()["items"]
    assert tokens == []
    mine = (await env.client.get("/api/v1/tokens")).json()["items"]
    assert [t["revoked"] for t in mine if t["name"] == "keep-me"] == [False]


async def test_a_token_secret_is_shown_once_and_on_no_get_page(env: Env) -> None:
    me = await _user(env, "tess", role="admin")
    async with _signed_in(env, "tess") as (client, csrf):
        r = await client.post(
            "/tokens", data={"csrf_token": csrf, "name": "ci-bot", "expires_in_days": "30"}
        )
        assert r.status_code == 201, r.text
        assert "location" not in r.headers
        assert r.headers["cache-control"] == "no-store"
        found = re.search(r'<pre[^>]*id="new-token"[^>]*>([^<]+)</pre>', r.text)
        assert found, r.text
        secret = found.group(1).strip()
        assert len(secret) >= 32
        # The value works as a bearer token: it is the real one.
        who = await env.client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
        assert who.status_code == 200 and who.json()["name"] == "tess"
        pages = [
            "/tokens",
            "/tokens?all=1",
            "/tokens?user=tess",
            "/me",
            "/users",
            f"/users/{me['id']}",
            "/audit",
            "/audit?action=token.",
            "/policies",
            "/",
        ]
        for path in pages:
            page = await client.get(path)
            assert page.status_code == 200, (path, page.text)
            assert secret not in page.text, path
            assert secret not in str(page.url)
        listing = await client.get("/tokens")
        assert "ci-bot" in listing.text
        # That use is its last use, in the API's listing and on the page.
        api_listing = (await env.client.get("/api/v1/tokens?user=tess")).json()["items"]
        used = next(t for t in api_listing if t["name"] == "ci-bot")["last_used_at"]
        assert used is not None
        row = re.search(r"<tr><td>ci-bot</td>.*?</tr>", listing.text, re.DOTALL)
        assert row and "<time" in row.group(0).split("</td>")[4], listing.text
        audit = await client.get("/audit?action=token.")
        assert "token.create" in audit.text and "ci-bot" in audit.text
        # Bad input: the API's 422, saying what to fix, no token made.
        for form, why in (
            ({"name": ""}, "give the token a name"),
            ({"name": "x", "expires_in_days": "-1"}, "a number of days"),
            ({"name": "x", "expires_in_days": "soon"}, "a number of days"),
        ):
            r = await client.post("/tokens", data={"csrf_token": csrf, **form})
            assert r.status_code == 422 and why in r.text, (form, r.text)
        # Revoked through the console: the bearer stops working.
        token_id = next(
            t["id"]
            for t in (await env.client.get("/api/v1/tokens?user=tess")).json()["items"]
            if t["name"] == "ci-bot"
        )
        r = await client.post(f"/tokens/{token_id}/revoke", data={"csrf_token": csrf})
        assert r.status_code == 303 and r.headers["location"] == "/tokens?done=revoked"
        assert secret not in r.headers["location"]
        page = await client.get(r.headers["location"])
        assert "Token revoked." in page.text and secret not in page.text
        who = await env.client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
        assert who.status_code == 401
