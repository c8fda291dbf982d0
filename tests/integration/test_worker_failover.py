"""A remote worker given several replicas keeps its jobs through the death of the one
it talks to: ``jobyard worker --server A --server B`` moves to the other replica when
a call fails, so its leases go on being renewed and its running job ends FINISHED, not
FAILED ``worker lost``.

Two ``jobyard server`` replicas on one PostgreSQL database and one shared blobs folder;
the job runs for several leases while first B, then A is killed (``SIGKILL``) and kept
down past the lease time, then restarted: whichever of them the worker talks to dies
(A, its first, unless it moved to B already).
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fleet import Member, replica, wait_healthy, worker

pytestmark = pytest.mark.pg

LEASE_SECONDS = 3.0
#: Long enough for both replicas to be killed, kept down past the lease and restarted.
SCRIPT = "echo first-line; sleep 30; echo last-line"
TERMINAL = {"FINISHED", "ERROR", "FAILED", "CANCELLED"}


@contextlib.contextmanager
def _two_replicas(tmp_path: Path, pg_url: str) -> Iterator[list[tuple[Member, str]]]:
    env = {
        "JOBYARD_DATABASE_URL": pg_url,
        "JOBYARD_BLOBS_URL": (tmp_path / "blobs").as_uri(),
        "JOBYARD_SECRET_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "JOBYARD_LEASE_SECONDS": str(LEASE_SECONDS),
        "JOBYARD_HEARTBEAT_SECONDS": "0.5",
        "JOBYARD_MAINTENANCE_SECONDS": "0.5",
    }
    (tmp_path / "blobs").mkdir()
    replicas = [replica(tmp_path, name, env) for name in ("a", "b")]
    try:
        for member, url in replicas:
            member.start()
            wait_healthy(member, url)
        yield replicas
    finally:
        for member, _ in replicas:
            member.stop()


def _admin(member: Member) -> str:
    return (Path(member.env["JOBYARD_HOME"]) / "admin.token").read_text().strip()


def _call(clients: list[httpx.Client], method: str, path: str, **kw: Any) -> httpx.Response:
    """The first answer of a live replica (one of them may be down)."""
    deadline = time.monotonic() + 60
    while True:
        for client in clients:
            with contextlib.suppress(httpx.TransportError):
                r = client.request(method, path, **kw)
                if r.status_code < 500:
                    return r
        assert time.monotonic() < deadline, f"{method} {path}: no replica answered"
        time.sleep(0.2)


def _status(clients: list[httpx.Client], job_id: int) -> str:
    r = _call(clients, "GET", f"/api/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


def test_a_worker_moves_to_a_live_replica_and_finishes_its_job(tmp_path: Path, pg_url: str) -> None:
    with _two_replicas(tmp_path, pg_url) as replicas:
        (a, url_a), (b, url_b) = replicas
        headers = {"Authorization": f"Bearer {_admin(a)}"}
        clients = [httpx.Client(base_url=u, headers=headers, timeout=30) for u in (url_a, url_b)]
        r = _call(clients, "POST", "/api/v1/worker-tokens", json={"name": "both"})
        assert r.status_code == 201, r.text
        member = worker(
            tmp_path, "w", server=[url_a, url_b], token=r.json()["token"], pool="default", slots=1
        )
        member.start()
        try:
            r = _call(clients, "POST", "/api/v1/jobs", json={"command": ["/bin/sh", "-c", SCRIPT]})
            assert r.status_code == 201, r.text
            job_id = int(r.json()["id"])
            deadline = time.monotonic() + 60
            while _status(clients, job_id) != "RUNNING":
                assert time.monotonic() < deadline, member.tail()
                time.sleep(0.1)
            # Each replica in turn dies and stays down past the lease: the worker talks to
            # one of them at each moment, so it loses its server once at least.
            for victim, url in ((b, url_b), (a, url_a)):
                victim.kill()
                down_until = time.monotonic() + 2 * LEASE_SECONDS
                while time.monotonic() < down_until:
                    status = _status(clients, job_id)
                    assert status in ("RUNNING", "FINISHED"), (
                        f"job {job_id} {status}\n{member.tail()}"
                    )
                    time.sleep(0.2)
                victim.start()
                wait_healthy(victim, url)
            deadline = time.monotonic() + 60
            while (status := _status(clients, job_id)) not in TERMINAL:
                assert time.monotonic() < deadline, member.tail()
                time.sleep(0.2)
            job = _call(clients, "GET", f"/api/v1/jobs/{job_id}").json()
            assert status == "FINISHED", (job, member.tail())
            log = _call(clients, "GET", f"/api/v1/jobs/{job_id}/log").text
            assert "first-line" in log and "last-line" in log, log
            assert "moving to" in member.log.read_text(), member.tail()
        finally:
            member.stop()
            for client in clients:
                client.close()
