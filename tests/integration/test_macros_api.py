"""Macro levels through the API of a real server: precedence, previews, secure rules, files."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.conftest import Env, ServerFactory

PRINT_ENV = ["sh", "-c", 'echo "A=$A B=$B C=$C D=$D E=$E"']


async def _put(env: Env, base: str, name: str, value: str, secure: bool = False) -> Any:
    r = await env.client.put(f"{base}/{name}", json={"value": value, "secure": secure})
    assert r.status_code == 200, r.text
    return r.json()


async def _jobconfig(env: Env, name: str, template_id: int | None = None) -> int:
    body: dict[str, Any] = {"name": name, "command": PRINT_ENV}
    if template_id is not None:
        body["template_id"] = template_id
    r = await env.client.post("/api/v1/jobconfigs", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _run_and_log(env: Env, jobconfig_id: int, macros: dict[str, str]) -> tuple[int, str]:
    r = await env.client.post(f"/api/v1/jobconfigs/{jobconfig_id}/run", json={"macros": macros})
    assert r.status_code == 201, r.text
    job = await env.wait_status(r.json()["id"])
    assert job["status"] == "FINISHED", job
    log = (await env.client.get(f"/api/v1/jobs/{job['id']}/log")).text
    return int(job["id"]), log


async def _levels(env: Env, job_id: int) -> dict[str, tuple[str | None, str]]:
    body = (await env.client.get(f"/api/v1/jobs/{job_id}/macros")).json()
    assert body["resolved"] is True
    return {m["name"]: (m["value"], m["level"]) for m in body["items"]}


async def test_precedence_over_five_levels_with_and_without_template(env: Env) -> None:
    for name in "ABCDE":
        await _put(env, "/api/v1/macros/account", name, "account")
    r = await env.client.post("/api/v1/templates", json={"name": "tpl", "command": ["true"]})
    assert r.status_code == 201, r.text
    tpl = int(r.json()["id"])
    for name in "BCDE":
        await _put(env, f"/api/v1/templates/{tpl}/macros", name, "template")
    for name in "CDE":
        await _put(env, "/api/v1/me/macros", name, "user")
    with_tpl = await _jobconfig(env, "with-template", tpl)
    without = await _jobconfig(env, "without-template")
    for jc in (with_tpl, without):
        for name in "DE":
            await _put(env, f"/api/v1/jobconfigs/{jc}/macros", name, "jobconfig")

    job_id, log = await _run_and_log(env, with_tpl, {"E": "job"})
    assert "A=account B=template C=user D=jobconfig E=job" in log
    assert await _levels(env, job_id) == {
        "A": ("account", "account"),
        "B": ("template", "template"),
        "C": ("user", "user"),
        "D": ("jobconfig", "jobconfig"),
        "E": ("job", "job"),
    }
    job_id, log = await _run_and_log(env, without, {"E": "job"})
    assert "A=account B=account C=user D=jobconfig E=job" in log
    assert (await _levels(env, job_id))["B"] == ("account", "account")

    # The preview: what a job would get without job macros, with levels.
    r = await env.client.get(f"/api/v1/jobconfigs/{with_tpl}/macros/resolved")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["template_id"] == tpl and body["user"] == "admin"
    got = {m["name"]: (m["value"], m["level"]) for m in body["items"]}
    assert got["E"] == ("jobconfig", "jobconfig") and got["B"] == ("template", "template")

    # The jobconfig's plain macros are its `macros` field (apply/export see them).
    jc = (await env.client.get(f"/api/v1/jobconfigs/{without}")).json()
    assert jc["macros"] == {"D": "jobconfig", "E": "jobconfig"}


async def test_ad_hoc_jobs_get_account_user_and_job_levels(env: Env) -> None:
    await _put(env, "/api/v1/macros/account", "A", "account")
    await _put(env, "/api/v1/macros/account", "C", "account")
    await _put(env, "/api/v1/me/macros", "C", "user")
    job = await env.run_command(PRINT_ENV, macros={"E": "job"})
    job = await env.wait_status(job["id"])
    log = (await env.client.get(f"/api/v1/jobs/{job['id']}/log")).text
    assert "A=account B= C=user D= E=job" in log


async def test_secure_macros_are_write_only(env: Env) -> None:
    value = "Zq-secret-4711"
    base = "/api/v1/macros/account"
    out = await _put(env, base, "S", value, secure=True)
    assert out == {**out, "name": "S", "value": None, "secure": True}
    listed = (await env.client.get(base)).json()["items"]
    assert listed[0]["value"] is None and listed[0]["secure"] is True
    r = await env.client.put(f"{base}/S", json={"value": "clear", "secure": False})
    assert r.status_code == 422 and "delete it and create it again" in r.json()["error"]["message"]
    await _put(env, base, "S", value + "-2", secure=True)  # replacing is fine
    for fmt in ("json", "xml"):
        r = await env.client.get(f"{base}/export", params={"format": fmt})
        assert r.status_code == 200 and value not in r.text and '"S"' in r.text.replace("'", '"')
    jc = await _jobconfig(env, "sec")
    r = await env.client.get(f"/api/v1/jobconfigs/{jc}/macros/resolved")
    assert {"name": "S", "value": "*****", "level": "account", "secure": True} in r.json()["items"]
    assert r.status_code == 200 and value not in r.text
    r = await env.client.delete(f"{base}/S")
    assert r.status_code == 204
    assert (await env.client.get(base)).json()["items"] == []
    # A jobconfig name is plain or secure: making it secure moves it out of the field.
    await _put(env, f"/api/v1/jobconfigs/{jc}/macros", "P", "plain")
    await _put(env, f"/api/v1/jobconfigs/{jc}/macros", "P", value, secure=True)
    body = (await env.client.get(f"/api/v1/jobconfigs/{jc}")).json()
    assert body["macros"] == {} and value not in str(body)


async def test_import_and_export(env: Env) -> None:
    base = "/api/v1/macros/account"
    xml = (
        b'<macrodefs><macrodef name="HOST">db1</macrodef>'
        b'<macrodef name="PW" secure="true" encrypted="true">ZW5jcnlwdGVk</macrodef>'
        b'<macrodef name="TOKEN" secure="true">t0k3n</macrodef></macrodefs>'
    )
    r = await env.client.post(
        f"{base}/import", content=xml, headers={"Content-Type": "application/xml"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["imported"] == 3
    items = {m["name"]: m for m in r.json()["items"]}
    assert items["HOST"]["value"] == "db1"
    assert items["PW"]["secure"] and items["PW"]["value"] is None
    r = await env.client.get(f"{base}/export")
    assert r.json() == {
        "macros": [
            {"name": "HOST", "value": "db1", "secure": False},
            {"name": "PW", "value": None, "secure": True},
            {"name": "TOKEN", "value": None, "secure": True},
        ]
    }
    # The JSON export imports back, and keeps existing secure values.
    r = await env.client.post(f"{base}/import", json=r.json())
    assert r.status_code == 200, r.text
    job = await env.run_command(["sh", "-c", 'echo "[$PW][$TOKEN]" | tr a-z A-Z'])
    job = await env.wait_status(job["id"])
    log = (await env.client.get(f"/api/v1/jobs/{job['id']}/log")).text
    assert "[][T0K3N]" in log  # PW empty (encrypted in the file), TOKEN kept

    # External entities are refused, and nothing was imported.
    evil = (
        b'<!DOCTYPE macrodefs [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<macrodefs><macrodef name="EVIL">&x;</macrodef></macrodefs>'
    )
    r = await env.client.post(
        f"{base}/import", content=evil, headers={"Content-Type": "application/xml"}
    )
    assert r.status_code == 422 and "root:" not in r.text
    names = [m["name"] for m in (await env.client.get(base)).json()["items"]]
    assert "EVIL" not in names
    r = await env.client.post(
        f"{base}/import", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422


async def test_permissions_of_account_and_user_levels(
    env: Env, start_server: ServerFactory
) -> None:
    r = await env.client.post(
        "/api/v1/users", json={"name": "bob", "password": "bob-password-1", "role": "user"}
    )
    assert r.status_code == 201, r.text
    bob_id = r.json()["id"]
    me = (await env.client.get("/api/v1/me")).json()
    admin_id = me["user"]["id"]
    r = await env.client.post("/api/v1/login", json={"name": "bob", "password": "bob-password-1"})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    async with httpx.AsyncClient(
        base_url=env.url, headers={"Authorization": f"Bearer {token}"}
    ) as bob:
        assert (await bob.get("/api/v1/macros/account")).status_code == 200
        r = await bob.put("/api/v1/macros/account/X", json={"value": "1"})
        assert r.status_code == 403
        r = await bob.put("/api/v1/me/macros/MINE", json={"value": "bob's"})
        assert r.status_code == 200, r.text
        assert (await bob.get(f"/api/v1/users/{bob_id}/macros")).status_code == 200
        assert (await bob.get(f"/api/v1/users/{admin_id}/macros")).status_code == 404
        r = await bob.put(f"/api/v1/users/{admin_id}/macros/X", json={"value": "1"})
        assert r.status_code == 404
    # Admins see every user's macros.
    r = await env.client.get(f"/api/v1/users/{bob_id}/macros")
    assert [m["name"] for m in r.json()["items"]] == ["MINE"]
