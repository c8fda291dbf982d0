"""Worker protocol versions against a real ``jobyard up``: a real ``jobyard worker``
speaking a protocol the server does not serve (played through the test-only
``JOBYARD_TEST_WORKER_PROTOCOL``) exits non-zero at once with the server's message
saying what to upgrade, and is never registered; a worker of an older release inside
the range is served, and the console flags its version."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from jobyard import __version__
from jobyard.core.workerprotocol import PROTOCOL_MIN, PROTOCOL_TEST_ENV, PROTOCOL_VERSION
from tests.support.cli import ok, run_cli
from tests.support.server import RunningServer, server_fixture

server = server_fixture(scope="module", workers=0)

PASSWORD = "protocol-admin-1"


def _token(server: RunningServer, tmp_path: Path) -> Path:
    made = ok(run_cli(["workers", "token", "create", "proto-hosts"], server.client_env(), tmp_path))
    path = tmp_path / "token"
    path.write_text(made.stdout.strip())
    os.chmod(path, 0o600)
    return path


def _worker_ids(server: RunningServer) -> list[str]:
    r = httpx.get(
        f"{server.url}/api/v1/workers",
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return [w["id"] for w in r.json()["items"]]


@pytest.mark.parametrize(
    ("protocol", "advice"),
    [
        (PROTOCOL_MIN - 1, "upgrade jobyard on the worker host"),
        (PROTOCOL_VERSION + 1, "upgrade every server"),
    ],
)
def test_a_worker_outside_the_range_exits_with_what_to_upgrade(
    server: RunningServer, tmp_path: Path, protocol: int, advice: str
) -> None:
    token = _token(server, tmp_path)
    before = _worker_ids(server)
    env = server.client_env(**{PROTOCOL_TEST_ENV: str(protocol)})
    args = ["worker", "--server", server.url, "--token-file", str(token)]
    args += ["--home", str(tmp_path / "home")]
    try:
        result = run_cli(args, env, tmp_path)
    except subprocess.TimeoutExpired:  # pragma: no cover - the failure this test guards
        pytest.fail("the refused worker kept retrying instead of exiting")
    assert result.returncode == 4, result.stderr
    assert "the server refused this worker" in result.stderr
    assert f"speaks worker protocol {protocol}" in result.stderr
    assert advice in result.stderr and __version__ in result.stderr
    assert _worker_ids(server) == before  # never registered, so never given a job


def test_an_older_release_inside_the_range_is_served_and_flagged(
    server: RunningServer, tmp_path: Path
) -> None:
    token = _token(server, tmp_path).read_text()
    hello = {
        "worker_id": "old-release",
        "host": "h",
        "pid": 1,
        "version": "0.0.9 (CPython)",  # a release from before protocols were numbered
        "pool": "default",
        "slots": 1,
        "started_at": "2026-01-01T00:00:00+00:00",
    }
    r = httpx.post(
        f"{server.url}/api/v1/worker/heartbeat",
        json=hello,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["protocol_min"] == PROTOCOL_MIN
    assert answer["protocol_max"] == PROTOCOL_VERSION
    assert answer["server_version"] == __version__
    refused = httpx.post(
        f"{server.url}/api/v1/worker/heartbeat",
        json={**hello, "worker_id": "future", "protocol": PROTOCOL_VERSION + 1},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "worker_protocol_unsupported"
    assert error["details"]["protocol_max"] == PROTOCOL_VERSION

    current = {**hello, "worker_id": "current", "version": f"{__version__} (CPython)"}
    r = httpx.post(
        f"{server.url}/api/v1/worker/heartbeat",
        json={**current, "protocol": PROTOCOL_VERSION},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text

    admin = {"Authorization": f"Bearer {server.token}"}
    body = {"name": "proto-admin", "role": "admin", "password": PASSWORD}
    r = httpx.post(f"{server.url}/api/v1/users", json=body, headers=admin, timeout=10)
    assert r.status_code == 201, r.text
    with httpx.Client(base_url=server.url, timeout=30, headers={"Origin": server.url}) as c:
        r = c.post("/login", data={"name": "proto-admin", "password": PASSWORD})
        assert r.status_code == 303, r.text
        page = c.get("/workers")
    assert page.status_code == 200, page.text
    row = re.search(r"<tr><td>old-release</td>.*?</tr>", page.text, re.S)
    assert row is not None, page.text
    assert "0.0.9 (CPython)" in row.group(0)
    assert f"differs from this server's {__version__}" in row.group(0)
    same = re.search(r"<tr><td>current</td>.*?</tr>", page.text, re.S)
    assert same is not None and "differs" not in same.group(0)
