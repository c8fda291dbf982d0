"""Database restarts and outages under load are not job failures, and never a 500.

A real server (API + maintenance in this process, local slots in worker processes) on a
PostgreSQL cluster of this module's own, which the tests restart (``pg_ctl restart -m
fast``) and stop for ~20 s while jobs run, end and wait in ``max_concurrent = 1``
queues, and while a client hammers the API. And SQLite: a database locked by another
process past the wait answers 503 too.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest

from jobyard.store.sql import base as store_base
from tests.integration.conftest import TERMINAL, Env, ServerFactory
from tests.support.pg import PgCluster

#: The programs of the jobs: short, exit 0, no file of the test's (jobs may be sandboxed).
SHORT = 0.3


@pytest.fixture
def outage_db(own_cluster: PgCluster) -> Iterator[str]:
    """A fresh database on ``own_cluster`` (the server migrates it)."""
    with own_cluster.fresh_database() as url:
        yield url


# -- helpers -------------------------------------------------------------------------------


@dataclass
class Answer:
    """One API answer seen by the hammer."""

    at: float
    route: str
    status: int
    code: str | None
    retry_after: str | None
    body: str


@dataclass
class Hammer:
    """A few clients calling read and write routes back to back, recording every answer."""

    env: Env
    answers: list[Answer] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _loop(self, client: httpx.AsyncClient, route: str, call: Any) -> None:
        while not self.stop.is_set():
            try:
                r: httpx.Response = await call(client)
            except httpx.HTTPError as exc:  # the server must answer, not drop us
                self.answers.append(Answer(time.monotonic(), route, 0, None, None, repr(exc)))
                await asyncio.sleep(0.05)
                continue
            code = None
            if r.status_code >= 400 and r.headers.get("content-type") == "application/json":
                code = r.json()["error"]["code"]
            self.answers.append(
                Answer(
                    time.monotonic(),
                    route,
                    r.status_code,
                    code,
                    r.headers.get("retry-after"),
                    r.text[:300],
                )
            )
            await asyncio.sleep(0.005)

    async def run(self) -> None:
        auth = {"Authorization": f"Bearer {self.env.token}"}
        stranger = {"Authorization": f"Bearer jy_{secrets.token_urlsafe(32)}"}
        async with (
            httpx.AsyncClient(base_url=self.env.url, headers=auth, timeout=30) as admin,
            httpx.AsyncClient(base_url=self.env.url, headers=stranger, timeout=30) as anon,
        ):
            await asyncio.gather(
                self._loop(admin, "list", lambda c: c.get("/api/v1/jobs?limit=5")),
                self._loop(admin, "readyz", lambda c: c.get("/readyz")),
                self._loop(
                    admin,
                    "submit",
                    lambda c: c.post("/api/v1/jobs", json={"command": ["/bin/true"], "hold": True}),
                ),
                self._loop(anon, "token lookup", lambda c: c.get("/api/v1/jobs?limit=1")),
            )

    def check(self) -> list[Answer]:
        """No 500, no dropped connection; every 503 well formed. Returns the 503s."""
        allowed = {"list": {200}, "readyz": {200}, "submit": {201}, "token lookup": {401}}
        wrong = [
            a
            for a in self.answers
            if a.status not in allowed[a.route] and a.status != 503  # never a 500
        ]
        assert not wrong, f"{len(wrong)} wrong answers, e.g. {wrong[:5]}"
        unavailable = [a for a in self.answers if a.status == 503]
        for a in unavailable:
            assert a.code == "database_unavailable", a
            assert a.retry_after is not None and int(a.retry_after) > 0, a
        return unavailable


async def _jobconfig(env: Env, name: str, command: list[str], max_concurrent: int) -> int:
    r = await env.client.post(
        "/api/v1/jobconfigs",
        json={"name": name, "command": command, "max_concurrent": max_concurrent},
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _run(env: Env, jobconfig_id: int) -> int:
    r = await env.client.post(f"/api/v1/jobconfigs/{jobconfig_id}/run")
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _ended_count(env: Env, ids: list[int]) -> int:
    ended = 0
    for job_id in ids:
        if (await env.client.get(f"/api/v1/jobs/{job_id}")).json()["status"] in TERMINAL:
            ended += 1
    return ended


async def _wait_all_ended(env: Env, ids: list[int], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending:
        for job_id in sorted(pending):
            r = await env.client.get(f"/api/v1/jobs/{job_id}")
            if r.status_code == 200 and r.json()["status"] in TERMINAL:
                pending.discard(job_id)
        assert time.monotonic() < deadline, f"jobs still not ended: {sorted(pending)[:10]}"
        if pending:
            await asyncio.sleep(0.2)
    return [(await env.client.get(f"/api/v1/jobs/{i}")).json() for i in ids]


async def _event_times(env: Env, job_id: int) -> dict[str, datetime]:
    items = (await env.client.get(f"/api/v1/jobs/{job_id}/events")).json()["items"]
    return {e["status"]: datetime.fromisoformat(e["at"]) for e in items}


async def _longest_queue_wait(env: Env, serial: list[list[int]], program_seconds: float) -> float:
    """Longest time a ``max_concurrent = 1`` queue stood idle with work waiting.

    From one job's program exit (its RUNNING event plus the program's duration) to the
    next job's acquisition (its INITIALIZING event), over consecutive jobs of a queue.
    """
    longest = 0.0
    for ids in serial:
        times = [await _event_times(env, i) for i in sorted(ids)]
        for before, after in itertools.pairwise(times):
            idle = (after["INITIALIZING"] - before["RUNNING"]).total_seconds() - program_seconds
            longest = max(longest, idle)
    return longest


def _summary(jobs: list[dict[str, Any]]) -> str:
    odd = [(j["id"], j["status"], j["status_reason"]) for j in jobs if j["status"] != "FINISHED"]
    return f"{len(odd)} of {len(jobs)} did not finish, e.g. {odd[:8]}"


@pytest.fixture
async def background() -> AsyncIterator[list[asyncio.Task[Any]]]:
    """Tasks of a test, cancelled at its end even if it fails half-way."""
    tasks: list[asyncio.Task[Any]] = []
    yield tasks
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- PostgreSQL restart -------------------------------------------------------------------


@pytest.mark.pg
@pytest.mark.slow
async def test_200_jobs_across_a_postgres_restart(
    outage_db: str,  # first: the database outlives the server
    start_server: ServerFactory,
    own_cluster: PgCluster,
    background: list[asyncio.Task[Any]],
) -> None:
    env = await start_server(database_url=outage_db, workers=12)
    command = ["/bin/sh", "-c", f"sleep {SHORT}"]
    serial = [await _jobconfig(env, f"serial-{i}", command, 1) for i in range(8)]
    parallel = [await _jobconfig(env, f"parallel-{i}", command, 0) for i in range(8)]
    by_queue: dict[int, list[int]] = {jc: [] for jc in serial + parallel}
    ids: list[int] = []
    for n in range(200):
        jc = serial[n % 8] if n % 2 == 0 else parallel[n % 8]
        job_id = await _run(env, jc)
        by_queue[jc].append(job_id)
        ids.append(job_id)

    # Restart while jobs run, end, and wait in their queues.
    deadline = time.monotonic() + 60
    while await _ended_count(env, ids[:80]) < 20:
        assert time.monotonic() < deadline, "jobs do not run"
        await asyncio.sleep(0.1)
    hammer = Hammer(env)
    hammering = asyncio.create_task(hammer.run())
    background.append(hammering)
    await asyncio.sleep(0.5)
    started = time.monotonic()
    await asyncio.to_thread(own_cluster.restart, "fast")
    restart_seconds = time.monotonic() - started
    await asyncio.sleep(3)
    hammer.stop.set()
    await hammering

    jobs = await _wait_all_ended(env, ids, timeout=180)
    assert all(j["status"] == "FINISHED" for j in jobs), _summary(jobs)
    during = [a for a in hammer.answers if started - 0.1 <= a.at <= started + restart_seconds + 1]
    assert during, "no API call was made during the restart"
    hammer.check()
    longest = await _longest_queue_wait(env, [by_queue[jc] for jc in serial], SHORT)
    assert longest <= restart_seconds + 2.0, (longest, restart_seconds)


# -- PostgreSQL outage --------------------------------------------------------------------


@pytest.mark.pg
@pytest.mark.slow
async def test_a_20_second_outage_fails_no_job(
    outage_db: str,  # first: the database outlives the server
    start_server: ServerFactory,
    own_cluster: PgCluster,
    background: list[asyncio.Task[Any]],
) -> None:
    # Leases far shorter than the outage: the sweep must not count the outage.
    env = await start_server(
        database_url=outage_db,
        workers=8,
        lease_seconds=3.0,
        heartbeat_seconds=0.5,
        maintenance_seconds=0.5,
    )
    outage = 20.0
    ticks = "i=0; while [ $i -lt 24 ]; do echo tick $i; sleep 1; i=$((i+1)); done"
    long_jc = await _jobconfig(env, "spans-the-outage", ["/bin/sh", "-c", ticks], 0)
    serial_jc = await _jobconfig(env, "serial", ["/bin/sh", "-c", "sleep 1"], 1)
    parallel_jc = await _jobconfig(env, "parallel", ["/bin/sh", "-c", "sleep 2"], 0)
    long_id = await _run(env, long_jc)
    await env.wait_status(long_id, {"RUNNING"}, timeout=30)
    serial_ids = [await _run(env, serial_jc) for _ in range(6)]
    parallel_ids = [await _run(env, parallel_jc) for _ in range(12)]
    await env.wait_status(serial_ids[0], {"RUNNING"}, timeout=30)
    ids = [long_id, *serial_ids, *parallel_ids]

    following = asyncio.Event()

    async def follow() -> str:
        async with env.client.stream(
            "GET", f"/api/v1/jobs/{long_id}/log", params={"follow": "true"}, timeout=120
        ) as r:
            assert r.status_code == 200
            following.set()
            return "".join([chunk async for chunk in r.aiter_text()])

    follower = asyncio.create_task(follow())
    background.append(follower)
    await asyncio.wait_for(following.wait(), 10)
    hammer = Hammer(env)
    hammering = asyncio.create_task(hammer.run())
    background.append(hammering)
    started = time.monotonic()
    await asyncio.to_thread(own_cluster.halt, "fast")
    try:
        await asyncio.sleep(1.0)
        ready = await env.client.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["error"]["code"] == "database_unavailable"
        assert "not ready" in ready.json()["error"]["message"]
        assert int(ready.headers["retry-after"]) > 0
        assert (await env.client.get("/healthz")).status_code == 200  # the process lives
        submit = await env.client.post("/api/v1/jobs", json={"command": ["/bin/true"]})
        assert submit.status_code == 503, submit.text
        assert "unreachable" in submit.json()["error"]["message"]
        await asyncio.sleep(max(0.0, started + outage - time.monotonic()))
    finally:
        await asyncio.to_thread(own_cluster.start)
    outage_seconds = time.monotonic() - started

    deadline = time.monotonic() + 10
    while (await env.client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, "/readyz did not recover"
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    hammer.stop.set()
    await hammering

    jobs = await _wait_all_ended(env, ids, timeout=120)
    assert all(j["status"] == "FINISHED" for j in jobs), _summary(jobs)
    unavailable = hammer.check()
    routes = {a.route for a in unavailable}
    assert routes == {"list", "readyz", "submit", "token lookup"}, routes
    longest = await _longest_queue_wait(env, [serial_ids], 1.0)
    assert longest <= outage_seconds + 2.0, (longest, outage_seconds)
    # The long job ran through the whole outage, its lease renewed once it was over.
    events = await _event_times(env, long_id)
    assert (events["FINISHED"] - events["RUNNING"]).total_seconds() >= 24
    # Its log was followed live through the outage, and the stream ended with the job.
    followed = await asyncio.wait_for(follower, 30)
    assert "tick 0" in followed and "tick 23" in followed, followed[-300:]


# -- SQLite locked ------------------------------------------------------------------------


async def test_a_locked_sqlite_database_answers_503(
    start_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store's wait for the write lock, shortened from 10 s to keep the test quick.
    monkeypatch.setattr(store_base, "_LOCK_WAIT_SECONDS", 0.5)
    env = await start_server(workers=0)
    path = env.settings.home / "jobyard.db"
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        r = await env.client.post("/api/v1/jobs", json={"command": ["/bin/true"], "hold": True})
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "database_unavailable"
        assert "locked" in r.json()["error"]["message"]
        assert int(r.headers["retry-after"]) > 0
        # Readers are not blocked by a writer (WAL): the server stays ready.
        assert (await env.client.get("/readyz")).status_code == 200
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    r = await env.client.post("/api/v1/jobs", json={"command": ["/bin/true"], "hold": True})
    assert r.status_code == 201, r.text
