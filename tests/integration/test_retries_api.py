"""Retry policies through a real server: chains of retries, limits, and lost workers."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta
from typing import Any

from jobyard.core.timeutil import utcnow
from tests.integration.conftest import TERMINAL, Env, ServerFactory
from tests.security.web_support import signed_in

#: A job that asks the API about itself: a retry finishes, the original blocks until
#: its worker is killed (it prints its pid first, so the test knows it runs).
ASK_SELF = (
    "import json, os, sys, time, urllib.request\n"
    "req = urllib.request.Request(os.environ['JOBYARD_API_URL'] + '/api/v1/jobs/' "
    "+ os.environ['JOB_ID'], headers={'Authorization': 'Bearer ' + os.environ['SESSION_ID']})\n"
    "job = json.load(urllib.request.urlopen(req))\n"
    "if job['trigger'] == 'retry':\n"
    "    print('retry of', job['retry_of'], 'attempt', job['attempt'], flush=True)\n"
    "    sys.exit(0)\n"
    "print('pid=%d' % os.getpid(), flush=True)\n"
    "time.sleep(300)\n"
)


async def _jobs_of(env: Env, jobconfig_id: int) -> list[dict[str, Any]]:
    r = await env.client.get("/api/v1/jobs", params={"jobconfig_id": jobconfig_id})
    assert r.status_code == 200, r.text
    return sorted(r.json()["items"], key=lambda j: j["id"])


async def _wait_jobs(
    env: Env, jobconfig_id: int, count: int, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Poll until the jobconfig has ``count`` jobs, all ended."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        jobs = await _jobs_of(env, jobconfig_id)
        if len(jobs) >= count and all(j["status"] in TERMINAL for j in jobs):
            return jobs
        assert asyncio.get_running_loop().time() < deadline, f"jobs so far: {jobs}"
        await asyncio.sleep(0.05)


async def test_an_erroring_job_is_retried_until_its_attempts_run_out(env: Env) -> None:
    body = {
        "name": "flaky",
        "command": ["/bin/sh", "-c", "echo attempt; exit 3"],
        "retries": 2,
        "retry_delay_seconds": 0.2,
        "retry_backoff": 1.5,
        "retry_on": ["ERROR"],
    }
    r = await env.client.post("/api/v1/jobconfigs", json=body)
    assert r.status_code == 201, r.text
    jc = r.json()
    assert (jc["retries"], jc["retry_on"], jc["retry_backoff"]) == (2, ["ERROR"], 1.5)
    assert jc["retry_since"] is not None
    r = await env.client.post(f"/api/v1/jobconfigs/{jc['id']}/run", json={})
    assert r.status_code == 201, r.text
    first = r.json()
    jobs = await _wait_jobs(env, jc["id"], 3)
    assert len(jobs) == 3 and jobs[0]["id"] == first["id"]
    shown = [(await env.client.get(f"/api/v1/jobs/{j['id']}")).json() for j in jobs]
    assert [j["status"] for j in shown] == ["ERROR"] * 3
    assert [j["exit_code"] for j in shown] == [3] * 3
    assert [j["trigger"] for j in shown] == ["api", "retry", "retry"]
    assert [j["retry_of"] for j in shown] == [None, shown[0]["id"], shown[1]["id"]]
    assert [j["attempt"] for j in shown] == [0, 1, 2]
    assert [j["retried_by"] for j in shown] == [shown[1]["id"], shown[2]["id"], None]
    # The second retry waited delay * backoff after the first retry ended.
    assert shown[2]["created_at"] >= shown[1]["ended_at"]
    # The console's page of a retry names what it retries, and the retried job its retry.
    password = "retry-console-pw-1"
    r = await env.client.post(
        "/api/v1/users", json={"name": "viewer", "role": "admin", "password": password}
    )
    assert r.status_code == 201, r.text
    async with signed_in(env, "viewer", password) as (browser, _csrf):
        page = (await browser.get(f"/jobs/{shown[1]['id']}")).text
    assert f'Retry of</dt><dd><a href="/jobs/{shown[0]["id"]}">' in page
    assert "(attempt 1)" in page
    assert f'Retried by</dt><dd><a href="/jobs/{shown[2]["id"]}">' in page
    # The last one is final: no pass, now or much later, submits another.
    later = utcnow() + timedelta(days=365)
    assert await env.runtime.ctx.store.jobs_submit_due_retries(now=later) == []
    assert len(await _jobs_of(env, jc["id"])) == 3


async def test_bad_policies_answer_422_saying_what_to_fix(env: Env) -> None:
    base = {"name": "p", "command": ["true"]}
    bad: dict[str, Any]
    for bad in (
        {"retries": -1},
        {"retry_backoff": 0.5},
        {"retry_delay_seconds": -2},
        {"retry_on": ["FINISHED"]},
        {"retry_on": []},
    ):
        r = await env.client.post("/api/v1/jobconfigs", json={**base, **bad})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["code"] == "invalid_input", r.text
        assert next(iter(bad)) in r.text
    r = await env.client.post("/api/v1/jobconfigs", json=base)
    assert r.status_code == 201, r.text
    assert (r.json()["retries"], r.json()["retry_on"]) == (0, ["FAILED"])
    jc_id = r.json()["id"]
    r = await env.client.patch(f"/api/v1/jobconfigs/{jc_id}", json={"retry_backoff": 0})
    assert r.status_code == 422, r.text
    r = await env.client.patch(f"/api/v1/jobconfigs/{jc_id}", json={"retries": 4})
    assert r.status_code == 200, r.text
    assert r.json()["retries"] == 4 and r.json()["retry_since"] is not None


async def test_a_job_of_a_lost_worker_is_retried(start_server: ServerFactory) -> None:
    env = await start_server(workers=2, worker_processes=1)
    body = {
        "name": "survivor",
        "command": ["/usr/bin/python3", "-c", ASK_SELF],
        "retries": 1,
        "retry_delay_seconds": 0,
    }
    r = await env.client.post("/api/v1/jobconfigs", json=body)
    assert r.status_code == 201, r.text
    jc = r.json()
    r = await env.client.post(f"/api/v1/jobconfigs/{jc['id']}/run", json={})
    assert r.status_code == 201, r.text
    job = r.json()
    running = await env.wait_status(job["id"], {"RUNNING"})
    await env.wait_log_line(job["id"], "pid=")
    os.kill(int(running["worker_id"].split(":")[1]), signal.SIGKILL)
    lost = await env.wait_status(job["id"], timeout=30)
    assert lost["status"] == "FAILED" and "worker lost" in lost["status_reason"]
    jobs = await _wait_jobs(env, jc["id"], 2, timeout=60)
    assert len(jobs) == 2
    retry = (await env.client.get(f"/api/v1/jobs/{jobs[1]['id']}")).json()
    assert retry["status"] == "FINISHED", retry
    assert (retry["retry_of"], retry["attempt"], retry["trigger"]) == (job["id"], 1, "retry")
    assert (await env.client.get(f"/api/v1/jobs/{job['id']}")).json()["retried_by"] == retry["id"]
    line = await env.wait_log_line(retry["id"], "retry of ")
    assert line == f"{job['id']} attempt 1"


async def test_apply_and_export_round_trip_the_policy(env: Env) -> None:
    document = """\
templates:
  - name: tpl-retry
    command: [/bin/sh, -c, "exit 1"]
    retries: 1
jobconfigs:
  - name: applied
    command: [/bin/sh, -c, "exit 3"]
    retries: 3
    retry_delay_seconds: 12.5
    retry_backoff: 1
    retry_on: [FAILED, ERROR]
  - name: inherits
    template: tpl-retry
"""
    yaml = {"Content-Type": "application/yaml"}
    r = await env.client.post("/api/v1/apply", content=document, headers=yaml)
    assert r.status_code == 200, r.text
    items = (await env.client.get("/api/v1/jobconfigs", params={"name": "applied"})).json()
    applied = items["items"][0]
    assert (applied["retries"], applied["retry_delay_seconds"]) == (3, 12.5)
    assert (applied["retry_backoff"], applied["retry_on"]) == (1.0, ["ERROR", "FAILED"])
    exported = await env.client.get("/api/v1/export", params={"format": "json"})
    assert exported.status_code == 200, exported.text
    by_name = {j["name"]: j for j in exported.json()["jobconfigs"]}
    assert by_name["applied"]["retries"] == 3
    assert by_name["applied"]["retry_on"] == ["ERROR", "FAILED"]
    assert "retries" not in by_name["inherits"]  # the default is left out
    [template] = exported.json()["templates"]
    assert template["retries"] == 1
    again = await env.client.post("/api/v1/apply", json=exported.json(), params={"dry_run": "true"})
    assert again.status_code == 200, again.text
    report = again.json()
    assert {j["action"] for j in report["jobconfigs"]} == {"unchanged"}, report
    assert {t["action"] for t in report["templates"]} == {"unchanged"}, report
