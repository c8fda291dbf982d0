"""Users, login, throttling, refresh rotation, personal tokens, deactivation and SESSION_ID
against a real server."""

from __future__ import annotations

import asyncio
import stat
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from jobyard.service import users
from jobyard.store.factory import open_store
from tests.integration.conftest import Env, ServerFactory
from tests.store.conftest import new_job
from tests.support.jobs import JOB_PYTHON

PASSWORD = "correct horse battery"


def _err(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    return str(r.json()["error"]["message"])


def _as(env: Env, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=env.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


async def _user(env: Env, name: str, role: str = "user") -> dict[str, Any]:
    r = await env.client.post(
        "/api/v1/users", json={"name": name, "role": role, "password": PASSWORD}
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _login(env: Env, name: str, password: str = PASSWORD) -> httpx.Response:
    async with httpx.AsyncClient(base_url=env.url) as anon:
        return await anon.post("/api/v1/login", json={"name": name, "password": password})


async def _token_of(env: Env, name: str) -> str:
    r = await _login(env, name)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


async def test_the_admin_token_belongs_to_user_admin(env: Env) -> None:
    me = (await env.client.get("/api/v1/me")).json()
    assert (me["name"], me["role"], me["token_kind"]) == ("admin", "admin", "admin")
    assert me["user"]["name"] == "admin" and me["user"]["has_password"] is True
    users = (await env.client.get("/api/v1/users")).json()["items"]
    assert [u["name"] for u in users] == ["admin"]
    assert "password_hash" not in users[0]


async def test_first_start_gives_admin_a_password_shown_once(env: Env) -> None:
    """The console's login page needs a way in: admin gets a generated password at first
    start, in a 0600 file beside the token; later starts never set it again."""
    path = env.settings.home / "admin.password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = path.read_text().strip()
    assert len(password) >= 20 and env.runtime.new_admin_password == password
    r = await _login(env, "admin", password)
    assert r.status_code == 200, r.text
    # Not again: neither while the file exists, nor once admin removed it and the password.
    assert await users.ensure_admin_password(env.runtime.ctx) is None
    path.unlink()
    me = (await env.client.get("/api/v1/me")).json()
    r = await env.client.patch(f"/api/v1/users/{me['user']['id']}", json={"password": None})
    assert r.status_code == 200, r.text
    assert await users.ensure_admin_password(env.runtime.ctx) is not None  # no file, no password
    path.unlink()
    assert await users.ensure_admin_password(env.runtime.ctx) is None  # it has one again


async def test_login_refresh_rotation_and_logout(env: Env) -> None:
    await _user(env, "alice")
    r = await _login(env, "alice")
    assert r.status_code == 200, r.text
    pair = r.json()
    assert pair["token_type"] == "bearer" and pair["expires_in"] == 15 * 60
    assert r.headers["cache-control"] == "no-store"
    async with _as(env, pair["access_token"]) as alice:
        me = (await alice.get("/api/v1/me")).json()
        assert (me["name"], me["role"], me["token_kind"]) == ("alice", "user", "access")
    async with _as(env, pair["refresh_token"]) as wrong_use:
        assert "refresh token" in _err(await wrong_use.get("/api/v1/me"), 401)

    async with httpx.AsyncClient(base_url=env.url) as anon:
        body = {"refresh_token": pair["refresh_token"]}
        r = await anon.post("/api/v1/token/refresh", json=body)
        assert r.status_code == 200, r.text
        fresh = r.json()
        assert fresh["refresh_token"] != pair["refresh_token"]
        again = await anon.post("/api/v1/token/refresh", json=body)
        assert "revoked" in _err(again, 401)
        bogus = await anon.post("/api/v1/token/refresh", json={"refresh_token": "jy_nope"})
        _err(bogus, 401)

    async with _as(env, fresh["access_token"]) as alice:
        assert (await alice.get("/api/v1/me")).status_code == 200
        r = await alice.post("/api/v1/logout", json={"refresh_token": fresh["refresh_token"]})
        assert r.status_code == 204, r.text
        assert "revoked" in _err(await alice.get("/api/v1/me"), 401)
    async with httpx.AsyncClient(base_url=env.url) as anon:
        r = await anon.post("/api/v1/token/refresh", json={"refresh_token": fresh["refresh_token"]})
        _err(r, 401)


async def test_wrong_user_and_wrong_password_look_the_same(env: Env) -> None:
    await _user(env, "bob")
    wrong_password = _err(await _login(env, "bob", "not the password"), 401)
    no_user = _err(await _login(env, "nobody", "not the password"), 401)
    admin_wrong_password = _err(await _login(env, "admin", "whatever!"), 401)
    assert wrong_password == no_user == admin_wrong_password == "wrong user name or password"


async def test_login_throttling_backs_off_then_success_resets(env: Env) -> None:
    await _user(env, "carol")
    for _ in range(5):
        _err(await _login(env, "carol", "guess-guess"), 401)
    r = await _login(env, "carol")  # even the right password: blocked without checking
    message = _err(r, 429)
    assert "retry after" in message
    retry_after = int(r.headers["retry-after"])
    assert 1 <= retry_after <= 2
    assert r.json()["error"]["details"]["retry_after"] == retry_after
    await asyncio.sleep(retry_after + 0.2)
    _err(await _login(env, "carol", "guess-guess"), 401)  # 6th failure: blocked 2 s
    r = await _login(env, "carol")
    assert int(r.headers["retry-after"]) >= 1
    await asyncio.sleep(int(r.headers["retry-after"]) + 0.2)
    assert (await _login(env, "carol")).status_code == 200  # success resets the count
    for _ in range(4):
        _err(await _login(env, "carol", "guess-guess"), 401)
    assert (await _login(env, "carol")).status_code == 200


async def test_one_address_guessing_many_names_is_throttled(env: Env) -> None:
    await _user(env, "dave")
    for i in range(20):
        _err(await _login(env, f"ghost{i}", "guess-guess"), 401)
    _err(await _login(env, "dave"), 429)


async def test_personal_tokens(env: Env) -> None:
    alice_user = await _user(env, "alice")
    async with _as(env, await _token_of(env, "alice")) as alice:
        r = await alice.post("/api/v1/tokens", json={"name": "ci"})
        assert r.status_code == 201, r.text
        created = r.json()
        value = created["token"]
        assert created["kind"] == "personal" and created["user_id"] == alice_user["id"]
        listed = (await alice.get("/api/v1/tokens")).json()["items"]
        assert [t["name"] for t in listed] == ["ci"] and "token" not in listed[0]
        everything = (await alice.get("/api/v1/tokens", params={"all": "true"})).json()["items"]
        assert {t["kind"] for t in everything} == {"personal", "access", "refresh"}
        async with _as(env, value) as ci:
            me = (await ci.get("/api/v1/me")).json()
            assert (me["name"], me["token_kind"]) == ("alice", "personal")
            assert (await alice.delete(f"/api/v1/tokens/{created['id']}")).status_code == 204
            assert "revoked" in _err(await ci.get("/api/v1/me"), 401)

        soon = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
        short = await alice.post("/api/v1/tokens", json={"name": "short", "expires_at": soon})
        assert short.status_code == 201, short.text
        async with _as(env, short.json()["token"]) as brief:
            assert (await brief.get("/api/v1/me")).status_code == 200
            await asyncio.sleep(1.7)
            assert "expired" in _err(await brief.get("/api/v1/me"), 401)
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        _err(await alice.post("/api/v1/tokens", json={"name": "x", "expires_at": past}), 422)
        days = await alice.post("/api/v1/tokens", json={"name": "d", "expires_in_days": 2})
        assert days.status_code == 201 and days.json()["expires_at"]

        # Other people's tokens: invisible to a non-admin, manageable by admins.
        admin_tokens = (await env.client.get("/api/v1/tokens")).json()["items"]
        admin_token_id = admin_tokens[0]["id"]
        _err(await alice.delete(f"/api/v1/tokens/{admin_token_id}"), 404)
        _err(await alice.get("/api/v1/tokens", params={"user": "admin"}), 404)
    of_alice = (await env.client.get("/api/v1/tokens", params={"user": "alice"})).json()["items"]
    assert {t["name"] for t in of_alice} == {"ci", "short", "d"}
    d_id = next(t["id"] for t in of_alice if t["name"] == "d")
    assert (await env.client.delete(f"/api/v1/tokens/{d_id}")).status_code == 204
    _err(await env.client.get("/api/v1/tokens", params={"user": "nobody"}), 404)


async def test_only_admins_manage_users(env: Env) -> None:
    admin_id = (await env.client.get("/api/v1/me")).json()["user"]["id"]
    erin = await _user(env, "erin")
    async with _as(env, await _token_of(env, "erin")) as user:
        assert [u["name"] for u in (await user.get("/api/v1/users")).json()["items"]] == ["erin"]
        assert (await user.get(f"/api/v1/users/{erin['id']}")).status_code == 200
        _err(await user.get(f"/api/v1/users/{admin_id}"), 404)
        _err(await user.patch(f"/api/v1/users/{admin_id}", json={"role": "user"}), 404)
        _err(await user.post(f"/api/v1/users/{admin_id}/deactivate"), 404)
        _err(await user.post("/api/v1/users", json={"name": "x"}), 403)
        _err(await user.patch(f"/api/v1/users/{erin['id']}", json={"role": "admin"}), 403)
        r = await user.patch(f"/api/v1/users/{erin['id']}", json={"password": "new password!"})
        assert r.status_code == 200, r.text
    assert (await _login(env, "erin", "new password!")).status_code == 200
    _err(await env.client.post("/api/v1/users", json={"name": "erin"}), 409)
    _err(await env.client.post("/api/v1/users", json={"name": "bad name"}), 422)
    _err(await env.client.post("/api/v1/users", json={"name": "x", "password": "short"}), 422)
    _err(await env.client.post(f"/api/v1/users/{admin_id}/deactivate"), 409)  # yourself
    _err(await env.client.patch(f"/api/v1/users/{admin_id}", json={"role": "user"}), 409)
    r = await env.client.patch(f"/api/v1/users/{erin['id']}", json={"role": "admin"})
    assert r.json()["role"] == "admin"
    _err(await env.client.get("/api/v1/users/424242"), 404)


async def test_deactivation_stops_tokens_and_jobs(start_server: ServerFactory) -> None:
    env = await start_server(workers=0)
    frank = await _user(env, "frank")
    adhoc = {"action": "execute", "resource": "adhoc", "selector": "*"}
    r = await env.client.post(f"/api/v1/users/{frank['id']}/policies", json=adhoc)
    assert r.status_code == 201, r.text
    async with _as(env, await _token_of(env, "frank")) as user:
        held = (await user.post("/api/v1/jobs", json={"command": ["true"], "hold": True})).json()
        queued = (await user.post("/api/v1/jobs", json={"command": ["true"]})).json()
        assert (held["status"], queued["status"]) == ("WAITING", "QUEUED")
        r = await env.client.post(f"/api/v1/users/{frank['id']}/deactivate")
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["user"]["active"] is False and done["tokens_revoked"] == 2
        assert sorted(done["jobs_cancelled"]) == sorted([held["id"], queued["id"]])
        assert "deactivated" in _err(await user.get("/api/v1/me"), 401)
    for job_id in (held["id"], queued["id"]):
        job = (await env.client.get(f"/api/v1/jobs/{job_id}")).json()
        assert (job["status"], job["status_reason"]) == ("CANCELLED", "user frank deactivated")
    _err(await env.client.post(f"/api/v1/jobs/{held['id']}/release"), 409)  # never runs
    _err(await _login(env, "frank"), 401)
    r = await env.client.post(f"/api/v1/users/{frank['id']}/activate")
    assert r.json()["active"] is True
    assert (await _login(env, "frank")).status_code == 200


async def test_a_job_of_a_deactivated_user_fails_instead_of_running(env: Env) -> None:
    grace = await _user(env, "grace")
    r = await env.client.post(f"/api/v1/users/{grace['id']}/deactivate")
    assert r.status_code == 200
    # A job of hers that reached the queue anyway (another replica, a race): the worker
    # refuses to run it.
    store = await open_store(env.settings.effective_database_url, migrate=False)
    try:
        job = await store.job_insert(
            new_job(submitted_by="grace", command=["true"]), actor="user:grace", reason=None
        )
    finally:
        await store.close()
    ended = await env.wait_status(job.id)
    assert ended["status"] == "FAILED"
    assert "submitting user grace is deactivated" in ended["status_reason"]


SESSION_SCRIPT = """
import json, os, urllib.request, urllib.error
def get(path):
    req = urllib.request.Request(os.environ["JOBYARD_API_URL"] + path)
    req.add_header("Authorization", "Bearer " + os.environ["SESSION_ID"])
    with urllib.request.urlopen(req) as r:
        return json.load(r)
jc = get("/api/v1/jobconfigs/" + os.environ["JOB_CONFIG_ID"])
me = get("/api/v1/me")
print("api=" + os.environ["JOBYARD_API_URL"])
print("jobconfig=" + jc["name"])
print("me=" + me["name"] + "/" + me["token_kind"] + "/" + str(me["job_id"]))
with open(os.path.join(os.environ["LOCAL_JOB_OUT_DIR"], "session.txt"), "w") as f:
    f.write(os.environ["SESSION_ID"])
"""


async def test_session_id_works_during_the_job_only(env: Env) -> None:
    await _user(env, "heidi")
    async with _as(env, await _token_of(env, "heidi")) as heidi:
        spec = {"name": "self-aware", "command": [JOB_PYTHON, "-c", SESSION_SCRIPT]}
        jc = (await heidi.post("/api/v1/jobconfigs", json=spec)).json()
        r = await heidi.post(f"/api/v1/jobconfigs/{jc['id']}/run", json={})
        assert r.status_code == 201, r.text
        job = await env.wait_status(r.json()["id"])
        log = (await env.client.get(f"/api/v1/jobs/{job['id']}/log")).text
        assert job["status"] == "FINISHED", log
        assert f"api={env.url}" in log
        assert "jobconfig=self-aware" in log
        assert f"me=heidi/session/{job['id']}" in log
        r = await env.client.get(f"/api/v1/jobs/{job['id']}/outputs/session.txt")
        assert r.status_code == 200, r.text
        session = r.text.strip()
    assert session.startswith("jys_")
    async with _as(env, session) as after:
        message = _err(await after.get(f"/api/v1/jobconfigs/{jc['id']}"), 401)
        assert f"session of job {job['id']} ended" in message
