"""``jobyard up`` with its blobs in an S3 bucket (a real local S3 server, moto).

One job goes the whole way: its package is uploaded to the bucket, a payload is attached,
the job runs from them, writes a line to its log while it runs (followed live from the
worker host's spool) and an output file; the log and the output are read back through
the API from the bucket, a rerun copies the payload inside the bucket, and a retention
purge removes the job's blobs from the bucket.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobyard.blobs.keys import log_key, output_key, package_key, payload_key
from tests.integration.helpers import make_zip
from tests.support.s3 import AWS_ENV, S3Server
from tests.support.server import RunningServer, jobyard_server

API = "/api/v1"
PREFIX = "jy/blobs"
#: Prints the payload, stays running a little (its log is followed meanwhile), then
#: leaves an output file.
RUN_SH = """\
echo "started $(cat "$JOB_PAYLOAD_DIR/data.txt")"
echo "aws key: ${AWS_SECRET_ACCESS_KEY:-none}"
sleep 1.5
echo "computed" > "$LOCAL_JOB_OUT_DIR/result.txt"
echo "finished"
"""


@pytest.fixture
def s3_home(tmp_path: Path, s3_server: S3Server) -> Iterator[tuple[RunningServer, str]]:
    bucket = s3_server.new_bucket()
    env = {
        **AWS_ENV,
        "JOBYARD_BLOBS_URL": f"s3://{bucket}/{PREFIX}",
        "JOBYARD_S3_ENDPOINT_URL": s3_server.endpoint,
        "JOBYARD_RETENTION__ENABLED": "false",
        "JOBYARD_RETENTION__MAX_JOBS_PER_JOBCONFIG": "1",
    }
    with jobyard_server(tmp_path / "home", workers=2, env=env) as server:
        yield server, bucket


def _wait(client: httpx.Client, job_id: int, want: set[str], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"{API}/jobs/{job_id}").json()
        if job["status"] in want:
            return dict(job)
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} stuck in {job['status']}")
        time.sleep(0.05)


def _objects(s3: S3Server, bucket: str) -> set[str]:
    return {k.removeprefix(PREFIX + "/") for k in s3.keys(bucket, PREFIX + "/")}


def test_a_job_runs_from_and_into_the_bucket(
    s3_home: tuple[RunningServer, str], s3_server: S3Server
) -> None:
    server, bucket = s3_home
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        archive = make_zip({"run.sh": RUN_SH})
        r = client.post(f"{API}/packages", files={"file": ("job.zip", archive)})
        assert r.status_code == 201, r.text
        sha = r.json()["sha256"]
        assert package_key(sha) in _objects(s3_server, bucket)

        body = {"name": "s3job", "package_id": r.json()["id"], "command": ["/bin/sh", "run.sh"]}
        r = client.post(f"{API}/jobconfigs", json=body)
        assert r.status_code == 201, r.text
        jc = r.json()["id"]

        def submit() -> int:
            r = client.post(f"{API}/jobconfigs/{jc}/run", json={"hold": True})
            assert r.status_code == 201, r.text
            job_id = int(r.json()["id"])
            files = {"file": ("data.txt", b"with-payload")}
            r = client.post(f"{API}/jobs/{job_id}/payload", files=files)
            assert r.status_code in (200, 201), r.text
            r = client.post(f"{API}/jobs/{job_id}/release")
            assert r.status_code == 200, r.text
            return job_id

        job_id = submit()
        assert payload_key(job_id, "data.txt") in _objects(s3_server, bucket)

        # While it runs, its log is followed from the worker host's spool, not the bucket.
        _wait(client, job_id, {"RUNNING"})
        deadline = time.monotonic() + 20
        while "started with-payload" not in client.get(f"{API}/jobs/{job_id}/log").text:
            assert time.monotonic() < deadline, "the running job's log never showed its line"
            time.sleep(0.05)
        assert log_key(job_id) not in _objects(s3_server, bucket)

        job = _wait(client, job_id, {"FINISHED", "FAILED", "CANCELLED", "ABORTED"})
        assert job["status"] == "FINISHED", job
        log = client.get(f"{API}/jobs/{job_id}/log")
        assert log.status_code == 200
        assert "started with-payload" in log.text and "finished" in log.text
        assert "aws key: none" in log.text  # the server's bucket credentials stay out of jobs
        objects = _objects(s3_server, bucket)
        assert log_key(job_id) in objects
        assert output_key(job_id, "result.txt") in objects
        # The spool of the log is gone: the bucket holds the log now.
        spool = server.home / "blobs" / "spool"
        assert not list(spool.rglob("*.log"))

        r = client.get(f"{API}/jobs/{job_id}/outputs/result.txt")
        assert r.status_code == 200, r.text
        assert r.content == b"computed\n"
        assert r.headers["content-length"] == "9"
        assert 'filename="result.txt"' in r.headers["content-disposition"]

        # A rerun copies the payload to the new job's key inside the bucket.
        r = client.post(f"{API}/jobs/{job_id}/rerun", json={})
        assert r.status_code == 201, r.text
        again = int(r.json()["id"])
        assert _wait(client, again, {"FINISHED", "FAILED"})["status"] == "FINISHED"
        assert "started with-payload" in client.get(f"{API}/jobs/{again}/log").text

        # Retention keeps one job per jobconfig: the first job's blobs leave the bucket.
        r = client.post(f"{API}/admin/purge", json={})
        assert r.status_code == 200, r.text
        assert r.json()["jobs"] == 1, r.json()
        objects = _objects(s3_server, bucket)
        assert not {k for k in objects if f"/{job_id}/" in k or k.endswith(f"/{job_id}.log")}
        assert log_key(again) in objects and output_key(again, "result.txt") in objects
        assert client.get(f"{API}/jobs/{job_id}").status_code == 404


def test_a_missing_bucket_answers_503_not_500(tmp_path: Path, s3_server: S3Server) -> None:
    env = {
        **AWS_ENV,
        "JOBYARD_BLOBS_URL": "s3://no-such-bucket-at-all/x",
        "JOBYARD_S3_ENDPOINT_URL": s3_server.endpoint,
    }
    with jobyard_server(tmp_path / "home", workers=0, env=env) as server:
        headers = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            r = client.post(f"{API}/packages", files={"file": ("a.sh", b"echo hi\n")})
            assert r.status_code == 503, r.text
            error = r.json()["error"]
            assert error["code"] == "blobs_unavailable"
            assert "does not exist" in error["message"]
            assert "Traceback" not in r.text


def test_an_endpoint_down_answers_503_with_retry_after(tmp_path: Path) -> None:
    from tests.support.server import free_port

    env = {
        **AWS_ENV,
        "AWS_MAX_ATTEMPTS": "1",
        "JOBYARD_BLOBS_URL": "s3://bucket/x",
        "JOBYARD_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
    }
    with jobyard_server(tmp_path / "home", workers=0, env=env) as server:
        headers = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            r = client.post(f"{API}/packages", files={"file": ("a.sh", b"echo hi\n")})
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "blobs_unavailable"
            assert r.headers.get("retry-after") == "2"


def test_a_log_left_in_the_spool_is_uploaded_at_the_next_start(
    tmp_path: Path, s3_server: S3Server
) -> None:
    """A crash (or an unreachable bucket) at a job's end leaves its log in the spool: the
    next start uploads the logs of ended jobs, and leaves the server running."""
    bucket = s3_server.new_bucket()
    env = {
        **AWS_ENV,
        "JOBYARD_BLOBS_URL": f"s3://{bucket}/{PREFIX}",
        "JOBYARD_S3_ENDPOINT_URL": s3_server.endpoint,
    }
    home = tmp_path / "home"
    with jobyard_server(home, workers=1, env=env) as server:
        headers = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            r = client.post(f"{API}/jobs", json={"command": ["/bin/sh", "-c", "echo ran"]})
            assert r.status_code == 201, r.text
            job_id = int(r.json()["id"])
            assert _wait(client, job_id, {"FINISHED"})["status"] == "FINISHED"
    # As if the server had died before the upload: the log is only in the spool.
    s3_server.client().delete_object(Bucket=bucket, Key=f"{PREFIX}/{log_key(job_id)}")
    spooled = home / "blobs" / "spool" / log_key(job_id)
    spooled.parent.mkdir(parents=True, exist_ok=True)
    spooled.write_bytes(b"ran (spooled)\n")
    with jobyard_server(home, workers=1, env=env) as server:
        assert not spooled.exists()
        assert log_key(job_id) in _objects(s3_server, bucket)
        headers = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            assert client.get(f"{API}/jobs/{job_id}/log").text == "ran (spooled)\n"
