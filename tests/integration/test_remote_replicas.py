"""Remote workers and replicas on PostgreSQL: two ``jobyard up`` sharing one database
and one blobs folder; the worker talks to one, jobs are submitted on the other."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.integration.test_remote_workers import FAST, Api
from tests.support.remote_worker import create_worker_token, remote_worker
from tests.support.server import jobyard_server

pytestmark = pytest.mark.pg

#: Within the long-poll's periodic re-check (5 s) with a margin for a loaded machine.
PICKUP_SECONDS = 15.0


def test_a_job_submitted_on_one_replica_runs_on_a_worker_of_the_other(
    pg_url: str, tmp_path: Path
) -> None:
    shared = {**FAST, "JOBYARD_DATABASE_URL": pg_url, "JOBYARD_BLOBS_DIR": str(tmp_path / "blobs")}
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    with jobyard_server(home_a, workers=0, env=shared) as a:
        home_b.mkdir()
        shutil.copy(home_a / "admin.token", home_b / "admin.token")  # one database, one admin
        shutil.copy(home_a / "secret.key", home_b / "secret.key")  # replicas share the key
        with jobyard_server(home_b, workers=0, env=shared) as b:
            api_a, api_b = Api(a), Api(b)
            try:
                token = create_worker_token(b.url, b.token, "host")
                with remote_worker(a.url, token, tmp_path / "w", wait_registered=a.token):
                    time.sleep(1.0)  # the worker is long-polling replica A now
                    submitted = time.monotonic()
                    script = 'echo first; sleep 2; echo bye > "$LOCAL_JOB_OUT_DIR/r.txt"'
                    job = api_b.run(["/bin/sh", "-c", script])
                    api_b.wait(job["id"], {"RUNNING", "FINISHED"}, timeout=PICKUP_SECONDS)
                    assert time.monotonic() - submitted < PICKUP_SECONDS
                    api_b.wait_log(job["id"], "first")  # the live log, read on replica B
                    done = api_b.wait(job["id"])
                    assert done["status"] == "FINISHED", done
                    r = api_b.http.get(f"/api/v1/jobs/{job['id']}/outputs/r.txt")
                    assert r.status_code == 200 and r.text == "bye\n"
                    assert "first" in api_a.log(job["id"])
            finally:
                api_a.http.close()
                api_b.http.close()
