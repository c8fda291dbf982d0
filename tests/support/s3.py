"""A real local S3 server for tests: moto's server mode in a subprocess.

``start_s3()`` runs ``python -m moto.server`` on a free loopback port and answers once
it serves requests; each test makes its own bucket (``S3Server.new_bucket``), so tests
sharing the server never see each other's objects.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.server import free_port

#: Credentials moto accepts (any value works); the region boto3 needs to sign.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3Server:
    """A running moto server: its endpoint URL and process."""

    endpoint: str
    proc: subprocess.Popen[bytes]
    buckets: list[str] = field(default_factory=list)

    def client(self) -> Any:
        """A boto3 S3 client of this server."""
        import boto3

        return boto3.session.Session(
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=AWS_ENV["AWS_DEFAULT_REGION"],
        ).client("s3", endpoint_url=self.endpoint)

    def new_bucket(self) -> str:
        """Create an empty bucket with a fresh name and answer its name."""
        name = f"jobyard-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object name in ``bucket`` under ``prefix``."""
        pages = self.client().get_paginator("list_objects_v2")
        return [
            str(o["Key"])
            for page in pages.paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])
        ]

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_s3(timeout: float = 30.0) -> S3Server:
    """Start moto's S3 server on a free port; raise if it does not answer in time."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **AWS_ENV},
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}")
        try:
            httpx.get(endpoint + "/", timeout=1.0)
            return S3Server(endpoint=endpoint, proc=proc)
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto server did not answer in time") from None
            time.sleep(0.05)
