"""The whole server on PostgreSQL, alone and as two replicas sharing one database."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from tests.integration.conftest import Env, ServerFactory


async def test_lifecycle_on_postgres(pg_url: str, start_server: ServerFactory) -> None:
    env = await start_server(database_url=pg_url)
    job = await env.run_command(["sh", "-c", "echo on-postgres"])
    done = await env.wait_status(job["id"])
    assert done["status"] == "FINISHED"
    events = (await env.client.get(f"/api/v1/jobs/{job['id']}/events")).json()["items"]
    assert [e["status"] for e in events] == [
        "SEQUENCED",
        "QUEUED",
        "INITIALIZING",
        "RUNNING",
        "FINISHED",
    ]
    assert "out on-postgres" in (await env.client.get(f"/api/v1/jobs/{job['id']}/log")).text
    held = (await env.client.post("/api/v1/jobs", json={"command": ["true"], "hold": True})).json()
    assert (await env.client.post(f"/api/v1/jobs/{held['id']}/cancel")).json()["status"] == (
        "CANCELLED"
    )


def _max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    points = sorted(
        [(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda p: (p[0], p[1])
    )
    best = cur = 0
    for _, delta in points:
        cur += delta
        best = max(best, cur)
    return best


async def test_two_replicas_keep_the_concurrency_limit(
    pg_url: str, start_server: ServerFactory, tmp_path: Path
) -> None:
    blobs = tmp_path / "shared-blobs"
    a = await start_server(database_url=pg_url, blobs_dir=blobs, workers=3)
    b = await start_server(database_url=pg_url, blobs_dir=blobs, workers=3, token=a.token)
    jc = (
        await a.client.post(
            "/api/v1/jobconfigs",
            json={
                "name": "shared",
                "command": ["sleep", "0.3"],
                "max_concurrent": 2,
            },
        )
    ).json()
    # Which replica's slots win a claim is a race (the replica where a job ends wakes its
    # own slots first); submit rounds of 10 until the slots of both have run jobs.
    homes: dict[str, str] = {}
    ids: list[int] = []
    done: list[dict[str, Any]] = []
    servers: set[str] = set()
    for _ in range(5):
        batch: list[int] = []
        for i in range(10):
            env: Env = a if i % 2 == 0 else b
            r = await env.client.post(f"/api/v1/jobconfigs/{jc['id']}/run")
            assert r.status_code == 201, r.text
            batch.append(r.json()["id"])
        ids += batch
        done += [await a.wait_status(i, timeout=60) for i in batch]
        # Each replica runs its slots in worker processes of their own: tell replicas
        # apart by the home their workers registered with.
        homes |= {w.id: w.home for w in await a.runtime.ctx.store.workers_list()}
        servers = {homes[j["worker_id"]] for j in done}
        if len(servers) == 2:
            break
    assert all(j["status"] == "FINISHED" for j in done), done
    held = [
        (datetime.fromisoformat(j["acquired_at"]), datetime.fromisoformat(j["ended_at"]))
        for j in done
    ]
    assert _max_overlap(held) <= 2
    assert len(servers) == 2, f"both replicas should have run jobs: {servers}"
    queued = sorted(done, key=lambda j: j["queued_at"])
    assert [j["id"] for j in queued] == sorted(ids), "jobs must be queued in submission order"
    for job_id in (ids[0], ids[1]):  # logs are readable through either replica
        assert (await b.client.get(f"/api/v1/jobs/{job_id}/log")).status_code == 200
        assert (await a.client.get(f"/api/v1/jobs/{job_id}/log")).status_code == 200
