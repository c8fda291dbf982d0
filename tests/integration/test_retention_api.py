"""Retention through the real server: the jobconfig field, the purge route, the CLI.

Jobs run for real (``/bin/sh`` commands, outputs through ``LOCAL_JOB_OUT_DIR``), then a
purge keeps the newest per jobconfig and removes the rest with their logs and outputs.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from jobyard.blobs.keys import log_key
from jobyard.cli.main import app as cli_app
from tests.integration.conftest import Env, ServerFactory

API = "/api/v1"
PASSWORD = "correct horse battery"


def _cli(env: Env, *args: str) -> str:
    runner = CliRunner(env={"COLUMNS": "240"})
    result = runner.invoke(cli_app, ["--server", env.url, "--token", env.token, *args])
    assert result.exit_code == 0, result.output
    return result.output


async def _jobconfig(env: Env, name: str, **extra: Any) -> dict[str, Any]:
    command = ["/bin/sh", "-c", 'echo hello; echo out > "$LOCAL_JOB_OUT_DIR/o.txt"']
    body = {"name": name, "command": command, "max_concurrent": 0, **extra}
    r = await env.client.post(f"{API}/jobconfigs", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _run(env: Env, jobconfig_id: int, count: int) -> list[int]:
    ids = []
    for _ in range(count):
        r = await env.client.post(f"{API}/jobconfigs/{jobconfig_id}/run", json={})
        assert r.status_code == 201, r.text
        ids.append(int(r.json()["id"]))
    for job_id in ids:
        job = await env.wait_status(job_id)
        assert job["status"] == "FINISHED", job
    return ids


async def test_retention_field_round_trips_and_is_validated(env: Env) -> None:
    jc = await _jobconfig(env, "kept", retention={"max_jobs": 5})
    assert jc["retention"] == {"max_age_days": None, "max_jobs": 5}
    r = await env.client.patch(
        f"{API}/jobconfigs/{jc['id']}", json={"retention": {"max_age_days": 2.5}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["retention"] == {"max_age_days": 2.5, "max_jobs": 5}
    got = (await env.client.get(f"{API}/jobconfigs/{jc['id']}")).json()
    assert got["retention"] == {"max_age_days": 2.5, "max_jobs": 5}
    r = await env.client.patch(f"{API}/jobconfigs/{jc['id']}", json={"retention": None})
    assert r.json()["retention"] == {"max_age_days": None, "max_jobs": None}
    for bad in ({"max_jobs": -1}, {"max_age_days": -0.5}, {"max_jobs": "many"}, {"x": 1}):
        r = await env.client.patch(f"{API}/jobconfigs/{jc['id']}", json={"retention": bad})
        assert r.status_code == 422, (bad, r.text)
        error = r.json()["error"]
        assert "retention" in json.dumps(error), error
    r = await env.client.post(
        f"{API}/jobconfigs",
        json={"name": "bad", "command": ["true"], "retention": {"max_jobs": -3}},
    )
    assert r.status_code == 422 and "retention" in r.text


async def test_purge_keeps_the_newest_and_takes_files_along(start_server: ServerFactory) -> None:
    env = await start_server(retention={"enabled": False, "max_jobs_per_jobconfig": 2})
    a = await _jobconfig(env, "a")
    b = await _jobconfig(env, "b", retention={"max_jobs": 1})
    a_ids = await _run(env, a["id"], 4)
    b_ids = await _run(env, b["id"], 2)
    blobs = env.settings.effective_blobs_dir
    assert (blobs / log_key(a_ids[0])).exists()
    assert (blobs / "outputs" / str(a_ids[0]) / "o.txt").exists()

    r = await env.client.post(f"{API}/admin/purge", json={"dry_run": True})
    assert r.status_code == 200, r.text
    dry = r.json()
    assert dry["dry_run"] is True
    assert (dry["jobs"], dry["log_files"], dry["files"]) == (3, 3, 3)
    assert dry["bytes"] > 0
    for job_id in a_ids + b_ids:  # a dry run changed nothing
        assert (await env.client.get(f"{API}/jobs/{job_id}")).status_code == 200
        assert (blobs / log_key(job_id)).exists()

    r = await env.client.post(f"{API}/admin/purge", json={})
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["dry_run"] is False
    assert {k: done[k] for k in ("jobs", "log_files", "files")} == {
        "jobs": 3,
        "log_files": 3,
        "files": 3,
    }
    gone = a_ids[:2] + b_ids[:1]
    for job_id in gone:
        assert (await env.client.get(f"{API}/jobs/{job_id}")).status_code == 404
        assert not (blobs / log_key(job_id)).exists()
        assert not (blobs / "outputs" / str(job_id)).exists()
    for job_id in a_ids[2:] + b_ids[1:]:
        assert (await env.client.get(f"{API}/jobs/{job_id}")).status_code == 200
        assert (blobs / log_key(job_id)).exists()
    audit = (await env.client.get(f"{API}/audit", params={"action": "retention."})).json()
    assert [e["action"] for e in audit["items"]] == ["retention.purge"]


async def test_cli_purge_and_dry_run(start_server: ServerFactory) -> None:
    env = await start_server(retention={"enabled": False, "max_jobs_per_jobconfig": 1})
    jc = await _jobconfig(env, "c")
    ids = await _run(env, jc["id"], 3)
    table = await asyncio.to_thread(_cli, env, "purge", "--dry-run")
    assert "dry run" in table and "ended jobs" in table
    dry = json.loads(await asyncio.to_thread(_cli, env, "purge", "--dry-run", "--output", "json"))
    assert dry["jobs"] == 2 and dry["dry_run"] is True
    assert (await env.client.get(f"{API}/jobs/{ids[0]}")).status_code == 200
    done = json.loads(await asyncio.to_thread(_cli, env, "purge", "--json"))
    assert done["jobs"] == 2 and done["dry_run"] is False
    assert (await env.client.get(f"{API}/jobs/{ids[0]}")).status_code == 404
    assert (await env.client.get(f"{API}/jobs/{ids[2]}")).status_code == 200


async def test_the_background_pass_purges_on_its_own(start_server: ServerFactory) -> None:
    env = await start_server(retention={"interval_seconds": 0.2, "max_jobs_per_jobconfig": 1})
    jc = await _jobconfig(env, "bg", max_concurrent=1)  # one after the other
    ids = []
    for _ in range(3):
        r = await env.client.post(f"{API}/jobconfigs/{jc['id']}/run", json={})
        ids.append(int(r.json()["id"]))
    last = await env.wait_status(ids[-1])
    assert last["status"] == "FINISHED"
    deadline = asyncio.get_running_loop().time() + 20
    while (await env.client.get(f"{API}/jobs/{ids[1]}")).status_code != 404:
        assert asyncio.get_running_loop().time() < deadline, "background purge did not run"
        await asyncio.sleep(0.1)
    assert (await env.client.get(f"{API}/jobs/{ids[0]}")).status_code == 404
    assert (await env.client.get(f"{API}/jobs/{ids[2]}")).status_code == 200


async def test_apply_and_export_round_trip_retention(env: Env, tmp_path: Path) -> None:
    spec = tmp_path / "jobyard.yaml"
    spec.write_text(
        "jobconfigs:\n"
        "  - name: etl\n"
        "    command: [/bin/sh, -c, 'true']\n"
        "    retention:\n"
        "      max_jobs: 50\n"
        "      max_age_days: 7\n"
    )
    await asyncio.to_thread(_cli, env, "apply", "-f", str(spec))
    page = (await env.client.get(f"{API}/jobconfigs", params={"name": "etl"})).json()
    (jc,) = page["items"]
    assert jc["retention"] == {"max_age_days": 7, "max_jobs": 50}
    exported = tmp_path / "export.yaml"
    await asyncio.to_thread(_cli, env, "export", "-o", str(exported))
    text = exported.read_text()
    assert "retention:" in text and "max_jobs: 50" in text
    again = json.loads(await asyncio.to_thread(_cli, env, "apply", "-f", str(exported), "--json"))
    assert all(item["action"] == "unchanged" for item in again["jobconfigs"]), again
    # Dropping a field inside `retention` resets it to the server's setting.
    spec.write_text(
        "jobconfigs:\n"
        "  - name: etl\n"
        "    command: [/bin/sh, -c, 'true']\n"
        "    retention: {max_jobs: 50}\n"
    )
    await asyncio.to_thread(_cli, env, "apply", "-f", str(spec))
    got = (await env.client.get(f"{API}/jobconfigs/{jc['id']}")).json()
    assert got["retention"] == {"max_age_days": None, "max_jobs": 50}
