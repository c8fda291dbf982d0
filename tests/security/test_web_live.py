"""The console's live streams, output downloads and workers page, attacked over HTTP.

A job stream of a job the user may not view answers the 404 of a missing job; the
jobs-list stream carries only jobs the user may view; a stream needs a live session
(401 without one, and it ends after logout); a session holds a bounded number of
streams; the server's graceful stop ends open streams instead of waiting for them;
output files download as attachments that are never rendered as pages.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from jobyard.web.streams import MAX_STREAMS_PER_SESSION
from tests.integration.conftest import Env, ServerFactory
from tests.security.web_support import csrf_of
from tests.support.server import jobyard_server

PASSWORD = "live-pass-1"
API = "/api/v1"


async def _user(env: Env, name: str, role: str = "user") -> int:
    r = await env.client.post(
        f"{API}/users", json={"name": name, "role": role, "password": PASSWORD}
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


@asynccontextmanager
async def _signed_in(url: str, name: str) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client logged in to the console as ``name``."""
    async with httpx.AsyncClient(base_url=url, timeout=30, headers={"Origin": url}) as client:
        r = await client.post("/login", data={"name": name, "password": PASSWORD})
        assert r.status_code == 303, r.text
        yield client


class Events:
    """The events of an open stream, parsed as they come."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 20.0) -> tuple[str, Any] | None:
        """The next ``(event, data)``, or None when the stream ended."""
        event, data = "", None
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line.startswith("event: "):
                    event = line[len("event: ") :]
                elif line.startswith("data: "):
                    data = json.loads(line[len("data: ") :])
                elif line == "" and event:
                    return event, data
        return None

    async def until(self, wanted: Any, timeout: float = 30.0) -> list[tuple[str, Any]]:
        """Every event up to the first for which ``wanted(event, data)`` holds."""
        seen: list[tuple[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no wanted event in {timeout} s; saw {[e for e, _ in seen]}"
            got = await self.next(left)
            assert got is not None, f"the stream ended first; saw {seen}"
            seen.append(got)
            if wanted(*got):
                return seen


@asynccontextmanager
async def _stream(client: httpx.AsyncClient, path: str) -> AsyncIterator[Events]:
    async with client.stream("GET", path, headers={"Accept": "text/event-stream"}) as r:
        assert r.status_code == 200, (await r.aread()).decode()
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-store"
        yield Events(r)


async def _status_of(client: httpx.AsyncClient, path: str) -> int:
    """The status a stream answers (the stream is closed at once)."""
    async with client.stream("GET", path) as r:
        return r.status_code


async def _jobconfig(env: Env, name: str, command: list[str]) -> int:
    r = await env.client.post(f"{API}/jobconfigs", json={"name": name, "command": command})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _run(env: Env, jobconfig_id: int) -> int:
    r = await env.client.post(f"{API}/jobconfigs/{jobconfig_id}/run", json={})
    assert r.status_code in (200, 201, 202), r.text
    return int(r.json()["id"])


async def test_a_job_stream_of_an_invisible_job_is_the_404_of_a_missing_one(env: Env) -> None:
    await _user(env, "mallory")
    secret = await _run(env, await _jobconfig(env, "secret-cfg", ["/bin/sh", "-c", "sleep 30"]))
    async with _signed_in(env.url, "mallory") as client:
        hidden = await client.get(f"/jobs/{secret}/events")
        missing = await client.get("/jobs/987654321/events")
        page = await client.get(f"/jobs/{secret}")
        assert hidden.status_code == missing.status_code == page.status_code == 404
        strip = re.compile(r"\d+")
        assert strip.sub("N", hidden.text) == strip.sub("N", missing.text)
        assert "secret-cfg" not in hidden.text
    await env.client.post(f"{API}/jobs/{secret}/abort")


async def test_streams_need_a_session(env: Env) -> None:
    job = await _run(env, await _jobconfig(env, "plain", ["/bin/sh", "-c", "true"]))
    async with httpx.AsyncClient(base_url=env.url, timeout=30) as anonymous:
        for path in ("/events/jobs", f"/jobs/{job}/events"):
            r = await anonymous.get(path)
            assert r.status_code == 401, (path, r.status_code)
            assert "text/event-stream" not in r.headers.get("content-type", "")
        # A bearer token, even the admin's, is no console session.
        r = await anonymous.get("/events/jobs", headers={"Authorization": f"Bearer {env.token}"})
        assert r.status_code == 401


async def test_the_list_stream_never_carries_invisible_jobs(env: Env) -> None:
    uid = await _user(env, "vera")
    shown = await _jobconfig(env, "shown-cfg", ["/bin/sh", "-c", "echo shown"])
    hidden = await _jobconfig(env, "hidden-cfg", ["/bin/sh", "-c", "echo hidden"])
    r = await env.client.post(
        f"{API}/users/{uid}/policies",
        json={"action": "view", "resource": "jobconfigs", "selector": str(shown)},
    )
    assert r.status_code == 201, r.text
    async with _signed_in(env.url, "vera") as client, _stream(client, "/events/jobs") as events:
        first = await events.next()
        assert first is not None and first[0] == "rows"
        # Jobs it may not view first, then one it may view: the frame that shows the
        # latter FINISHED was read after all of them existed.
        hidden_jobs = [await _run(env, hidden) for _ in range(3)]
        visible = await _run(env, shown)
        done = re.compile(
            rf'/jobs/{visible}">#{visible}</a></td><td>shown-cfg</td><td><span class="status '
            r'status-finished">'
        )
        seen = await events.until(lambda e, d: e == "rows" and bool(done.search(d)), timeout=60)
        # ...and no frame ever named a job or the jobconfig it may not view.
        for event, data in seen:
            text = json.dumps(data)
            assert "hidden-cfg" not in text, event
            for job in hidden_jobs:
                assert f'/jobs/{job}\\"' not in text and f"#{job}<" not in text, (job, event)
    # The same filters as the list: a wrong one is the list's 422, before any stream.
    async with _signed_in(env.url, "vera") as client:
        assert (await client.get("/events/jobs?status=NOPE")).status_code == 422
        assert (await client.get("/events/jobs?sort=nope")).status_code == 422


async def test_a_stream_ends_after_logout(env: Env) -> None:
    await _user(env, "lou")
    async with _signed_in(env.url, "lou") as client:
        csrf = csrf_of((await client.get("/jobs")).text)
        async with _stream(client, "/events/jobs") as events:
            assert (await events.next()) is not None
            r = await client.post("/logout", data={"csrf_token": csrf})
            assert r.status_code == 303
            started = time.monotonic()
            ended: tuple[str, Any] | None = ("", None)
            while ended is not None and ended[0] != "session":
                ended = await events.next(timeout=20)
            assert time.monotonic() - started < 15
        # A new connection with the same cookie: the logout's pooled connection has been
        # idle about as long as uvicorn keeps one open (5 s, the session check period
        # too), and reusing it as the server closes it fails with a ReadError.
        async with httpx.AsyncClient(base_url=env.url, cookies=client.cookies) as fresh:
            r = await fresh.get("/events/jobs")
        assert r.status_code == 401


async def test_a_stream_of_an_expired_access_token_ends_and_reopens_renewed(
    start_server: ServerFactory,
) -> None:
    """The access token dies under an open stream (1.2 s here): the stream says
    ``session`` and ends; the browser's reconnect refreshes the session like a page load
    (a new cookie on the stream's answer, the same CSRF secret) and streams again."""
    env = await start_server(auth={"access_token_minutes": 0.02})
    await _user(env, "rita")
    async with _signed_in(env.url, "rita") as client:
        before = client.cookies["jobyard_session"]
        async with _stream(client, "/events/jobs") as events:
            seen = await events.until(lambda e, d: e == "session", timeout=30)
            assert seen[-1] == ("session", "ended")
        async with client.stream("GET", "/events/jobs") as r:
            assert r.status_code == 200
            after = r.cookies["jobyard_session"]
            assert after != before and after.split(".")[2] == before.split(".")[2]
            assert (await Events(r).next()) is not None


async def test_a_session_holds_a_bounded_number_of_streams(env: Env) -> None:
    await _user(env, "sam")
    async with _signed_in(env.url, "sam") as client:
        async with asyncio.TaskGroup() as group:
            opened: list[Any] = []
            stop, full = asyncio.Event(), asyncio.Event()

            async def hold() -> None:
                async with _stream(client, "/events/jobs") as events:
                    await events.next()
                    opened.append(events)
                    if len(opened) == MAX_STREAMS_PER_SESSION:
                        full.set()
                    await stop.wait()

            for _ in range(MAX_STREAMS_PER_SESSION):
                group.create_task(hold())
            async with asyncio.timeout(20):
                await full.wait()
            extra = await client.get("/events/jobs")
            assert extra.status_code == 429
            assert "close other console tabs" in extra.text
            stop.set()
        # Closed streams give their places back (once the server saw the disconnects).
        deadline = time.monotonic() + 10
        while (status := await _status_of(client, "/events/jobs")) == 429:
            assert time.monotonic() < deadline, "closed streams kept their places"
            await asyncio.sleep(0.1)
        assert status == 200


async def test_a_job_stream_sends_status_and_log_until_the_end(env: Env) -> None:
    await _user(env, "ada", role="admin")
    script = "echo first; sleep 1.5; echo second-line; sleep 0.5"
    job = await _run(env, await _jobconfig(env, "talker", ["/bin/sh", "-c", script]))
    path = f"/jobs/{job}/events?offset=0"
    async with _signed_in(env.url, "ada") as client, _stream(client, path) as events:
        seen = await events.until(lambda e, d: e == "end", timeout=60)
    logs = [d for e, d in seen if e == "log"]
    lines = "".join(logs).splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == ["first", "second-line"]
    # Followed live: the first line came before the second was printed.
    assert "first" in logs[0] and "second-line" not in logs[0]
    heads = [d for e, d in seen if e == "head"]
    assert "FINISHED" in heads[-1]
    assert seen[-1] == ("end", "FINISHED")


async def test_output_downloads_are_attachments_never_pages(env: Env) -> None:
    await _user(env, "olga", role="admin")
    await _user(env, "nosy")
    html = "<script>alert(1)</script>"
    cmd = ["/bin/sh", "-c", f"printf '{html}' > \"$LOCAL_JOB_OUT_DIR/report.html\""]
    job = await _run(env, await _jobconfig(env, "writer", cmd))
    await env.wait_status(job, {"FINISHED"})
    async with _signed_in(env.url, "olga") as client:
        page = await client.get(f"/jobs/{job}")
        assert f'href="/jobs/{job}/outputs/report.html"' in page.text
        r = await client.get(f"/jobs/{job}/outputs/report.html")
        assert r.status_code == 200
        assert r.text == html
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"] == "default-src 'none'; sandbox"
        assert r.headers["content-disposition"].startswith('attachment; filename="report.html"')
        assert (await client.get(f"/jobs/{job}/outputs/nope.txt")).status_code == 404
    async with _signed_in(env.url, "nosy") as client:
        hidden = await client.get(f"/jobs/{job}/outputs/report.html")
        assert hidden.status_code == 404
        assert html not in hidden.text and "report.html" not in hidden.text
    async with httpx.AsyncClient(base_url=env.url, timeout=30) as anonymous:
        r = await anonymous.get(f"/jobs/{job}/outputs/report.html")
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


async def test_the_workers_page_names_only_visible_jobs(env: Env) -> None:
    await _user(env, "wendy")
    busy = await _run(env, await _jobconfig(env, "busy-cfg", ["/bin/sh", "-c", "sleep 30"]))
    await env.wait_status(busy, {"RUNNING"})
    async with _signed_in(env.url, "wendy") as client:
        page = await client.get("/workers")
        assert page.status_code == 200
        assert "healthy" in page.text
        assert f"#{busy}" not in page.text and f"/jobs/{busy}" not in page.text
        assert "1 you may not view" in page.text
    await env.client.post(f"{API}/jobs/{busy}/abort")


def test_a_graceful_stop_does_not_wait_for_open_streams(tmp_path: Any) -> None:
    """``jobyard up`` with a browser's stream open stops at once on SIGTERM (uvicorn would
    wait its graceful timeout, 15 s here, for the stream to end by itself)."""

    async def scenario(url: str, token: str, stop: Any) -> float:
        async with httpx.AsyncClient(
            base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        ) as api:
            r = await api.post(
                f"{API}/users", json={"name": "gus", "role": "user", "password": PASSWORD}
            )
            assert r.status_code == 201, r.text
        async with _signed_in(url, "gus") as client, _stream(client, "/events/jobs") as events:
            assert (await events.next()) is not None
            started = time.monotonic()
            stop()
            rest: tuple[str, Any] | None = ("", None)
            while rest is not None:
                rest = await events.next(timeout=30)
            return time.monotonic() - started

    with jobyard_server(tmp_path, workers=0) as server:
        took = asyncio.run(
            scenario(server.url, server.token, lambda: server.process.send_signal(signal.SIGTERM))
        )
        server.process.wait(timeout=30)
    assert took < 5, f"the stream held the stop for {took:.1f} s"
