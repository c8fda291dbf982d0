"""``jobyard workers token create|list|revoke`` against a real ``jobyard up``, and the
token working for ``jobyard worker`` until it is revoked."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.cli import as_json, ok, run_cli
from tests.support.server import RunningServer, server_fixture

server = server_fixture(scope="module", workers=0)

HELLO = {
    "worker_id": "cli-test",
    "host": "h",
    "pid": 1,
    "version": "v",
    "pool": "gpu",
    "slots": 1,
    "started_at": "2026-01-01T00:00:00+00:00",
}


def _heartbeat(server: RunningServer, token: str, pool: str = "gpu") -> int:
    r = httpx.post(
        f"{server.url}/api/v1/worker/heartbeat",
        json={**HELLO, "pool": pool},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    return r.status_code


def test_create_list_and_revoke(server: RunningServer, tmp_path: Path) -> None:
    env = server.client_env()
    created = ok(
        run_cli(["workers", "token", "create", "gpu-hosts", "--pool", "gpu"], env, tmp_path)
    )
    value = created.stdout.strip()
    assert value.startswith("jyw_") and "\n" not in value  # only the value on stdout
    assert "shown this once" in created.stderr
    assert _heartbeat(server, value) == 200
    assert _heartbeat(server, value, pool="cpu") == 403
    listed = as_json(run_cli(["workers", "token", "list", "--json"], env, tmp_path))
    (token,) = [t for t in listed if t["name"] == "gpu-hosts"]
    assert token["pool"] == "gpu" and token["revoked"] is False and "token" not in token
    table = ok(run_cli(["workers", "token", "list"], env, tmp_path))
    assert "gpu-hosts" in table.stdout and value not in table.stdout
    revoked = ok(run_cli(["workers", "token", "revoke", str(token["id"])], env, tmp_path))
    assert "revoked" in revoked.stderr
    listed = as_json(run_cli(["workers", "token", "list", "--json"], env, tmp_path))
    assert [t["revoked"] for t in listed if t["id"] == token["id"]] == [True]
    missing = run_cli(["workers", "token", "revoke", "999999"], env, tmp_path)
    assert missing.returncode == 4 and "not found" in missing.stderr


def test_a_worker_without_a_token_says_how_to_get_one(
    server: RunningServer, tmp_path: Path
) -> None:
    result = run_cli(["worker", "--server", server.url], server.client_env(), tmp_path)
    assert result.returncode == 5
    assert "jobyard workers token create" in result.stderr
