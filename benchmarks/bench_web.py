"""The web console's dashboard and jobs pages over a big history: server time per page.

For each engine (embedded SQLite, and PostgreSQL on a throwaway cluster):

1. a fresh database at the head revision, 20 jobconfigs;
2. ``--rows`` ended jobs bulk-inserted straight into ``jobs`` (one a second up to now:
   FINISHED 70 %, ERROR / FAILED / CANCELLED 10 % each), folded into the jobstats
   rollup as the maintenance leader would;
3. the whole ASGI app in this process (no socket, no second process: the server's own
   time), retention off; a console session for the admin (every jobconfig) and for a
   user who may view one jobconfig of the 20 (the listings filter for them);
4. ``--queries`` requests of each page: ``/`` (dashboard, with its workers box),
   ``/jobs`` (newest first, oldest first through the history with ``sort=id`` and its
   second page, by duration, by status, jobconfig and age), a job's page (timeline,
   outputs, log), ``/jobconfigs``, a jobconfig's page, ``/workers``, the first event of
   the jobs list's stream (``/events/jobs``: read, rendered, framed), and for comparison
   the API's ``GET /api/v1/jobs?jobconfig_id=ID``. Target: p95 <= 300 ms.

    .venv/bin/python benchmarks/bench_web.py [--rows 1000000] [--engines sqlite,postgresql]
        [--queries 50]
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from _common import percentile, summary_ms, verdict
from _history import (
    Sql,
    ended_job_columns,
    fresh_database,
    insert_ended_jobs,
    make_jobconfigs,
    run_over_engines,
)
from sqlalchemy import Engine, text

from jobyard.api.app import create_app
from jobyard.core.cursors import encode_cursor
from jobyard.runtime import Runtime
from jobyard.settings import Settings
from jobyard.store.factory import open_store, upgrade_database
from jobyard.store.sql.base import make_sync_engine, normalize_url

TARGET_P95_MS = 300.0
JOBCONFIGS = 20
BATCH = 250_000
PASSWORD = "bench-password-1"
ORIGIN = "http://in-process"


def _insert_history(engine: Engine, *, count: int, jc0: int, t0: int) -> None:
    sql = Sql(engine.dialect.name == "postgresql")
    insert_ended_jobs(
        engine,
        ended_job_columns(sql, JOBCONFIGS),
        first=0,
        count=count,
        batch=BATCH,
        params={"jc0": jc0, "t0": t0},
    )
    if sql.pg:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE jobs"))


async def _login(client: httpx.AsyncClient, name: str) -> None:
    """Log ``client`` (cookie-keeping) in to the console as ``name``."""
    r = await client.post("/login", data={"name": name, "password": PASSWORD})
    if r.status_code != 303:
        raise RuntimeError(f"login of {name}: {r.status_code} {r.text[:500]}")


async def _first_event(app: Any, path: str, cookie: str) -> float:
    """Seconds from a stream's request to its first event's bytes, then disconnect.

    Straight through ASGI: httpx's in-process transport would wait for the end of the
    response, and a live stream does not end.
    """
    url = urlsplit(path)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": url.path,
        "raw_path": url.path.encode(),
        "query_string": url.query.encode(),
        "root_path": "",
        "headers": [
            (b"host", b"in-process"),
            (b"accept", b"text/event-stream"),
            (b"cookie", cookie.encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("in-process", 80),
    }
    got = asyncio.Event()
    gone = asyncio.Event()
    status: list[int] = []
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body" and b"event:" in message.get("body", b""):
            got.set()

    t = time.perf_counter()
    task = asyncio.create_task(app(scope, receive, send))
    waiting = asyncio.create_task(got.wait())
    await asyncio.wait({task, waiting}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    took = time.perf_counter() - t
    gone.set()
    waiting.cancel()
    try:
        await asyncio.wait_for(task, 30)
    except (TimeoutError, asyncio.CancelledError):
        task.cancel()
    if not got.is_set() or status != [200]:
        raise RuntimeError(f"{path}: status {status}, no first event")
    return took


async def _pages(
    app: Any, client: httpx.AsyncClient, jc: int, job: int, queries: int
) -> list[list[object]]:
    out: list[list[object]] = []
    # A later page of the oldest-first listing: after job 1000's position.
    second_oldest = f"/jobs?sort=id&cursor={encode_cursor(1000)}"
    paths = (
        "/",
        "/jobs",
        "/jobs?sort=id",
        second_oldest,
        "/jobs?sort=-duration",
        "/jobs?status=ERROR",
        f"/jobs?jobconfig={jc}",
        f"/jobs?jobconfig={jc}&sort=id",
        f"/jobs?status=ERROR&jobconfig={jc}&since=24h&sort=-ended",
        f"/jobs/{job}",
        "/jobconfigs",
        f"/jobconfigs/{jc}",
        "/workers",
        # The API's listing by jobconfig, for comparison (same store query underneath).
        f"/api/v1/jobs?jobconfig_id={jc}&limit=50",
    )
    for path in paths:
        await client.get(path)  # warm-up
        timings = []
        for _ in range(queries):
            t = time.perf_counter()
            r = await client.get(path)
            timings.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise RuntimeError(f"{path}: {r.status_code} {r.text[:500]}")
        out.append(_row(path, timings))
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    for path in ("/events/jobs", f"/events/jobs?jobconfig={jc}&sort=id"):
        await _first_event(app, path, cookie)  # warm-up
        timings = [await _first_event(app, path, cookie) for _ in range(queries)]
        out.append(_row(f"{path} (first event)", timings))
    return out


def _row(path: str, timings: list[float]) -> list[object]:
    s = summary_ms(timings, ps=(50, 95))
    p95 = percentile(timings, 95) * 1000
    return [path, f"{s['p50']} / {s['p95']}", verdict(p95 <= TARGET_P95_MS)]


async def bench_engine(engine_name: str, rows: int, queries: int) -> list[list[object]]:
    """Load, fold, render pages on one engine; the table rows of its report."""
    out: list[list[object]] = []
    with fresh_database(engine_name, "jy-bench-web-") as (url, home, is_sqlite):
        await asyncio.to_thread(upgrade_database, url)
        store = await open_store(url, migrate=False)
        engine = make_sync_engine(normalize_url(url))
        try:
            jc_ids = await make_jobconfigs(store, "web", JOBCONFIGS)
            t0 = int(time.time()) - rows - 10
            started = time.perf_counter()
            await asyncio.to_thread(_insert_history, engine, count=rows, jc0=jc_ids[0], t0=t0)
            print(f"  {engine_name}: {rows:,} jobs loaded in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            while (await store.jobstats_fold(lag_seconds=0, batch=5000)).more:
                pass
            print(f"  {engine_name}: folded in {time.perf_counter() - started:.1f} s", flush=True)
        finally:
            await store.close()
            engine.dispose()
        settings = Settings(
            home=home,
            workers=0,
            database_url="" if is_sqlite else url,
            retention={"enabled": False},
        )
        app = create_app(Runtime(settings))
        async with app.router.lifespan_context(app):
            token = (home / "admin.token").read_text().strip()
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url=ORIGIN,
                headers={"Authorization": f"Bearer {token}"},
            ) as api:
                me = (await api.get("/api/v1/me")).json()
                await api.patch(f"/api/v1/users/{me['user']['id']}", json={"password": PASSWORD})
                r = await api.post(
                    "/api/v1/users", json={"name": "viewer", "role": "user", "password": PASSWORD}
                )
                viewer_id = r.json()["id"]
                policy = {"action": "view", "resource": "jobconfigs", "selector": str(jc_ids[3])}
                r = await api.post(f"/api/v1/users/{viewer_id}/policies", json=policy)
                if r.status_code != 201:
                    raise RuntimeError(f"policy: {r.status_code} {r.text}")
                listed = await api.get("/api/v1/jobs", params={"jobconfig_id": jc_ids[3]})
                job = listed.json()["items"][0]["id"]
            for who in ("admin", "viewer"):
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url=ORIGIN,
                    headers={"Origin": ORIGIN},
                ) as client:
                    await _login(client, who)
                    token_of = await client.post(
                        "/api/v1/login", json={"name": who, "password": PASSWORD}
                    )
                    client.headers["Authorization"] = f"Bearer {token_of.json()['access_token']}"
                    for row in await _pages(app, client, jc_ids[3], job, queries):
                        out.append([who, *row])
    return out


def main() -> None:
    run_over_engines(
        "bench_web",
        __doc__,
        50,
        bench_engine,
        "console pages (in-process ASGI), {engine}, {rows} jobs",
        ["who", "page", "p50 / p95 ms", f"p95 <= {TARGET_P95_MS:g} ms"],
        "page",
        JOBCONFIGS,
    )


if __name__ == "__main__":
    main()
