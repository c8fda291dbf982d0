"""``jobyard login|logout``, ``jobyard users ...`` and ``jobyard tokens ...`` as subprocesses
against a real ``jobyard up``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.cli import as_json, ok, run_cli
from tests.support.server import RunningServer, clean_env, server_fixture

server = server_fixture(scope="module", workers=1)

PASSWORD = "a long enough password"


@pytest.fixture
def admin_env(server: RunningServer) -> dict[str, str]:
    """The admin token of ``jobyard up``."""
    return server.client_env()


@pytest.fixture
def user_env(server: RunningServer, tmp_path: Path) -> dict[str, str]:
    """No token at all: whatever ``jobyard login`` saves under a private config folder."""
    home = tmp_path / "no-home"
    home.mkdir()
    return clean_env(
        {
            "JOBYARD_SERVER": server.url,
            "JOBYARD_HOME": str(home),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        }
    )


def test_users_and_login_tokens_logout(
    server: RunningServer, admin_env: dict[str, str], user_env: dict[str, str], tmp_path: Path
) -> None:
    created = as_json(
        run_cli(
            ["users", "add", "alice", "--password-stdin", "--json"], admin_env, tmp_path, PASSWORD
        )
    )
    assert (created["name"], created["role"], created["has_password"]) == ("alice", "user", True)
    listed = as_json(run_cli(["users", "list", "--json"], admin_env, tmp_path))
    assert [u["name"] for u in listed["items"]] == ["admin", "alice"]
    table = ok(run_cli(["users", "list"], admin_env, tmp_path)).stdout
    assert "alice" in table and "admin" in table

    wrong = run_cli(["login", "--name", "alice", "--password-stdin"], user_env, tmp_path, "nope")
    ok(wrong, 4)
    assert "wrong user name or password" in wrong.stderr

    ok(run_cli(["login", "--name", "alice", "--password-stdin"], user_env, tmp_path, PASSWORD))
    creds = Path(user_env["XDG_CONFIG_HOME"]) / "jobyard" / "credentials.json"
    assert creds.stat().st_mode & 0o777 == 0o600
    me = as_json(run_cli(["users", "me", "--json"], user_env, tmp_path))
    assert (me["name"], me["token_kind"]) == ("alice", "access")

    # An expired access token is refreshed on the way (the refresh token rotates).
    data = json.loads(creds.read_text())
    entry = data["servers"][server.url]
    before = (entry["access_token"], entry["refresh_token"])
    entry["access_expires_at"] = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    creds.write_text(json.dumps(data))
    me = as_json(run_cli(["users", "me", "--json"], user_env, tmp_path))
    assert me["name"] == "alice"
    after = json.loads(creds.read_text())["servers"][server.url]
    assert after["access_token"] != before[0] and after["refresh_token"] != before[1]

    made = as_json(
        run_cli(["tokens", "create", "ci", "--expires-in-days", "3", "--json"], user_env, tmp_path)
    )
    value, token_id = made["token"], made["id"]
    listed = as_json(run_cli(["tokens", "list", "--json"], user_env, tmp_path))
    assert [t["name"] for t in listed["items"]] == ["ci"]
    assert "token" not in listed["items"][0]
    shown = run_cli(["tokens", "create", "other"], user_env, tmp_path)
    assert ok(shown).stdout.strip().startswith("jy_")
    assert "not shown again" in shown.stderr
    with_token = as_json(run_cli(["--token", value, "users", "me", "--json"], user_env, tmp_path))
    assert with_token["token_kind"] == "personal"
    ok(run_cli(["tokens", "revoke", str(token_id)], user_env, tmp_path))
    refused = run_cli(["--token", value, "users", "me"], user_env, tmp_path)
    ok(refused, 4)
    assert "revoked" in refused.stderr
    of_alice = as_json(
        run_cli(["tokens", "list", "--user", "alice", "--json"], admin_env, tmp_path)
    )
    assert {t["name"] for t in of_alice["items"]} == {"ci", "other"}

    ok(run_cli(["logout"], user_env, tmp_path))
    assert server.url not in json.loads(creds.read_text())["servers"]
    gone = run_cli(["users", "me"], user_env, tmp_path)
    ok(gone, 4)
    assert "Authorization" in gone.stderr


def test_admin_manages_users(admin_env: dict[str, str], tmp_path: Path) -> None:
    ok(run_cli(["users", "add", "bob"], admin_env, tmp_path))
    shown = as_json(run_cli(["users", "show", "bob", "--json"], admin_env, tmp_path))
    assert shown["has_password"] is False
    updated = as_json(
        run_cli(["users", "update", "bob", "--role", "admin", "--json"], admin_env, tmp_path)
    )
    assert updated["role"] == "admin"
    nothing = run_cli(["users", "update", "bob"], admin_env, tmp_path)
    ok(nothing, 5)
    out = ok(run_cli(["users", "deactivate", "bob"], admin_env, tmp_path)).stdout
    assert "deactivated user bob" in out
    assert (
        as_json(run_cli(["users", "show", "bob", "--json"], admin_env, tmp_path))["active"] is False
    )
    ok(run_cli(["users", "activate", "bob"], admin_env, tmp_path))
    missing = run_cli(["users", "show", "nobody"], admin_env, tmp_path)
    ok(missing, 4)
    assert "no user named" in missing.stderr
