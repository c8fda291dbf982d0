"""Maintenance across three servers on one PostgreSQL: one leader, replaced when it dies.

A (``jobyard up``, one slot, the first leader), B and C (``jobyard server``). A job runs
on A; A is killed (``kill -9``) while leading: B or C must take the maintenance over
within a few seconds, end the job FAILED (``worker lost``) once its lease expired, and
submit its retry exactly once. Then the new leader stops cleanly and hands over at once.
"""

from __future__ import annotations

import contextlib
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.pg import PgCluster
from tests.support.realtime import wait_for
from tests.support.server import RunningServer, jobyard_server

pytestmark = pytest.mark.pg

MAINTENANCE_SECONDS = 2.0
LEASE_SECONDS = 4.0


def _rows(db_url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return list(conn.execute(query).fetchall())


def _leader_pid(db_url: str) -> int | None:
    """The pid of the server holding an unexpired maintenance leadership, if any."""
    rows = _rows(
        db_url,
        "SELECT holder FROM leaders WHERE name = 'maintenance' AND expires_at > now()",
    )
    if not rows:
        return None
    host, pid, _ = str(rows[0][0]).split(":")
    assert host == socket.gethostname()
    return int(pid)


def test_a_dead_leader_is_replaced_and_its_work_done_exactly_once(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    name = pg_cluster.create_database()
    db_url = pg_cluster.url(name)
    env = {
        "JOBYARD_DATABASE_URL": db_url,
        "JOBYARD_BLOBS_DIR": str(tmp_path / "shared-blobs"),
        "JOBYARD_MAINTENANCE_SECONDS": str(MAINTENANCE_SECONDS),
        "JOBYARD_LEASE_SECONDS": str(LEASE_SECONDS),
        "JOBYARD_HEARTBEAT_SECONDS": "1",
        "JOBYARD_RETENTION__ENABLED": "false",
    }
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(jobyard_server(tmp_path / "a", workers=1, env=env))
        wait_for(lambda: _leader_pid(db_url) == a.process.pid, 10, "A to lead maintenance")
        servers: dict[int, RunningServer] = {a.process.pid: a}
        for home in (tmp_path / "b", tmp_path / "c"):
            home.mkdir()
            (home / "admin.token").write_text(a.token + "\n")
            s = stack.enter_context(jobyard_server(home, env=env, command_name="server"))
            servers[s.process.pid] = s
        headers = {"Authorization": f"Bearer {a.token}"}
        b = servers[list(servers)[1]]
        api = stack.enter_context(httpx.Client(base_url=b.url, headers=headers, timeout=30))
        jc = api.post(
            "/api/v1/jobconfigs",
            json={
                "name": "lost",
                "command": ["sleep", "40"],
                "retries": 1,
                "retry_delay_seconds": 0,
            },
        )
        assert jc.status_code == 201, jc.text
        run = api.post(f"/api/v1/jobconfigs/{jc.json()['id']}/run")
        assert run.status_code == 201, run.text
        job_id = run.json()["id"]

        def job() -> dict[str, Any]:
            return dict(api.get(f"/api/v1/jobs/{job_id}").json())

        wait_for(lambda: job()["status"] == "RUNNING", 30, "the job to run on A")
        assert _leader_pid(db_url) == a.process.pid

        # kill -9 the leader, which also holds the job (its worker process dies with it).
        killed_at = time.monotonic()
        a.process.kill()
        a.process.wait(10)
        new = wait_for(
            lambda: (pid := _leader_pid(db_url)) not in (None, a.process.pid) and pid,
            15,
            "B or C to take the maintenance over",
        )
        handover = time.monotonic() - killed_at
        ended = wait_for(lambda: (j := job())["status"] == "FAILED" and j, 30, "worker lost")
        failed_after = time.monotonic() - killed_at
        print(
            f"kill -9 of the leader: new leader after {handover:.1f} s; "
            f"its job FAILED after {failed_after:.1f} s (lease {LEASE_SECONDS} s)"
        )
        assert handover < 2 * MAINTENANCE_SECONDS + MAINTENANCE_SECONDS + 1.0, handover
        assert ended["status_reason"].startswith("worker lost"), ended
        # The retry policy applied once: one new job, QUEUED (no slots are left).
        wait_for(
            lambda: _rows(db_url, "SELECT count(*) FROM job_retries")[0][0] == 1,
            10,
            "the retry",
        )

        # A clean stop of the new leader hands over at once (no TTL to wait for).
        stopped_at = time.monotonic()
        servers[new].process.terminate()
        servers[new].process.wait(30)
        last = next(pid for pid in servers if pid not in (a.process.pid, new))
        wait_for(lambda: _leader_pid(db_url) == last, 10, "the last server to lead")
        clean_handover = time.monotonic() - stopped_at
        print(f"clean stop of the leader: new leader after {clean_handover:.1f} s")
        assert clean_handover < MAINTENANCE_SECONDS + 1.5, clean_handover

        # Let the last leader sweep a few times: nothing is done twice.
        (since,) = _rows(db_url, "SELECT now()")[0]
        wait_for(
            lambda: (
                _rows(db_url, "SELECT expires_at FROM leaders WHERE name = 'lease-clock'")[0][0]
                > since + timedelta(seconds=2 * MAINTENANCE_SECONDS)
            ),
            15,
            "more sweeps",
        )
    failed_events = _rows(
        db_url, f"SELECT count(*) FROM job_events WHERE job_id = {job_id} AND status = 'FAILED'"
    )
    assert failed_events[0][0] == 1
    assert _rows(db_url, "SELECT count(*) FROM job_retries")[0][0] == 1
    assert _rows(db_url, "SELECT count(*) FROM jobs")[0][0] == 2
    pg_cluster.drop_database(name)
