"""The CLI of least authority, as subprocesses against a real ``jobyard up``:
``jobyard policies grant USER execute adhoc '*'``, and a jobconfig's ``parameters``
through ``apply``, ``jobconfigs show`` and ``export``."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.cli import as_json, ok, run_cli
from tests.support.server import RunningServer, server_fixture

server = server_fixture(scope="module", workers=1)

PASSWORD = "a long enough password"


def _login(server: RunningServer, name: str) -> httpx.Client:
    with httpx.Client(base_url=server.url) as anon:
        r = anon.post("/api/v1/login", json={"name": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})


def test_policies_grant_adhoc(server: RunningServer, tmp_path: Path) -> None:
    env = server.client_env()
    ok(run_cli(["users", "add", "ada", "--password-stdin"], env, tmp_path, PASSWORD))
    with _login(server, "ada") as ada:
        r = ada.post("/api/v1/jobs", json={"command": ["/bin/true"]})
        assert r.status_code == 403, r.text
        assert "jobyard policies grant ada execute adhoc '*'" in r.json()["error"]["message"]

        refused = run_cli(["policies", "grant", "ada", "view", "adhoc", "*"], env, tmp_path)
        assert refused.returncode != 0
        assert "only action 'execute' with selector '*'" in refused.stderr

        policy = as_json(
            run_cli(["policies", "grant", "ada", "execute", "adhoc", "*", "--json"], env, tmp_path)
        )
        assert (policy["action"], policy["resource"], policy["selector"]) == (
            "execute",
            "adhoc",
            "*",
        )
        shown = ok(run_cli(["policies", "list", "ada"], env, tmp_path)).stdout
        assert "adhoc" in shown
        r = ada.post("/api/v1/jobs", json={"command": ["/bin/true"], "hold": True})
        assert r.status_code == 201, r.text


def test_parameters_through_apply_show_and_export(server: RunningServer, tmp_path: Path) -> None:
    env = server.client_env()
    spec = tmp_path / "jobs.yaml"
    spec.write_text(
        "jobconfigs:\n"
        "  - name: with-params\n"
        "    command: [/bin/sh, -c, 'echo $DAY']\n"
        "    parameters: [REGION, DAY]\n"
    )
    ok(run_cli(["apply", "-f", str(spec)], env, tmp_path))
    shown = as_json(run_cli(["jobconfigs", "show", "with-params", "--json"], env, tmp_path))
    assert shown["parameters"] == ["DAY", "REGION"]
    assert shown["definition_changed_by"] == "admin"
    table = ok(run_cli(["jobconfigs", "show", "with-params"], env, tmp_path)).stdout
    assert "parameters" in table and "REGION" in table
    exported = ok(run_cli(["export", "with-params"], env, tmp_path)).stdout
    assert "parameters: [DAY, REGION]" in exported
    # The same set in another order is no change; a smaller set is.
    spec.write_text(spec.read_text().replace("[REGION, DAY]", "[DAY, REGION]"))
    planned = ok(run_cli(["apply", "-f", str(spec), "--dry-run"], env, tmp_path)).stdout
    assert "unchanged" in planned
    spec.write_text(spec.read_text().replace("[DAY, REGION]", "[DAY]"))
    ok(run_cli(["apply", "-f", str(spec)], env, tmp_path))
    shown = as_json(run_cli(["jobconfigs", "show", "with-params", "--json"], env, tmp_path))
    assert shown["parameters"] == ["DAY"]
