"""The console's editing forms, attacked and checked over HTTP against a real server.

Uploading a package, creating a jobconfig, editing its settings and running it with a
payload go through the API's use cases: the same checks (422 saying what to fix, 409,
400 for an unsafe archive, 413 over the upload limit — as pages, never a 500), the same
access rules (a user without the right gets the API's 403 or 404), and every POST needs
the session's CSRF token and a same-origin request.
"""

from __future__ import annotations

import asyncio
import io
import re
import tarfile
import zipfile
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx

from tests.integration.conftest import Env, ServerFactory
from tests.security.web_support import signed_in
from tests.support.rawhttp import MULTIPART_TYPE, Answer, RawRequest, head

PASSWORD = "console-pass-1"
API = "/api/v1"
MANIFEST = b"""
[entrypoints.hello]
command = ["/bin/sh", "hello.sh"]

[entrypoints.other]
command = ["/bin/sh", "-c", "echo other"]
"""


def package_tgz(manifest: bytes = MANIFEST, script: bytes = b"echo hello\n") -> bytes:
    """A gzipped tar archive with a manifest and a script."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in (("jobyard.toml", manifest), ("hello.sh", script)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _door_answer(url: str, path: str, length: int) -> Answer:
    """What the server answers a multipart POST announcing ``length`` bytes (none sent)."""
    with RawRequest(url) as raw:
        raw.send(head("POST", path, length=length, content_type=MULTIPART_TYPE))
        return raw.answer()


def escaping_zip() -> bytes:
    """A zip archive with an entry that climbs out of its folder."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("../../escape.sh", "echo gotcha\n")
    return out.getvalue()


async def _user(env: Env, name: str, role: str = "user") -> int:
    r = await env.client.post(
        f"{API}/users", json={"name": name, "role": role, "password": PASSWORD}
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _signed_in(env: Env, name: str) -> AbstractAsyncContextManager[tuple[httpx.AsyncClient, str]]:
    """A browser logged in to the console as ``name``, and its session's CSRF token."""
    return signed_in(env, name, PASSWORD, page="/jobconfigs")


def _form(token: str, **fields: str) -> dict[str, str]:
    base = {
        "csrf_token": token,
        "name": "",
        "description": "",
        "package_id": "",
        "entrypoint": "",
        "parameters": "",
        "max_concurrent": "1",
        "timeout": "0",
        "success_exit_codes": "0",
        "pool": "default",
    }
    return {**base, **fields}


NO_FILE: dict[str, Any] = {"package_file": ("", b"", "application/octet-stream")}


async def _upload(client: httpx.AsyncClient, token: str, data: bytes, name: str) -> httpx.Response:
    return await client.post(
        "/packages", data={"csrf_token": token}, files={"file": (name, data, "application/gzip")}
    )


async def test_upload_a_package_and_read_its_entry_points(env: Env) -> None:
    await _user(env, "carol")
    async with _signed_in(env, "carol") as (client, token):
        data = package_tgz()
        r = await _upload(client, token, data, "hello.tar.gz")
        assert r.status_code == 303, r.text
        location = r.headers["location"]
        assert re.fullmatch(r"/packages/\d+\?done=created", location), location
        package_id = int(location.split("/")[2].split("?")[0])
        page = await client.get(location)
        assert page.status_code == 200
        assert "Package uploaded." in page.text
        listed = (await env.client.get(f"{API}/packages/{package_id}")).json()
        assert listed["entrypoints"] == ["hello", "other"]
        assert listed["sha256"] in page.text
        assert "<code>hello</code>" in page.text and "<code>other</code>" in page.text
        # The same bytes again: the same package, said so.
        r = await _upload(client, token, data, "again.tar.gz")
        assert r.headers["location"] == f"/packages/{package_id}?done=existing"
        # The entry-point field of the jobconfig form follows the package (htmx).
        r = await client.get("/packages/entrypoints", params={"package_id": package_id})
        assert r.status_code == 200
        assert '<option value="hello"' in r.text and '<option value="other"' in r.text
        # Errors are pages with the API's status, never a 500.
        r = await client.post(
            "/packages",
            data={"csrf_token": token},
            files={"file": ("", b"", "application/octet-stream")},
        )
        assert r.status_code == 422 and "choose a package file" in r.text
        r = await _upload(client, token, escaping_zip(), "evil.zip")
        api = await env.client.post(
            f"{API}/packages", files={"file": ("evil.zip", escaping_zip(), "application/zip")}
        )
        assert r.status_code == api.status_code == 400, (r.text, api.text)
        assert api.json()["error"]["message"] in r.text.replace("&#39;", "'")
        bad_manifest = package_tgz(manifest=b"[entrypoints.x]\ncommand = 3\n")
        r = await _upload(client, token, bad_manifest, "bad.tar.gz")
        assert r.status_code == 422, r.text
        assert "entrypoints.x" in r.text and 'role="alert"' in r.text


async def test_uploads_over_the_limit_are_refused_with_a_page(
    start_server: ServerFactory,
) -> None:
    env = await start_server(upload_max_bytes=4096)
    await _user(env, "carol")
    jc = await env.client.post(
        f"{API}/jobconfigs", json={"name": "cat-it", "command": ["/bin/sh", "-c", "true"]}
    )
    assert jc.status_code == 201, jc.text
    async with _signed_in(env, "carol") as (client, token):
        # Over the limit but within the multipart allowance: refused while copying (413).
        big = b"x" * 5000
        r = await _upload(client, token, big, "big.bin")
        assert r.status_code == 413, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert "JOBYARD_UPLOAD_MAX_BYTES" in r.text
        # Far over: refused at the door from Content-Length, before a byte of the body
        # is read (the server runs in this event loop: the raw socket in a thread).
        answer = await asyncio.to_thread(_door_answer, env.url, "/packages", 200_000)
        assert answer.status == 413, answer
        assert answer.headers["content-type"].startswith("text/html")
        assert b"JOBYARD_UPLOAD_MAX_BYTES" in answer.body
        # A payload over the limit: no job is left behind.
        before = (await env.client.get(f"{API}/jobs")).json()["items"]
        r = await client.post(
            f"/jobconfigs/{jc.json()['id']}/run",
            data={"csrf_token": token},
            files={"payload": ("input.txt", big, "text/plain")},
        )
        assert r.status_code == 413, r.text
        assert (await env.client.get(f"{API}/jobs")).json()["items"] == before
        assert (await env.client.get(f"{API}/packages")).json()["items"] == []


async def test_create_a_jobconfig_with_the_apis_checks(env: Env) -> None:
    await _user(env, "carol")
    async with _signed_in(env, "carol") as (client, token):
        r = await _upload(client, token, package_tgz(), "hello.tar.gz")
        package_id = r.headers["location"].split("/")[2].split("?")[0]
        page = await client.get(f"/jobconfigs/new?package_id={package_id}")
        assert page.status_code == 200
        assert '<option value="hello"' in page.text  # entry points from the manifest

        async def create(**fields: str) -> httpx.Response:
            return await client.post("/jobconfigs/new", data=_form(token, **fields), files=NO_FILE)

        refused = [
            ({"name": "bad name!", "package_id": package_id}, 422, "invalid name"),
            ({"name": "ok", "package_id": ""}, 422, "choose a package"),
            ({"name": "ok", "package_id": package_id, "timeout": "soon"}, 422, "timeout"),
            ({"name": "ok", "package_id": package_id, "max_concurrent": "100001"}, 422, "100000"),
            ({"name": "ok", "package_id": package_id, "success_exit_codes": "0, 256"}, 422, "255"),
            ({"name": "ok", "package_id": package_id, "entrypoint": "nope"}, 422, "hello, other"),
            ({"name": "ok", "package_id": package_id, "parameters": "1bad"}, 422, "parameter"),
            ({"name": "ok", "package_id": "999999"}, 422, "does not exist"),
        ]
        for fields, status, says in refused:
            r = await create(entrypoint=fields.pop("entrypoint", "hello"), **fields)
            assert r.status_code == status, (fields, r.status_code, r.text[:300])
            assert says in r.text, (fields, says)
            assert 'aria-invalid="true"' in r.text, fields  # the field is marked
            # What the user typed comes back.
            assert f'value="{fields["name"]}"' in r.text.replace("&#34;", '"'), fields
        assert (await env.client.get(f"{API}/jobconfigs")).json()["items"] == []

        r = await create(
            name="hello-job",
            description="says hello",
            package_id=package_id,
            entrypoint="hello",
            parameters="WHO, WHERE",
            max_concurrent="3",
            timeout="5",
            success_exit_codes="0 3",
        )
        assert r.status_code == 303, r.text[:500]
        jc_id = int(r.headers["location"].rsplit("/", 1)[1])
        got = (await env.client.get(f"{API}/jobconfigs/{jc_id}")).json()
        assert got["name"] == "hello-job" and got["owner"] == "carol"
        assert got["package_id"] == int(package_id) and got["entrypoint"] == "hello"
        assert got["parameters"] == ["WHERE", "WHO"]
        assert (got["max_concurrent"], got["timeout"]) == (3, 5)
        assert got["success_exit_codes"] == [0, 3]
        # The name is taken now: the API's 409.
        r = await create(name="hello-job", package_id=package_id, entrypoint="hello")
        assert r.status_code == 409, r.text[:300]
        # Uploading the package with the form: a single entry point needs no choice.
        single = package_tgz(manifest=b'[entrypoints.only]\ncommand = ["/bin/sh", "hello.sh"]\n')
        r = await client.post(
            "/jobconfigs/new",
            data=_form(token, name="uploaded-here"),
            files={"package_file": ("single.tar.gz", single, "application/gzip")},
        )
        assert r.status_code == 303, r.text[:500]
        made = (
            await env.client.get(r.headers["location"].replace("/jobconfigs", f"{API}/jobconfigs"))
        ).json()
        assert made["package_id"] not in (None, int(package_id))


async def test_settings_follow_the_apis_access_rules(env: Env) -> None:
    bob = await _user(env, "bob")
    await _user(env, "carol")
    created = await env.client.post(
        f"{API}/jobconfigs",
        json={"name": "admins-job", "command": ["/bin/sh", "-c", "true"], "description": "d"},
    )
    jc_id = created.json()["id"]
    settings = f"/jobconfigs/{jc_id}/settings"
    async with _signed_in(env, "bob") as (client, token):
        # No policy: the jobconfig does not exist for bob, as in the API.
        api = await env.client.post(f"{API}/login", json={"name": "bob", "password": PASSWORD})
        bob_api = {"Authorization": f"Bearer {api.json()['access_token']}"}
        patch = await env.client.patch(f"{API}/jobconfigs/{jc_id}", json={}, headers=bob_api)
        assert patch.status_code == 404
        assert (await client.get(settings)).status_code == 404
        r = await client.post(settings, data=_form(token, name="stolen"))
        assert r.status_code == 404
        assert "admins-job" not in r.text
        page = await client.get(f"/jobconfigs/{jc_id}")
        assert page.status_code == 404
        # May view but not edit: the API's 403, and no Settings link.
        r = await env.client.post(
            f"{API}/users/{bob}/policies",
            json={"action": "view", "resource": "jobconfigs", "selector": str(jc_id)},
        )
        assert r.status_code == 201, r.text
        patch = await env.client.patch(f"{API}/jobconfigs/{jc_id}", json={}, headers=bob_api)
        assert patch.status_code == 403
        assert (await client.get(settings)).status_code == 403
        r = await client.post(settings, data=_form(token, name="stolen"))
        assert r.status_code == 403
        page = await client.get(f"/jobconfigs/{jc_id}")
        assert page.status_code == 200 and settings not in page.text
    assert (await env.client.get(f"{API}/jobconfigs/{jc_id}")).json()["name"] == "admins-job"

    # Its owner edits it: only what changed is patched, retention included.
    async with _signed_in(env, "carol") as (client, token):
        r = await client.post(
            "/jobconfigs/new",
            data=_form(token, name="carols"),
            files=NO_FILE,
        )
        assert r.status_code == 422  # no package
        mine = await env.client.post(
            f"{API}/jobconfigs",
            json={"name": "carols-job", "command": ["/bin/sh", "-c", "true"]},
        )
        mine_id = mine.json()["id"]
        r = await env.client.patch(
            f"{API}/jobconfigs/{mine_id}", json={"description": "owned by carol"}
        )
        # The admin created it; give it to carol through an edit policy.
        carol = (await env.client.get(f"{API}/users")).json()["items"]
        carol_id = next(u["id"] for u in carol if u["name"] == "carol")
        r = await env.client.post(
            f"{API}/users/{carol_id}/policies",
            json={"action": "edit", "resource": "jobconfigs", "selector": str(mine_id)},
        )
        assert r.status_code == 201, r.text
        own = f"/jobconfigs/{mine_id}/settings"
        page = await client.get(own)
        assert page.status_code == 200, page.text[:300]
        assert 'value="carols-job"' in page.text
        assert "runs the command /bin/sh -c true" in page.text
        page = await client.get(f"/jobconfigs/{mine_id}")
        assert own in page.text  # the Settings link
        form = _form(
            token,
            name="carols-job",
            description="owned by carol",
            max_concurrent="2",
            timeout="0",
            enabled="on",
            retention_max_age_days="30",
            retention_max_jobs="",
            success_exit_codes="0",
        )
        r = await client.post(own, data={**form, "retention_max_jobs": "-1"})
        assert r.status_code == 422 and "jobs kept" in r.text
        r = await client.post(own, data=form)
        assert r.status_code == 303, r.text[:300]
        assert r.headers["location"] == f"{own}?done=saved"
        assert "Settings saved." in (await client.get(r.headers["location"])).text
        got = (await env.client.get(f"{API}/jobconfigs/{mine_id}")).json()
        assert got["max_concurrent"] == 2
        assert got["retention"] == {"max_age_days": 30.0, "max_jobs": None}
        assert got["command"] == ["/bin/sh", "-c", "true"]  # what it runs is untouched
        assert got["definition_changed_by"] != "carol"


async def test_every_new_post_needs_the_csrf_token_and_the_same_origin(env: Env) -> None:
    await _user(env, "erin", role="admin")
    jc = await env.client.post(
        f"{API}/jobconfigs", json={"name": "target", "command": ["/bin/sh", "-c", "true"]}
    )
    jc_id = jc.json()["id"]
    async with _signed_in(env, "erin") as (client, token):
        posts: list[tuple[str, dict[str, str], dict[str, Any]]] = [
            ("/packages", {}, {"file": ("p.tar.gz", package_tgz(), "application/gzip")}),
            ("/jobconfigs/new", _form("", name="sneaky", package_id="1"), NO_FILE),
            (f"/jobconfigs/{jc_id}/settings", _form("", name="renamed"), {}),
            (f"/jobconfigs/{jc_id}/run", {}, {"payload": ("in.txt", b"hi", "text/plain")}),
        ]
        for path, form, files in posts:
            for why, token_sent, headers in [
                ("no token", "", {}),
                ("wrong token", "x" * 43, {}),
                ("cross-site", token, {"Sec-Fetch-Site": "cross-site"}),
                ("other origin", token, {"Origin": "http://evil.example"}),
            ]:
                data = {**form, "csrf_token": token_sent}
                r = await client.post(path, data=data, files=files or None, headers=headers)
                assert r.status_code == 403, (path, why, r.status_code, r.text[:200])
    assert (await env.client.get(f"{API}/packages")).json()["items"] == []
    names = [j["name"] for j in (await env.client.get(f"{API}/jobconfigs")).json()["items"]]
    assert names == ["target"]
    assert (await env.client.get(f"{API}/jobs")).json()["items"] == []


async def test_run_with_a_payload_file(env: Env) -> None:
    await _user(env, "erin", role="admin")
    jc = await env.client.post(
        f"{API}/jobconfigs",
        json={
            "name": "cat-payload",
            "command": ["/bin/sh", "-c", 'cat "$JOB_PAYLOAD_DIR/input.txt"'],
        },
    )
    jc_id = jc.json()["id"]
    async with _signed_in(env, "erin") as (client, token):
        page = await client.get(f"/jobconfigs/{jc_id}")
        assert 'name="payload" type="file"' in page.text
        r = await client.post(
            f"/jobconfigs/{jc_id}/run",
            data={"csrf_token": token},
            files={"payload": ("input.txt", b"payload-line-42\n", "text/plain")},
        )
        assert r.status_code == 303, r.text[:300]
        job_id = int(r.headers["location"].split("/")[2].split("?")[0])
        files = (await env.client.get(f"{API}/jobs/{job_id}/payload")).json()["items"]
        assert [f["name"] for f in files] == ["input.txt"]
        job = await env.wait_status(job_id, {"FINISHED", "ERROR", "FAILED"})
        assert job["status"] == "FINISHED", job
        log = await env.client.get(f"{API}/jobs/{job_id}/log")
        assert "payload-line-42" in log.text
        # Without a file, the Run form still runs it (no payload, no hold).
        r = await client.post(
            f"/jobconfigs/{jc_id}/run",
            data={"csrf_token": token},
            files={"payload": ("", b"", "application/octet-stream")},
        )
        assert r.status_code == 303, r.text[:300]
        # A payload name the API refuses: the held job is cancelled, not left WAITING.
        r = await client.post(
            f"/jobconfigs/{jc_id}/run",
            data={"csrf_token": token},
            files={"payload": ("x" * 300, b"data", "text/plain")},
        )
        assert r.status_code == 422, r.text[:300]
        waiting = await env.client.get(f"{API}/jobs", params={"status": "WAITING"})
        assert waiting.json()["items"] == []
