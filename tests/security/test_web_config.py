"""A jobconfig's macros, schedules and YAML tabs in the console, attacked over HTTP.

Every new state change needs the session's CSRF token and a same-origin request and
changes nothing otherwise; a user who may not view the jobconfig gets exactly the 404 of
a missing one, a user who may view but not edit gets the API's 403 (or the API's
refused plan); a secure macro's value never appears in any answer; Apply applies only
the document that was planned, and only while its plan still holds.
"""

from __future__ import annotations

import re
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx

from tests.integration.conftest import Env
from tests.security.web_support import signed_in

PASSWORD = "console-pass-1"
SECRET = "s3cr3t-Value-never-shown"
COMMAND = ["/bin/sh", "-c", "echo hi"]


async def _user(env: Env, name: str, role: str = "user") -> int:
    r = await env.client.post(
        "/api/v1/users", json={"name": name, "role": role, "password": PASSWORD}
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _grant(env: Env, user_id: int, action: str, jobconfig_id: int) -> None:
    body = {"action": action, "resource": "jobconfigs", "selector": str(jobconfig_id)}
    r = await env.client.post(f"/api/v1/users/{user_id}/policies", json=body)
    assert r.status_code == 201, r.text


async def _jobconfig(env: Env, name: str, **extra: Any) -> dict[str, Any]:
    r = await env.client.post(
        "/api/v1/jobconfigs", json={"name": name, "command": COMMAND, **extra}
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _signed_in(env: Env, name: str) -> AbstractAsyncContextManager[tuple[httpx.AsyncClient, str]]:
    """A browser logged in to the console as ``name``, and its session's CSRF token."""
    return signed_in(env, name, PASSWORD)


async def _macros(env: Env, jobconfig_id: int) -> dict[str, Any]:
    r = await env.client.get(f"/api/v1/jobconfigs/{jobconfig_id}/macros")
    assert r.status_code == 200, r.text
    return {m["name"]: m for m in r.json()["items"]}


async def _schedules(env: Env, jobconfig_id: int) -> list[dict[str, Any]]:
    r = await env.client.get(f"/api/v1/jobconfigs/{jobconfig_id}/schedules")
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_every_new_state_change_needs_csrf_and_the_same_origin(env: Env) -> None:
    await _user(env, "olga", role="admin")
    jc = await _jobconfig(env, "guarded-jc")
    r = await env.client.post(
        f"/api/v1/jobconfigs/{jc['id']}/schedules", json={"cron": "0 0 3 * * ?"}
    )
    assert r.status_code == 201, r.text
    schedule_id = r.json()["id"]
    base = f"/jobconfigs/{jc['id']}"
    posts: list[tuple[str, dict[str, str]]] = [
        (f"{base}/macros/jobconfig/set", {"name": "CSRF_SET", "value": "x"}),
        (f"{base}/macros/account/set", {"name": "CSRF_ACCOUNT", "value": "x"}),
        (f"{base}/macros/jobconfig/delete", {"name": "KEEP"}),
        (f"{base}/schedules", {"cron": "0 0 4 * * ?", "timezone": "UTC"}),
        (f"{base}/schedules/{schedule_id}/disable", {}),
        (f"{base}/schedules/{schedule_id}/delete", {}),
        (f"{base}/yaml", {"op": "plan", "document": "jobconfigs: []\n"}),
        (f"{base}/yaml", {"op": "apply", "document": "jobconfigs: []\n"}),
    ]
    r = await env.client.put(f"/api/v1/jobconfigs/{jc['id']}/macros/KEEP", json={"value": "k"})
    assert r.status_code == 200, r.text
    async with _signed_in(env, "olga") as (client, token):
        for path, form in posts:
            refusals = [
                ("no token", form, {}),
                ("wrong token", {**form, "csrf_token": "x" * 43}, {}),
                ("cross-site", {**form, "csrf_token": token}, {"Sec-Fetch-Site": "cross-site"}),
                ("other origin", {**form, "csrf_token": token}, {"Origin": "http://evil.example"}),
            ]
            for why, data, headers in refusals:
                r = await client.post(path, data=data, headers=headers)
                assert r.status_code == 403, (path, why, r.text)
                assert "refused" in r.text
        # A client that sends neither Origin nor Sec-Fetch-Site nor Referer.
        async with httpx.AsyncClient(base_url=env.url, cookies=client.cookies) as bare:
            for path, form in posts:
                r = await bare.post(path, data={**form, "csrf_token": token})
                assert r.status_code == 403, (path, r.text)
    # Nothing changed.
    assert set(await _macros(env, jc["id"])) == {"KEEP"}
    r = await env.client.get("/api/v1/macros/account")
    assert "CSRF_ACCOUNT" not in r.text
    (schedule,) = await _schedules(env, jc["id"])
    assert schedule["paused"] is False


async def test_the_pages_and_actions_work_for_a_user_who_may_edit(env: Env) -> None:
    uid = await _user(env, "edna")
    jc = await _jobconfig(env, "edna-jc", description="before")
    await _grant(env, uid, "edit", jc["id"])
    base = f"/jobconfigs/{jc['id']}"
    async with _signed_in(env, "edna") as (client, token):
        for tab in ("", "/macros", "/schedules", "/yaml"):
            r = await client.get(f"{base}{tab}")
            assert r.status_code == 200, (tab, r.text)
            assert 'aria-label="Jobconfig edna-jc"' in r.text
            current = re.findall(r'<a href="([^"]+)" aria-current="page">', r.text)
            assert current[-1] == (f"{base}{tab}" if tab else base), current
        # Macros: set a plain one, then delete it.
        r = await client.post(
            f"{base}/macros/jobconfig/set",
            data={"csrf_token": token, "name": "GREETING", "value": "hello"},
        )
        assert r.status_code == 303, r.text
        assert (await _macros(env, jc["id"]))["GREETING"]["value"] == "hello"
        page = await client.get(r.headers["location"])
        assert "Macro saved." in page.text and "<code>hello</code>" in page.text
        r = await client.post(
            f"{base}/macros/jobconfig/delete", data={"csrf_token": token, "name": "GREETING"}
        )
        assert r.status_code == 303, r.text
        assert "GREETING" not in await _macros(env, jc["id"])
        # A bad name: the page again, 422 with the API's message.
        r = await client.post(
            f"{base}/macros/jobconfig/set",
            data={"csrf_token": token, "name": "9BAD", "value": "v"},
        )
        assert r.status_code == 422
        assert "invalid macro name" in r.text
        # Schedules: add, disable, enable, delete.
        r = await client.post(
            f"{base}/schedules",
            data={"csrf_token": token, "cron": "0 30 6 ? * MON-FRI", "timezone": "Europe/Berlin"},
        )
        assert r.status_code == 303, r.text
        (schedule,) = await _schedules(env, jc["id"])
        assert (schedule["cron"], schedule["timezone"]) == ("0 30 6 ? * MON-FRI", "Europe/Berlin")
        sid = schedule["id"]
        r = await client.post(f"{base}/schedules/{sid}/disable", data={"csrf_token": token})
        assert r.status_code == 303
        assert (await _schedules(env, jc["id"]))[0]["paused"] is True
        r = await client.post(f"{base}/schedules/{sid}/enable", data={"csrf_token": token})
        assert r.status_code == 303
        assert (await _schedules(env, jc["id"]))[0]["paused"] is False
        r = await client.post(f"{base}/schedules/{sid}/delete", data={"csrf_token": token})
        assert r.status_code == 303
        assert await _schedules(env, jc["id"]) == []
        # A wrong expression: the API's message, 422, nothing stored.
        r = await client.post(
            f"{base}/schedules", data={"csrf_token": token, "cron": "61 * * * * ?"}
        )
        assert r.status_code == 422
        assert "Minute and Second values must be between 0 and 59" in r.text
        assert await _schedules(env, jc["id"]) == []


async def test_the_cron_preview_answers_what_the_api_answers(env: Env) -> None:
    uid = await _user(env, "pia")
    jc = await _jobconfig(env, "pia-jc")
    await _grant(env, uid, "view", jc["id"])
    preview = f"/jobconfigs/{jc['id']}/schedules/preview"
    async with _signed_in(env, "pia") as (client, _):
        params = {"cron": "0 0 12 ? * MON-FRI", "timezone": "Europe/Berlin"}
        r = await client.get(preview, params=params)
        api = await env.client.get(
            "/api/v1/cron/next", params={"expr": params["cron"], "tz": params["timezone"]}
        )
        assert r.status_code == 200 and api.status_code == 200
        for fire in api.json()["next"]:  # 2026-12-08T12:00:00+01:00
            day, time = fire[:10], fire[11:19]
            assert f"{day} {time} {fire[19:]}" in r.text, (fire, r.text)
        for bad in ("0 0 12 * * MON", "* * *", "61 * * * * ?"):
            r = await client.get(preview, params={"cron": bad, "timezone": "UTC"})
            api = await env.client.get("/api/v1/cron/next", params={"expr": bad})
            assert r.status_code == 200  # the fragment shows the error
            assert api.status_code == 422
            message = api.json()["error"]["message"]
            assert _unescape(message) in _unescape(r.text), (message, r.text)
        r = await client.get(preview, params={"cron": "0 0 12 * * ?", "timezone": "Mars/Base"})
        assert "unknown time zone" in _unescape(r.text)
        # Every 10 s: previewed by the API, but no schedule may use it (the setting is
        # off): the preview says what creating the schedule would answer.
        r = await client.get(preview, params={"cron": "0/10 * * * * ?", "timezone": "UTC"})
        assert "fires more often than once a minute" in _unescape(r.text)


def _unescape(html: str) -> str:
    return (
        html.replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&quot;", '"')
        .replace("&amp;", "&")
    )


async def test_a_user_without_rights_gets_the_api_answers(env: Env) -> None:
    viewer_id = await _user(env, "vera")
    await _user(env, "nobody")
    jc = await _jobconfig(env, "private-jc")
    await _grant(env, viewer_id, "view", jc["id"])
    r = await env.client.put(
        f"/api/v1/jobconfigs/{jc['id']}/macros/TOKEN", json={"value": SECRET, "secure": True}
    )
    assert r.status_code == 200, r.text
    r = await env.client.post(
        f"/api/v1/jobconfigs/{jc['id']}/schedules", json={"cron": "0 0 3 * * ?"}
    )
    sid = r.json()["id"]
    base = f"/jobconfigs/{jc['id']}"
    missing = "/jobconfigs/987654321"
    gets = ["/macros", "/schedules", "/yaml", "/schedules/preview?cron=0+0+3+*+*+%3F"]
    posts: list[tuple[str, dict[str, str]]] = [
        ("/macros/jobconfig/set", {"name": "X", "value": "y"}),
        ("/macros/jobconfig/delete", {"name": "TOKEN"}),
        ("/macros/account/set", {"name": "X", "value": "y"}),
        ("/schedules", {"cron": "0 0 4 * * ?"}),
        (f"/schedules/{sid}/disable", {}),
        (f"/schedules/{sid}/delete", {}),
        ("/yaml", {"op": "plan", "document": "jobconfigs: []\n"}),
    ]

    def same_404(seen: httpx.Response, expected: httpx.Response) -> None:
        assert seen.status_code == expected.status_code == 404
        assert "does not exist" in seen.text
        anonymous = re.compile(r"jobconfig \d+ does not exist")
        assert anonymous.sub("", seen.text) == anonymous.sub("", expected.text)

    async with _signed_in(env, "nobody") as (client, token):
        for tail in gets:
            same_404(await client.get(base + tail), await client.get(missing + tail))
        for tail, form in posts:
            data = {**form, "csrf_token": token}
            same_404(
                await client.post(base + tail, data=data),
                await client.post(missing + tail, data=data),
            )
    async with _signed_in(env, "vera") as (client, token):
        for tail in gets[:3]:
            r = await client.get(base + tail)
            assert r.status_code == 200
            forms = set(re.findall(r'action="([^"]+)"', r.text)) - {"/logout", f"{base}/yaml"}
            assert forms <= {f"{base}/macros/user/set", f"{base}/macros/user/delete"}, forms
        for tail, form in posts[:2] + posts[3:6]:
            r = await client.post(base + tail, data={**form, "csrf_token": token})
            assert r.status_code == 403, (tail, r.text)
            assert f"you may view jobconfig {jc['id']} but not edit it" in r.text
        r = await client.post(
            base + "/macros/account/set", data={"name": "X", "value": "y", "csrf_token": token}
        )
        assert r.status_code == 403
        assert "only admins may change account macros" in r.text
        # YAML: the plan says the change is refused; applying it is refused (the API's 422).
        doc = (await client.get(base + "/yaml")).text
        document = _textarea(doc).replace("description: ''", "description: changed")
        r = await client.post(
            base + "/yaml", data={"op": "plan", "document": document, "csrf_token": token}
        )
        assert r.status_code == 200, r.text
        assert "failed" in r.text
        assert 'value="apply"' not in r.text  # no Apply button for a plan that fails
    assert set(await _macros(env, jc["id"])) == {"TOKEN"}
    assert len(await _schedules(env, jc["id"])) == 1
    assert (await env.client.get(f"/api/v1/jobconfigs/{jc['id']}")).json()["description"] == ""


def _textarea(html: str) -> str:
    found = re.search(r"<textarea[^>]*>(.*?)</textarea>", html, re.S)
    assert found, html
    return _unescape(found.group(1))


async def test_secure_values_never_leave_the_server(env: Env) -> None:
    await _user(env, "sam", role="admin")
    template = await env.client.post(
        "/api/v1/templates", json={"name": "sec-tpl", "command": COMMAND}
    )
    assert template.status_code == 201, template.text
    jc = await _jobconfig(env, "secure-jc")
    r = await env.client.patch(
        f"/api/v1/jobconfigs/{jc['id']}",
        json={"template_id": template.json()["id"], "command": None},
    )
    assert r.status_code == 200, r.text
    base = f"/jobconfigs/{jc['id']}"
    answers: list[httpx.Response] = []
    async with _signed_in(env, "sam") as (client, token):
        for level in ("account", "template", "user", "jobconfig"):
            r = await client.post(
                f"{base}/macros/{level}/set",
                data={
                    "csrf_token": token,
                    "name": f"{level.upper()}_PW",
                    "value": f"{SECRET}-{level}",
                    "secure": "on",
                },
            )
            assert r.status_code == 303, (level, r.text)
            answers.append(r)
            answers.append(await client.get(r.headers["location"]))
        # Every level shows its secure macro masked, and the resolved view masks them too.
        page = answers[-1].text
        for level in ("account", "template", "user", "jobconfig"):
            assert f"<code>{level.upper()}_PW</code>" in page
        assert page.count("••••• secure, write-only") == 4
        assert page.count("*****") == 4
        # Setting a new value: the form never holds the old one.
        r = await client.post(
            f"{base}/macros/jobconfig/set",
            data={
                "csrf_token": token,
                "name": "JOBCONFIG_PW",
                "value": f"{SECRET}-new",
                "secure": "on",
            },
        )
        answers.append(r)
        # A refused form (a secure macro cannot turn plain) does not send the value back.
        r = await client.post(
            f"{base}/macros/jobconfig/set",
            data={"csrf_token": token, "name": "JOBCONFIG_PW", "value": f"{SECRET}-plain"},
        )
        assert r.status_code == 422, r.text
        answers.append(r)
        r = await client.post(
            f"{base}/macros/jobconfig/set",
            data={"csrf_token": token, "name": "1BAD", "value": f"{SECRET}-bad", "secure": "on"},
        )
        assert r.status_code == 422, r.text
        answers.append(r)
        for path in ("", "/macros", "/schedules", "/yaml", "/schedules/preview?cron=0+0+1+*+*+%3F"):
            answers.append(await client.get(base + path))
        doc = _textarea(answers[-2].text)
        for op in ("plan",):
            answers.append(
                await client.post(
                    base + "/yaml", data={"op": op, "document": doc, "csrf_token": token}
                )
            )
    for r in answers:
        assert SECRET not in r.text, (r.request.url, r.text)
    # The values were stored all the same (what a job gets).
    sources = await env.client.get(
        f"/api/v1/jobconfigs/{jc['id']}/macros/resolved", params={"user": "sam"}
    )
    assert {m["name"] for m in sources.json()["items"] if m["secure"]} == {
        "ACCOUNT_PW",
        "TEMPLATE_PW",
        "USER_PW",
        "JOBCONFIG_PW",
    }


async def test_apply_applies_only_the_planned_document(env: Env) -> None:
    await _user(env, "yann", role="admin")
    jc = await _jobconfig(env, "yaml-jc", timeout=5)
    base = f"/jobconfigs/{jc['id']}"
    async with _signed_in(env, "yann") as (client, token):
        exported = _textarea((await client.get(base + "/yaml")).text)
        api = await env.client.get("/api/v1/export", params={"name": "yaml-jc"})
        assert exported == api.text
        assert "timeout: 5" in exported
        changed = exported.replace("timeout: 5", "timeout: 9")

        async def plan(document: str) -> tuple[httpx.Response, dict[str, str]]:
            r = await client.post(
                base + "/yaml", data={"op": "plan", "document": document, "csrf_token": token}
            )
            digests = dict(
                re.findall(r'name="(document_sha256|plan_sha256)" value="([0-9a-f]{64})"', r.text)
            )
            return r, digests

        r, digests = await plan(changed)
        assert r.status_code == 200, r.text
        assert "Plan: what Apply would do" in r.text and "update" in r.text
        assert set(digests) == {"document_sha256", "plan_sha256"}
        assert (await env.client.get(f"/api/v1/jobconfigs/{jc['id']}")).json()["timeout"] == 5

        async def apply(document: str, sent: dict[str, str]) -> httpx.Response:
            return await client.post(
                base + "/yaml",
                data={"op": "apply", "document": document, "csrf_token": token, **sent},
            )

        # Another document than the one planned: refused, nothing applied.
        r = await apply(exported.replace("timeout: 5", "timeout: 11"), digests)
        assert r.status_code == 409, r.text
        assert "the document changed since it was planned" in r.text
        # Applied without a plan: refused.
        r = await apply(changed, {})
        assert r.status_code == 409
        # The server changed meanwhile: refused with the new plan to review.
        assert (
            await env.client.patch(
                f"/api/v1/jobconfigs/{jc['id']}", json={"description": "meanwhile"}
            )
        ).status_code == 200
        r = await apply(changed, digests)
        assert r.status_code == 409, r.text
        assert "changed since your plan" in r.text
        assert (await env.client.get(f"/api/v1/jobconfigs/{jc['id']}")).json()["timeout"] == 5
        # The planned document, its plan unchanged: applied.
        r, digests = await plan(changed)
        r = await apply(changed, digests)
        assert r.status_code == 200, r.text
        assert "Applied." in r.text
        assert (await env.client.get(f"/api/v1/jobconfigs/{jc['id']}")).json()["timeout"] == 9
        assert "timeout: 9" in _textarea(r.text)
        # Browsers send a textarea's line breaks as CRLF: planned and applied alike.
        crlf = _textarea(r.text).replace("timeout: 9", "timeout: 12").replace("\n", "\r\n")
        r, digests = await plan(crlf)
        r = await apply(crlf, digests)
        assert r.status_code == 200, r.text
        assert (await env.client.get(f"/api/v1/jobconfigs/{jc['id']}")).json()["timeout"] == 12
        # A broken document: 422 naming the line and the field.
        broken = _textarea(r.text).replace("timeout: 12", "timeout: soon")
        r, digests = await plan(broken)
        assert r.status_code == 422, r.text
        assert "invalid document" in r.text
        line = 1 + broken.splitlines().index(
            next(x for x in broken.splitlines() if "timeout: soon" in x)
        )
        assert f"Line {line}:" in r.text, r.text
        assert not digests
