"""The console's door, attacked over HTTP against a real server.

Login through ``POST /login`` shares users, passwords and throttling with
``POST /api/v1/login``; its session cookie is HttpOnly, SameSite=Strict and never
opens ``/api/...``; every state change needs the session's CSRF token *and* a
same-origin request; logout revokes the session's tokens; ``next=`` only goes to local
paths; a user without policies sees nothing of another user's jobs or jobconfigs.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from jobyard.service import users
from jobyard.store.sql import base as store_base
from tests.integration.conftest import Env, ServerFactory
from tests.security.web_support import csrf_of

PASSWORD = "console-pass-1"


async def _user(env: Env, name: str, role: str = "user") -> None:
    r = await env.client.post(
        "/api/v1/users", json={"name": name, "role": role, "password": PASSWORD}
    )
    assert r.status_code == 201, r.text


@asynccontextmanager
async def _browser(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client that sends what a browser on a console page sends."""
    async with httpx.AsyncClient(
        base_url=env.url, timeout=30, headers={"Origin": env.url}
    ) as client:
        yield client


async def _login(client: httpx.AsyncClient, name: str, **extra: Any) -> httpx.Response:
    return await client.post(
        "/login", data={"name": name, "password": PASSWORD, **extra.pop("form", {})}, **extra
    )


@asynccontextmanager
async def _signed_in(env: Env, name: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A browser logged in as ``name``, and the CSRF token of its session."""
    async with _browser(env) as client:
        r = await _login(client, name)
        assert r.status_code == 303, r.text
        page = await client.get("/")
        assert page.status_code == 200, page.text
        yield client, csrf_of(page.text)


async def test_login_sets_a_strict_httponly_cookie(env: Env) -> None:
    await _user(env, "carol")
    async with _browser(env) as client:
        r = await _login(client, "carol")
        assert r.status_code == 303
        assert r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        flags = {p.strip().split("=")[0].lower() for p in cookie.split(";")[1:]}
        assert cookie.startswith("jobyard_session=")
        assert {"httponly", "path", "samesite", "max-age"} <= flags
        assert "samesite=strict" in cookie.lower()
        assert "path=/" in cookie.lower()
        assert "secure" not in flags  # plain http: a Secure cookie would never come back
        page = await client.get("/")
        assert page.status_code == 200
        assert "Signed in as <strong>carol</strong>" in page.text
    # Behind a TLS proxy (uvicorn trusts X-Forwarded-Proto from 127.0.0.1) it is Secure.
    async with _browser(env) as client:
        r = await _login(client, "carol", headers={"X-Forwarded-Proto": "https"})
        assert r.status_code == 303
        assert "secure" in {p.strip().lower() for p in r.headers["set-cookie"].split(";")}


async def test_pages_carry_the_security_headers(env: Env) -> None:
    await _user(env, "carol")
    async with _signed_in(env, "carol") as (client, _):
        for path in ("/", "/jobs", "/login"):
            r = await client.get(path, follow_redirects=True)
            assert r.status_code == 200, path
            csp = r.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "same-origin"
            assert "<script>" not in r.text  # no inline script: the CSP would block it
        r = await client.get("/static/htmx.min.js")
        assert r.status_code == 200
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "max-age=31536000" in r.headers["cache-control"]
        assert (await client.get("/static/..%2Fsession.py")).status_code == 404
        assert (await client.get("/static/vendor/README.md")).status_code == 404


async def test_wrong_password_and_unknown_user_look_the_same(env: Env) -> None:
    await _user(env, "carol")
    async with _browser(env) as client:
        bad = await client.post("/login", data={"name": "carol", "password": "wrong-pass-1"})
        ghost = await client.post("/login", data={"name": "nobody", "password": "wrong-pass-1"})
        for r in (bad, ghost):
            assert r.status_code == 401
            assert "Wrong user name or password." in r.text
            assert "set-cookie" not in r.headers
        assert "jobyard_session" not in client.cookies


async def test_throttling_is_shared_with_the_api_login(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A block long enough to outlast a slow host between the API's fifth failure and the
    # console's attempt (the default first block is 1 s): what is tested is that both
    # doors count the same failures, not how long the block lasts.
    monkeypatch.setattr(users, "BACKOFF_BASE_SECONDS", 60.0)
    await _user(env, "dave")
    async with httpx.AsyncClient(base_url=env.url, timeout=30) as api:
        for _ in range(5):
            r = await api.post("/api/v1/login", json={"name": "dave", "password": "nope-nope-1"})
            assert r.status_code == 401
    async with _browser(env) as client:
        r = await _login(client, "dave")  # the right password, but the name is blocked
        assert r.status_code == 429, r.text
        assert int(r.headers["retry-after"]) >= 1
        assert "Too many failed logins" in r.text
        assert "set-cookie" not in r.headers


async def test_the_cookie_never_opens_the_api(env: Env) -> None:
    await _user(env, "carol")
    async with _signed_in(env, "carol") as (client, _):
        for path in ("/api/v1/me", "/api/v1/jobs", "/metrics"):
            r = await client.get(path)
            assert r.status_code == 401, (path, r.text)
            assert r.json()["error"]["code"] == "unauthorized"


async def test_state_changes_need_the_csrf_token_and_the_same_origin(env: Env) -> None:
    await _user(env, "erin", role="admin")
    hold = await env.run_command(["/bin/sh", "-c", "true"], hold=True)
    assert hold["status"] == "WAITING", hold
    cancel = f"/jobs/{hold['id']}/cancel"
    async with _signed_in(env, "erin") as (client, token):
        refused: list[tuple[str, dict[str, str], dict[str, str]]] = [
            ("no token", {}, {}),
            ("wrong token", {"csrf_token": "x" * 43}, {}),
            (
                "wrong header",
                {},
                {"X-CSRF-Token": token[:-1] + ("B" if token.endswith("A") else "A")},
            ),
            ("cross-site Origin", {"csrf_token": token}, {"Origin": "http://evil.example"}),
            ("null Origin", {"csrf_token": token}, {"Origin": "null"}),
            (
                "cross-site fetch",
                {"csrf_token": token},
                {"Origin": env.url, "Sec-Fetch-Site": "cross-site"},
            ),
        ]
        for why, form, headers in refused:
            r = await client.post(cancel, data=form, headers=headers)
            assert r.status_code == 403, (why, r.status_code, r.text)
        # A client that sends no Origin at all (nor Sec-Fetch-Site, nor Referer).
        async with httpx.AsyncClient(base_url=env.url, cookies=client.cookies) as bare:
            r = await bare.post(cancel, data={"csrf_token": token})
            assert r.status_code == 403
        assert (await env.client.get(f"/api/v1/jobs/{hold['id']}")).json()["status"] == "WAITING"
        # Behind a reverse proxy that rewrites Host, a current browser's Sec-Fetch-Site
        # vouches for the origin (the CSRF token is still required).
        proxied = {"Origin": "https://jobs.example.org", "Sec-Fetch-Site": "same-origin"}
        r = await client.post(cancel, data={"csrf_token": "y" * 43}, headers=proxied)
        assert r.status_code == 403
        assert "CSRF" in r.text
        # The right token, here in the header htmx sends, through that proxy (the browser
        # test posts the forms' hidden field).
        r = await client.post(cancel, headers={**proxied, "X-CSRF-Token": token})
        assert r.status_code == 303, r.text
        assert r.headers["location"] == f"/jobs/{hold['id']}?done=cancelled"
        job = (await env.client.get(f"/api/v1/jobs/{hold['id']}")).json()
        assert job["status"] == "CANCELLED"
        assert job["status_reason"] == "cancelled by erin"
        # A cross-site login form is refused too (login CSRF).
        r = await client.post(
            "/login",
            data={"name": "erin", "password": PASSWORD},
            headers={"Origin": "http://evil.example"},
        )
        assert r.status_code == 403


async def test_logout_revokes_the_session(env: Env) -> None:
    await _user(env, "carol")
    async with _signed_in(env, "carol") as (client, token):
        cookie = client.cookies["jobyard_session"]
        access = cookie.split(".")[0]
        async with httpx.AsyncClient(
            base_url=env.url, headers={"Authorization": f"Bearer {access}"}
        ) as api:
            assert (await api.get("/api/v1/me")).status_code == 200  # a real login token
            r = await client.post("/logout", data={"csrf_token": token})
            assert r.status_code == 303
            assert r.headers["location"] == "/login"
            assert "jobyard_session" not in client.cookies
            assert (await api.get("/api/v1/me")).status_code == 401
    # The old cookie, replayed: both of its tokens are revoked (no refresh either).
    async with httpx.AsyncClient(
        base_url=env.url, cookies={"jobyard_session": cookie}, headers={"Origin": env.url}
    ) as replay:
        r = await replay.get("/")
        assert r.status_code == 303
        assert r.headers["location"] == "/login?next=%2F"
        assert (await replay.post("/logout", data={"csrf_token": token})).status_code == 403


async def test_pages_without_a_session_redirect_to_login(env: Env) -> None:
    async with _browser(env) as client:
        r = await client.get("/jobs?status=ERROR")
        assert r.status_code == 303
        assert r.headers["location"] == "/login?next=%2Fjobs%3Fstatus%3DERROR"
        r = await client.get("/jobs/1")
        assert r.headers["location"] == "/login?next=%2Fjobs%2F1"
        # Forged cookies are no session.
        client.cookies.set("jobyard_session", "jy_" + "a" * 40 + ".jy_" + "b" * 40 + "." + "c" * 40)
        assert (await client.get("/")).status_code == 303


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/%0d%0aSet-Cookie:x",
        "/\x00x",
    ],
)
async def test_next_goes_to_local_paths_only(env: Env, target: str) -> None:
    await _user(env, "carol")
    async with _browser(env) as client:
        r = await _login(client, "carol", form={"next": target})
        assert r.status_code == 303
        location = r.headers["location"]
        assert location.startswith("/") and not location.startswith(("//", "/\\"))
        assert "evil" not in location or location.startswith("/%")
        # Already signed in, GET /login?next=... redirects the same way.
        r = await client.get("/login", params={"next": target})
        assert r.status_code == 303
        assert not r.headers["location"].startswith(("//", "/\\", "http", "javascript"))


async def test_next_keeps_a_local_path(env: Env) -> None:
    await _user(env, "carol")
    async with _browser(env) as client:
        r = await _login(client, "carol", form={"next": "/jobs?status=ERROR"})
        assert r.headers["location"] == "/jobs?status=ERROR"


async def test_a_user_sees_only_their_own_jobs_and_jobconfigs(env: Env) -> None:
    # Admin's jobconfig and its failed job: invisible to bob (no policies).
    r = await env.client.post(
        "/api/v1/jobconfigs",
        json={"name": "admin-secret-jc", "command": ["/bin/sh", "-c", "exit 4"]},
    )
    assert r.status_code == 201, r.text
    admin_jc = r.json()["id"]
    r = await env.client.post(f"/api/v1/jobconfigs/{admin_jc}/run", json={})
    assert r.status_code in (200, 201, 202), r.text
    admin_job = r.json()["id"]
    await _user(env, "bob")
    async with httpx.AsyncClient(base_url=env.url, timeout=30) as api:
        login = await api.post("/api/v1/login", json={"name": "bob", "password": PASSWORD})
        api.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        r = await api.post(
            "/api/v1/jobconfigs",
            json={"name": "bobs-own-jc", "command": ["/bin/sh", "-c", "exit 5"]},
        )
        assert r.status_code == 201, r.text
        r = await api.post(f"/api/v1/jobconfigs/{r.json()['id']}/run", json={})
        assert r.status_code in (200, 201, 202), r.text
        bob_job = r.json()["id"]
    await env.wait_status(admin_job)
    await env.wait_status(bob_job)
    # More failures of the admin's, newer than bob's: the dashboard's "latest failures"
    # reads past the pages whose jobs bob may not view.
    newer = [await env.run_command(["/bin/sh", "-c", "exit 6"]) for _ in range(11)]
    for job in newer:
        await env.wait_status(job["id"])
    async with _signed_in(env, "bob") as (client, _):
        for path in ("/", "/jobs", "/jobs?status=ERROR", "/jobs?since=1h", "/jobs?user=bob"):
            html = (await client.get(path)).text
            assert f'href="/jobs/{bob_job}"' in html, path
            assert "bobs-own-jc" in html, path
            assert f'href="/jobs/{admin_job}"' not in html, path
            assert "admin-secret-jc" not in html, path
        # Bob's own log downloads; the admin's answers like a missing job.
        r = await client.get(f"/jobs/{bob_job}/log")
        assert r.status_code == 200
        assert r.headers["content-disposition"] == f'attachment; filename="job-{bob_job}.log"'
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "exit code 5" in r.text
        assert (await client.get(f"/jobs/{admin_job}/log")).status_code == 404
        # The admin's job answers exactly like a job that does not exist.
        hidden = await client.get(f"/jobs/{admin_job}")
        missing = await client.get("/jobs/987654")
        assert hidden.status_code == missing.status_code == 404
        assert "admin-secret-jc" not in hidden.text
        said = [re.findall(r'role="alert">([^<]*)<', r.text) for r in (hidden, missing)]
        assert said[0] == [f"job {admin_job} does not exist"]
        assert said[1] == ["job 987654 does not exist"]
        # The jobconfigs: bob's own, none of the admin's, by list, search or direct URL.
        html = (await client.get("/jobconfigs")).text
        assert "bobs-own-jc" in html
        assert "admin-secret-jc" not in html
        html = (await client.get("/jobconfigs?q=secret")).text
        assert "admin-secret-jc" not in html and "No jobconfig matches." in html
        hidden = await client.get(f"/jobconfigs/{admin_jc}")
        missing = await client.get("/jobconfigs/987654")
        assert hidden.status_code == missing.status_code == 404
        said = [re.findall(r'role="alert">([^<]*)<', r.text) for r in (hidden, missing)]
        assert said[0][0].replace(str(admin_jc), "N") == said[1][0].replace("987654", "N")
        assert "admin-secret-jc" not in hidden.text
        # Filtering by the admin as submitter shows none of their jobs.
        html = (await client.get("/jobs?user=admin")).text
        assert f'href="/jobs/{admin_job}"' not in html
        assert "No job matches." in html
        # Filtering by the hidden jobconfig shows nothing of it either.
        html = (await client.get(f"/jobs?jobconfig={admin_jc}")).text
        assert f'href="/jobs/{admin_job}"' not in html
        assert "admin-secret-jc" not in html


async def test_an_expired_access_token_is_refreshed_once(start_server: ServerFactory) -> None:
    """The session outlives its 1.2 s access token through one refresh (with rotation).
    Requests racing with the old cookie (tabs, polling) all get the one new pair, not a
    failed second refresh; logout then ends every copy of the session."""
    env = await start_server(auth={"access_token_minutes": 0.02})
    await _user(env, "carol")
    async with _signed_in(env, "carol") as (client, token):
        before = client.cookies["jobyard_session"]
        access = before.split(".")[0]
        deadline = asyncio.get_running_loop().time() + 20
        async with httpx.AsyncClient(
            base_url=env.url, headers={"Authorization": f"Bearer {access}"}
        ) as api:
            while (await api.get("/api/v1/me")).status_code == 200:
                assert asyncio.get_running_loop().time() < deadline, "access never expired"
                await asyncio.sleep(0.1)
        tabs = [
            httpx.AsyncClient(base_url=env.url, cookies={"jobyard_session": before})
            for _ in range(4)
        ]
        try:
            answers = await asyncio.gather(*(tab.get("/") for tab in tabs))
        finally:
            for tab in tabs:
                await tab.aclose()
        assert [r.status_code for r in answers] == [200] * 4
        renewed = {r.cookies["jobyard_session"] for r in answers}
        assert len(renewed) == 1  # one refresh, its pair handed to every racer
        after = renewed.pop()
        assert after != before
        assert after.split(".")[2] == before.split(".")[2]  # the CSRF secret stays
        assert all(csrf_of(r.text) == token for r in answers)
        client.cookies.set("jobyard_session", after)
        r = await client.post("/logout", data={"csrf_token": token})
        assert r.status_code == 303
    # Both copies are dead now: the new tokens were revoked, the old refresh token spent.
    for cookie in (before, after):
        async with httpx.AsyncClient(base_url=env.url, cookies={"jobyard_session": cookie}) as old:
            assert (await old.get("/")).status_code == 303


async def test_a_poll_without_a_session_redirects_the_whole_page(env: Env) -> None:
    """htmx polling after the session ended: an HX-Redirect to the login page, not the
    login form swapped into a block of the page."""
    async with _browser(env) as client:
        r = await client.get("/jobs/1", headers={"HX-Request": "true"})
        assert r.status_code == 204
        assert r.headers["hx-redirect"] == "/login?next=%2Fjobs%2F1"


async def test_malformed_console_input_answers_4xx_saying_what_to_fix(env: Env) -> None:
    await _user(env, "carol")
    async with _signed_in(env, "carol") as (client, token):
        cases = {
            "/jobs?status=NOPE": (422, "unknown status"),
            "/jobs?since=2y": (422, "unknown time range"),
            "/jobs?jobconfig=abc": (422, "positive whole number"),
            "/jobs?jobconfig=99999999999999999999": (422, "positive whole number"),
            "/jobs?cursor=garbage": (422, "cursor"),
            "/jobs/abc": (422, "positive whole number"),
            "/jobs/0": (422, "positive whole number"),
        }
        for path, (status, said) in cases.items():
            r = await client.get(path)
            assert r.status_code == status, (path, r.status_code, r.text)
            assert said in r.text, (path, r.text)
            assert r.headers["content-security-policy"].startswith("default-src 'self'")
        r = await client.post("/jobs/1/explode", data={"csrf_token": token})
        assert r.status_code == 404
        r = await client.post("/jobs/987654/cancel", data={"csrf_token": token})
        assert r.status_code == 404
        assert "job 987654 does not exist" in r.text


async def test_a_database_outage_answers_a_503_page(
    start_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A locked SQLite database (another process holds the write lock) during a login,
    an action, and a session refresh: a 503 page with Retry-After, never a 500 or JSON."""
    monkeypatch.setattr(store_base, "_LOCK_WAIT_SECONDS", 0.5)
    env = await start_server(workers=0, auth={"access_token_minutes": 0.02})
    await _user(env, "erin", role="admin")
    hold = await env.run_command(["/bin/sh", "-c", "true"], hold=True)
    async with _signed_in(env, "erin") as (client, token):
        access = client.cookies["jobyard_session"].split(".")[0]
        deadline = asyncio.get_running_loop().time() + 20
        async with httpx.AsyncClient(
            base_url=env.url, headers={"Authorization": f"Bearer {access}"}
        ) as api:
            while (await api.get("/api/v1/me")).status_code == 200:
                assert asyncio.get_running_loop().time() < deadline, "access never expired"
                await asyncio.sleep(0.1)
        holder = sqlite3.connect(env.settings.home / "jobyard.db", isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            answers = {
                "refresh": await client.get("/"),  # the refresh writes: it cannot
                "action": await client.post(
                    f"/jobs/{hold['id']}/cancel", data={"csrf_token": token}
                ),
                "login": await _login(client, "erin"),
            }
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        for what, r in answers.items():
            assert r.status_code == 503, (what, r.status_code, r.text[:300])
            assert r.headers["content-type"].startswith("text/html"), what
            assert int(r.headers["retry-after"]) > 0, what
            assert "Temporarily unavailable" in r.text, what
        # Afterwards the same session goes on (the refresh was not spent).
        assert (await client.get("/")).status_code == 200


async def test_run_and_rerun_through_the_console(env: Env) -> None:
    """Run needs the CSRF token and the same origin like every state change, passes the
    declared parameters as run-time macros, and rerun points back at its job; a user
    without policies can run none of another user's jobconfigs (the 404 of a missing one)."""
    r = await env.client.post(
        "/api/v1/jobconfigs",
        json={
            "name": "console-run",
            "command": ["/bin/sh", "-c", "echo GREETING=$GREETING"],
            "parameters": ["GREETING"],
        },
    )
    assert r.status_code == 201, r.text
    jc = r.json()["id"]
    await _user(env, "erin", role="admin")
    await _user(env, "bob")
    run = f"/jobconfigs/{jc}/run"
    async with _signed_in(env, "erin") as (client, token):
        page = (await client.get(f"/jobconfigs/{jc}")).text
        assert f'action="{run}"' in page and 'name="param:GREETING"' in page
        refused = [
            ({"param:GREETING": "x"}, {}),
            ({"csrf_token": token}, {"Origin": "http://evil.example"}),
            ({"csrf_token": token}, {"Sec-Fetch-Site": "cross-site"}),
        ]
        for form, headers in refused:
            assert (await client.post(run, data=form, headers=headers)).status_code == 403
        listed = await env.client.get("/api/v1/jobs", params={"jobconfig_id": jc})
        assert listed.json()["items"] == []
        r = await client.post(run, data={"csrf_token": token, "param:GREETING": "hello"})
        assert r.status_code == 303, r.text
        job_id = int(r.headers["location"].split("/")[2].split("?")[0])
        assert r.headers["location"] == f"/jobs/{job_id}?done=submitted"
        assert await env.wait_log_line(job_id, "GREETING=") == "hello"
        job = await env.wait_status(job_id)
        assert job["submitted_by"] == "erin"
        # Rerun: a new job that points back, shown with its notice.
        page = (await client.get(f"/jobs/{job_id}")).text
        assert f'action="/jobs/{job_id}/rerun"' in page
        r = await client.post(f"/jobs/{job_id}/rerun", data={"csrf_token": token})
        assert r.status_code == 303, r.text
        again = int(r.headers["location"].split("/")[2].split("?")[0])
        assert again != job_id
        assert (await env.client.get(f"/api/v1/jobs/{again}")).json()["rerun_of"] == job_id
        assert "Rerun submitted" in (await client.get(r.headers["location"])).text
    async with _signed_in(env, "bob") as (client, token):
        r = await client.post(run, data={"csrf_token": token})
        assert r.status_code == 404
        assert "console-run" not in r.text
        r = await client.post(f"/jobs/{job_id}/rerun", data={"csrf_token": token})
        assert r.status_code == 404
    listed = await env.client.get("/api/v1/jobs", params={"jobconfig_id": jc})
    assert len(listed.json()["items"]) == 2
