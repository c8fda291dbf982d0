"""The dashboard's live stream over HTTP: a session needed, only what the user may view.

``GET /events/dashboard`` answers 401 without a session (an EventSource must not follow
a redirect), sends the dashboard's block as a ``board`` event at once, and again when a
job changes, without a reconnect; a user without policies never gets another user's
jobconfig or job in it; the page itself names the stream and no longer polls by timer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from tests.integration.conftest import Env
from tests.security.test_web_live import Events

PASSWORD = "dash-live-pass-1"
API = "/api/v1"


async def _user(env: Env, name: str, role: str) -> None:
    r = await env.client.post(
        f"{API}/users", json={"name": name, "role": role, "password": PASSWORD}
    )
    assert r.status_code == 201, r.text


@asynccontextmanager
async def _signed_in(url: str, name: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, timeout=30, headers={"Origin": url}) as client:
        r = await client.post("/login", data={"name": name, "password": PASSWORD})
        assert r.status_code == 303, r.text
        yield client


@asynccontextmanager
async def _board(client: httpx.AsyncClient) -> AsyncIterator[Events]:
    async with client.stream(
        "GET", "/events/dashboard", headers={"Accept": "text/event-stream"}
    ) as r:
        assert r.status_code == 200, (await r.aread()).decode()
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-store"
        yield Events(r)


async def test_without_a_session_the_stream_answers_401(env: Env) -> None:
    async with httpx.AsyncClient(base_url=env.url, timeout=30) as anonymous:
        r = await anonymous.get("/events/dashboard")
    assert r.status_code == 401
    assert "log in" in r.text


async def test_the_board_follows_jobs_and_shows_only_what_the_user_may_view(env: Env) -> None:
    await _user(env, "watcher", "admin")
    await _user(env, "nobody", "user")
    r = await env.client.post(
        f"{API}/jobconfigs",
        json={"name": "hidden-from-nobody", "command": ["/bin/sh", "-c", "sleep 60"]},
    )
    jc = int(r.json()["id"])

    async with _signed_in(env.url, "watcher") as watcher, _signed_in(env.url, "nobody") as nobody:
        page = await watcher.get("/")
        assert 'data-live="/events/dashboard"' in page.text
        assert (
            'hx-trigger="jobyard:poll"' in page.text
            and "every 10s" not in page.text.split('id="workers-title"')[0]
        )
        async with _board(watcher) as seen, _board(nobody) as blind:
            first = await seen.until(lambda e, d: e == "board")
            assert "Running jobs" in first[-1][1] and "No job is running." in first[-1][1]
            hidden_first = await blind.until(lambda e, d: e == "board")
            started = time.monotonic()
            r = await env.client.post(f"{API}/jobconfigs/{jc}/run", json={})
            job = int(r.json()["id"])
            # The running job shows up in a later event of the same stream.
            await seen.until(lambda e, d: e == "board" and f'href="/jobs/{job}"' in d, timeout=30)
            assert time.monotonic() - started < 25  # not a reload: the stream said it
            # The other user's board, read again since (the bus woke it, or its 10 s
            # recheck), never names the jobconfig or the job.
            later = await blind.until(lambda e, d: e == "board", timeout=20)
            for _, data in hidden_first + later:
                assert "hidden-from-nobody" not in str(data)
                assert f"/jobs/{job}" not in str(data)
        await env.client.post(f"{API}/jobs/{job}/abort")
