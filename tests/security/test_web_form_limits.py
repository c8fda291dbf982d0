"""A console form over the body limit is answered with an HTML 413 page, not JSON.

A browser shows what the server answers: the body-limit middleware's JSON error would be
a page of raw JSON. Console paths get the console's error page (status 413, what to fix,
the security headers, the connection closed), whether the size was declared or only
found while reading (chunked); the API keeps its JSON answer; nothing was applied.
"""

from __future__ import annotations

import asyncio

import httpx

from tests.integration.conftest import ServerFactory
from tests.security.web_support import csrf_of
from tests.support.rawhttp import Answer, RawRequest, chunk

PASSWORD = "limits-pass-1"
LIMIT = 4096


def _is_page_413(r: httpx.Response) -> None:
    assert r.status_code == 413, r.text
    assert r.headers["content-type"].startswith("text/html"), r.headers
    assert r.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["connection"] == "close"
    assert "<h1>Error 413</h1>" in r.text
    assert f"at most {LIMIT} bytes (JOBYARD_MAX_JSON_BYTES)" in r.text
    assert '"error"' not in r.text


def _chunked_post(url: str, path: str, cookie: str, body: bytes) -> Answer:
    """POST ``body`` as a form in 1 KiB chunks (no length declared), with the session."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url.split('//')[1]}\r\nOrigin: {url}\r\n"
        f"Cookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    with RawRequest(url) as raw:
        raw.send(head.encode())
        raw.stream((chunk(body[at : at + 1024]) for at in range(0, len(body), 1024)), wait=0.01)
        return raw.answer()


async def test_an_oversized_console_form_gets_an_html_413(start_server: ServerFactory) -> None:
    env = await start_server(max_json_bytes=LIMIT)
    r = await env.client.post(
        "/api/v1/users", json={"name": "writer", "role": "admin", "password": PASSWORD}
    )
    assert r.status_code == 201, r.text
    r = await env.client.post(
        "/api/v1/jobconfigs",
        json={"name": "limited", "command": ["/bin/sh", "-c", "true"], "description": "before"},
    )
    jc = int(r.json()["id"])
    async with httpx.AsyncClient(base_url=env.url, timeout=30, headers={"Origin": env.url}) as c:
        r = await c.post("/login", data={"name": "writer", "password": PASSWORD})
        assert r.status_code == 303, r.text
        page = await c.get(f"/jobconfigs/{jc}/yaml")
        assert page.status_code == 200
        token = csrf_of(page.text)
        document = "name: limited\ndescription: " + "x" * (2 * LIMIT) + "\n"
        form = {"csrf_token": token, "op": "apply", "document": document}

        # Declared length over the limit: refused before the body is read.
        _is_page_413(await c.post(f"/jobconfigs/{jc}/yaml", data=form))
        # No length (chunked): refused when the count passes the limit (the server
        # runs in this event loop: the raw socket in a thread).
        cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
        body = str(httpx.QueryParams(form)).encode()
        answer = await asyncio.to_thread(
            _chunked_post, env.url, f"/jobconfigs/{jc}/yaml", cookie, body
        )
        assert answer.status == 413, answer
        assert answer.headers["content-type"].startswith("text/html"), answer
        assert b"(JOBYARD_MAX_JSON_BYTES)" in answer.body and b'"error"' not in answer.body
        # Another console form (settings) the same way.
        r = await c.post(
            f"/jobconfigs/{jc}/settings",
            data={"csrf_token": token, "description": "y" * (2 * LIMIT)},
        )
        _is_page_413(r)

        # A form within the limit still works: the page, not a refusal.
        small = await c.post(
            f"/jobconfigs/{jc}/yaml",
            data={"csrf_token": token, "op": "plan", "document": "name: limited\n"},
        )
        assert small.status_code in (200, 422), small.text
        assert small.headers["content-type"].startswith("text/html")

    # Nothing was applied.
    assert (await env.client.get(f"/api/v1/jobconfigs/{jc}")).json()["description"] == "before"
    # The API keeps its JSON error.
    r = await env.client.post(
        "/api/v1/jobconfigs", json={"name": "big", "command": ["true"], "description": "z" * LIMIT}
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"
