"""``jobyard workers list``, and the CLI telling about pools nobody serves, against a real
``jobyard up`` subprocess (one local worker process, pool ``default``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.cli import as_json, ok, run_cli
from tests.support.server import RunningServer, server_fixture

server = server_fixture(scope="module", workers=1, env={"JOBYARD_WORKER_PROCESSES": "1"})


def _api(server: RunningServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    )


def _wait_registered(server: RunningServer) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    with _api(server) as api:
        while True:
            items: list[dict[str, Any]] = api.get("/api/v1/workers").json()["items"]
            if any(w["health"] == "healthy" for w in items):
                return items
            assert time.monotonic() < deadline, items
            time.sleep(0.05)


def test_workers_list_in_every_output_format(server: RunningServer, tmp_path: Path) -> None:
    [worker] = _wait_registered(server)
    env = server.client_env()
    table = ok(run_cli(["workers", "list"], env, tmp_path))
    assert worker["id"] in table.stdout and "healthy" in table.stdout
    assert "slot(s) in use" in table.stderr
    plain = ok(run_cli(["workers", "list", "--plain"], env, tmp_path)).stdout.splitlines()
    assert plain[0].split("\t") == [
        "ID", "POOL", "KIND", "HOST", "PID", "VERSION", "HEALTH", "HEARTBEAT", "BUSY", "JOBS",
    ]  # fmt: skip
    row = plain[1].split("\t")
    assert row[0] == worker["id"] and row[1] == "default" and row[6] == "healthy"
    assert row[5] == worker["version"] and worker["version"]
    answer = as_json(run_cli(["workers", "list", "--json"], env, tmp_path))
    assert [w["id"] for w in answer["items"]] == [worker["id"]]
    assert answer["next_cursor"] is None


def test_apply_warns_in_yellow_and_jobs_show_says_why_a_job_waits(
    server: RunningServer, tmp_path: Path
) -> None:
    _wait_registered(server)
    env = server.client_env()
    spec = tmp_path / "jobs.yaml"
    spec.write_text(
        "jobconfigs:\n"
        "  - name: gpu-train\n"
        "    command: [/bin/sh, -c, 'echo hi']\n"
        "    pool: gpu\n"
        "  - name: plain-etl\n"
        "    command: [/bin/sh, -c, 'echo hi']\n"
    )
    applied = ok(run_cli(["apply", "-f", str(spec)], env, tmp_path))
    assert "warning:" in applied.stderr
    assert "no worker serves pool 'gpu'" in applied.stderr and "'gpu-train'" in applied.stderr
    assert "plain-etl" not in applied.stderr  # its pool is served
    assert "warning" not in applied.stdout

    with _api(server) as api:
        found = api.get("/api/v1/jobconfigs", params={"name": "gpu-train"}).json()["items"]
        job = api.post(f"/api/v1/jobconfigs/{found[0]['id']}/run", json={}).json()
        deadline = time.monotonic() + 30
        while api.get(f"/api/v1/jobs/{job['id']}").json()["status"] != "QUEUED":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    shown = ok(run_cli(["jobs", "show", str(job["id"])], env, tmp_path))
    waiting = [line for line in shown.stdout.splitlines() if line.startswith("waiting")]
    assert waiting and "no worker serves pool 'gpu'" in waiting[0], shown.stdout
    ok(run_cli(["jobs", "cancel", str(job["id"])], env, tmp_path))


def test_template_import_and_clone_print_pool_warnings(
    server: RunningServer, tmp_path: Path
) -> None:
    _wait_registered(server)
    env = server.client_env()
    export = tmp_path / "acme.json"
    export.write_text(
        '{"format": "jobyard.template/1", "template": {"name": "acme", "command": ["true"]},'
        ' "jobconfigs": [{"name": "acme-gpu", "pool": "gpu"}, {"name": "acme-cpu"}]}'
    )
    imported = ok(run_cli(["templates", "import", str(export)], env, tmp_path))
    assert "warning: no worker serves pool 'gpu'" in imported.stderr, imported.stderr
    assert "'acme-gpu'" in imported.stderr and "acme-cpu" not in imported.stderr
    cloned = ok(
        run_cli(["templates", "clone", "acme", "globex", "--with-jobconfigs"], env, tmp_path)
    )
    assert "'globex.acme-gpu'" in cloned.stderr, cloned.stderr
    answer = as_json(run_cli(["templates", "clone", "acme", "initech", "--json"], env, tmp_path))
    assert answer["warnings"] == []  # no jobconfigs copied: nothing waits
