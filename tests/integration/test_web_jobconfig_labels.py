"""The console's jobconfig forms: the "required worker labels" field (``k=v`` per line),
against a real server: stored as the API stores them, refused with the API's 422 (the
field marked, the text kept), shown on the jobconfig and job pages, and changed by the
settings form."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import Env
from tests.security.test_web_edit import package_tgz
from tests.security.web_support import signed_in

PASSWORD = "console-pass-1"
API = "/api/v1"
NO_FILE: dict[str, Any] = {"package_file": ("", b"", "application/octet-stream")}


def _form(token: str, **fields: str) -> dict[str, str]:
    base = {
        "csrf_token": token,
        "name": "",
        "description": "",
        "package_id": "",
        "entrypoint": "hello",
        "parameters": "",
        "max_concurrent": "1",
        "timeout": "0",
        "success_exit_codes": "0",
        "pool": "default",
        "labels": "",
    }
    return {**base, **fields}


async def test_required_worker_labels_in_the_jobconfig_forms(env: Env) -> None:
    r = await env.client.post(
        f"{API}/users", json={"name": "carol", "role": "user", "password": PASSWORD}
    )
    assert r.status_code == 201, r.text
    async with signed_in(env, "carol", PASSWORD, page="/jobconfigs") as (client, token):
        r = await client.post(
            "/packages",
            data={"csrf_token": token},
            files={"file": ("hello.tar.gz", package_tgz(), "application/gzip")},
        )
        package_id = r.headers["location"].split("/")[2].split("?")[0]
        page = await client.get(f"/jobconfigs/new?package_id={package_id}")
        assert "Required worker labels" in page.text

        r = await client.post(
            "/jobconfigs/new",
            data=_form(token, name="gpu-job", package_id=package_id, labels="gpu=1\nbad key=x"),
            files=NO_FILE,
        )
        assert r.status_code == 422 and "required worker labels" in r.text, r.text[:500]
        assert 'id="labels"' in r.text and 'aria-invalid="true"' in r.text
        assert "bad key=x" in r.text  # what the user typed comes back

        r = await client.post(
            "/jobconfigs/new",
            data=_form(token, name="gpu-job", package_id=package_id, labels="gpu=1\r\nzone=a\n"),
            files=NO_FILE,
        )
        assert r.status_code == 303, r.text[:500]
        jc_id = int(r.headers["location"].rsplit("/", 1)[1])
        got = (await env.client.get(f"{API}/jobconfigs/{jc_id}")).json()
        assert got["labels"] == {"gpu": "1", "zone": "a"}
        shown = await client.get(f"/jobconfigs/{jc_id}")
        assert "<code>gpu=1</code> <code>zone=a</code>" in shown.text
        settings = await client.get(f"/jobconfigs/{jc_id}/settings")
        assert "gpu=1\nzone=a</textarea>" in settings.text

        # The settings form changes them (and only them).
        r = await client.post(
            f"/jobconfigs/{jc_id}/settings",
            data=_form(token, name="gpu-job", package_id=package_id, labels="zone=b", enabled="on"),
        )
        assert r.status_code == 303, r.text[:500]
        got = (await env.client.get(f"{API}/jobconfigs/{jc_id}")).json()
        assert got["labels"] == {"zone": "b"} and got["definition_changed_by"] == "carol"

        # A job copies them; its page shows them.
        job = (await env.client.post(f"{API}/jobconfigs/{jc_id}/run", json={})).json()
        page = await client.get(f"/jobs/{job['id']}")
        assert "Required worker labels" in page.text and "<code>zone=b</code>" in page.text
        await env.client.post(f"{API}/jobs/{job['id']}/cancel")
