"""Live logs through any replica with the blobs in a bucket: two ``jobyard up`` on one
PostgreSQL and one S3 bucket (a real local S3 server, moto). No replica holds a log on
its own disk that the other one needs: a remote worker's pieces and a local slot's
running log are objects of the bucket, served by both replicas while the job runs."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobyard.blobs.keys import log_key
from tests.integration.test_remote_workers import FAST, Api
from tests.support.remote_worker import create_worker_token, remote_worker
from tests.support.s3 import AWS_ENV, S3Server
from tests.support.server import RunningServer, jobyard_server

pytestmark = pytest.mark.pg

API = "/api/v1"
PREFIX = "jy"
#: Prints a line, stays running long enough for a reader on the other replica to see it,
#: then prints the last line.
SCRIPT = "echo first-line; sleep 6; echo last-line"


@contextlib.contextmanager
def two_replicas(
    tmp_path: Path, pg_url: str, s3: S3Server, *, workers_a: int = 0, extra: dict[str, str]
) -> Iterator[tuple[RunningServer, RunningServer, str]]:
    """Replicas A and B sharing the database, the key, the admin and the bucket (each has
    its own home: nothing on disk is shared)."""
    bucket = s3.new_bucket()
    env = {
        **FAST,
        **AWS_ENV,
        **extra,
        "JOBYARD_DATABASE_URL": pg_url,
        "JOBYARD_BLOBS_URL": f"s3://{bucket}/{PREFIX}",
        "JOBYARD_S3_ENDPOINT_URL": s3.endpoint,
    }
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    with jobyard_server(home_a, workers=workers_a, env=env) as a:
        home_b.mkdir()
        shutil.copy(home_a / "admin.token", home_b / "admin.token")
        shutil.copy(home_a / "secret.key", home_b / "secret.key")
        with jobyard_server(home_b, workers=0, env=env) as b:
            yield a, b, bucket


def follow_until(api: Api, job_id: int, needle: str, timeout: float = 30) -> tuple[str, str]:
    """Follow the log (``?follow=true``) until ``needle`` arrives; answer what was read
    and the job's status at that moment, then the rest of the stream until it ends."""
    deadline = time.monotonic() + timeout
    seen = ""
    status_then = ""
    with api.http.stream("GET", f"{API}/jobs/{job_id}/log", params={"follow": "true"}) as r:
        assert r.status_code == 200, r.read()
        for chunk in r.iter_text():
            seen += chunk
            if not status_then and needle in seen:
                status_then = api.job(job_id)["status"]
            assert time.monotonic() < deadline, f"{needle!r} not followed in time: {seen!r}"
    return seen, status_then


def no_pieces_left(s3: S3Server, bucket: str, job_id: int, timeout: float = 30) -> None:
    """The log is sealed: its object is there, its pieces gone (the seal runs in the
    background after the end report, so shortly after the job ended)."""
    deadline = time.monotonic() + timeout
    while True:
        names = s3.keys(bucket, f"{PREFIX}/logs/")
        pieces = [n for n in names if ".parts/" in n]
        if f"{PREFIX}/{log_key(job_id)}" in names and not pieces:
            return
        assert time.monotonic() < deadline, f"log of job {job_id} not sealed: {names}"
        time.sleep(0.1)


def test_a_remote_workers_log_is_live_on_the_other_replica(
    pg_url: str, tmp_path: Path, s3_server: S3Server
) -> None:
    """The worker talks to A; B serves its job's log while the job runs (followed, the
    console's stream), and the whole log once the job ended through A."""
    with two_replicas(tmp_path, pg_url, s3_server, extra={}) as (a, b, bucket):
        api_a, api_b = Api(a), Api(b)
        try:
            token = create_worker_token(a.url, a.token, "host")
            with remote_worker(a.url, token, tmp_path / "w", wait_registered=a.token):
                job = api_a.run(["/bin/sh", "-c", SCRIPT])
                api_a.wait(job["id"], {"RUNNING", "FINISHED"})
                text, status = follow_until(api_b, job["id"], "first-line")
                assert status == "RUNNING", (status, text)  # seen through B while it ran
                assert "last-line" in text  # the follower read on until the end
                done = api_b.wait(job["id"])
                assert done["status"] == "FINISHED", done
            whole_b = api_b.log(job["id"])
            assert "first-line" in whole_b and "last-line" in whole_b
            assert whole_b == api_a.log(job["id"])
            no_pieces_left(s3_server, bucket, job["id"])  # sealed through A
        finally:
            api_a.http.close()
            api_b.http.close()


def test_pieces_posted_to_alternating_replicas_make_one_log(
    pg_url: str, tmp_path: Path, s3_server: S3Server
) -> None:
    """A worker whose requests the load balancer spreads: each piece goes to the other
    replica, both serve the log so far after each piece, the end through B seals it."""
    with two_replicas(tmp_path, pg_url, s3_server, extra={}) as (a, b, bucket):
        api_a, api_b = Api(a), Api(b)
        token = create_worker_token(a.url, a.token, "balanced")
        auth = {"Authorization": f"Bearer {token}"}
        workers = [httpx.Client(base_url=s.url, headers=auth, timeout=30) for s in (a, b)]
        try:
            job = api_a.run(["/bin/true"])
            body = {"worker_id": "lb", "pool": "default", "free": 1, "wait_seconds": 5}
            r = workers[0].post(f"{API}/worker/acquire", json=body)
            assert r.status_code == 200, r.text
            (assignment,) = r.json()["assignments"]
            assert assignment["job"]["id"] == job["id"]
            base = f"{API}/worker/jobs/{job['id']}"
            running = {"worker_id": "lb", "pid": 1, "started_at": "2026-01-01T00:00:00Z"}
            assert workers[1].post(f"{base}/running", json=running).status_code == 200
            expected = b""
            for n in range(6):
                piece = f"piece {n} of the log\n".encode()
                params = {"worker_id": "lb", "offset": str(len(expected))}
                r = workers[n % 2].post(f"{base}/log", params=params, content=piece)
                assert r.status_code == 200, r.text
                expected += piece
                assert r.json() == {"size": len(expected)}
                for api in (api_a, api_b):
                    assert api.log(job["id"]).encode() == expected
            # A piece retried through the other replica changes nothing (a late first piece
            # answers its own end: resending from there changes nothing either); a gap is
            # refused.
            params = {"worker_id": "lb", "offset": "0"}
            r = workers[0].post(f"{base}/log", params=params, content=b"piece 0 of the log\n")
            assert r.status_code == 200, r.text
            params = {"worker_id": "lb", "offset": str(r.json()["size"])}
            r = workers[1].post(f"{base}/log", params=params, content=expected[19:])
            assert r.json() == {"size": len(expected)}
            for api in (api_a, api_b):
                assert api.log(job["id"]).encode() == expected
            params = {"worker_id": "lb", "offset": "19"}
            r = workers[0].post(f"{base}/log", params=params, content=expected[19:40])
            assert r.json() == {"size": len(expected)}
            params = {"worker_id": "lb", "offset": str(len(expected) + 5)}
            r = workers[1].post(f"{base}/log", params=params, content=b"x")
            assert r.status_code == 409
            assert r.json()["error"]["details"]["size"] == len(expected)
            end = {"worker_id": "lb", "status": "FINISHED", "exit_code": 0}
            r = workers[1].post(f"{base}/end", json=end)
            assert r.status_code == 200, r.text
            no_pieces_left(s3_server, bucket, job["id"])
            for api in (api_a, api_b):
                assert api.log(job["id"]).encode() == expected
        finally:
            for client in workers:
                client.close()
            api_a.http.close()
            api_b.http.close()


def test_a_local_slots_running_log_is_live_on_the_other_replica(
    pg_url: str, tmp_path: Path, s3_server: S3Server
) -> None:
    """A job on a local slot of A: its running log reaches B as pieces (every
    JOBYARD_S3_LOG_PIECE_SECONDS), and B serves the whole log once it ended."""
    extra = {"JOBYARD_S3_LOG_PIECE_SECONDS": "0.2"}
    with two_replicas(tmp_path, pg_url, s3_server, workers_a=1, extra=extra) as (a, b, bucket):
        api_a, api_b = Api(a), Api(b)
        try:
            job = api_b.run(["/bin/sh", "-c", SCRIPT])
            api_b.wait(job["id"], {"RUNNING", "FINISHED"})
            text, status = follow_until(api_b, job["id"], "first-line")
            assert status == "RUNNING", (status, text)
            assert "last-line" in text
            assert api_b.wait(job["id"])["status"] == "FINISHED"
            assert api_b.log(job["id"]) == api_a.log(job["id"])
            no_pieces_left(s3_server, bucket, job["id"])
        finally:
            api_a.http.close()
            api_b.http.close()
