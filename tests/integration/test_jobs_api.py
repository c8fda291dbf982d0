"""The job lifecycle through the real API, server and local workers (embedded SQLite)."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from pathlib import Path

from tests.integration.conftest import Env

EVENTS_OK = ["SEQUENCED", "QUEUED", "INITIALIZING", "RUNNING", "FINISHED"]


async def test_adhoc_job_runs_to_finished_with_events_and_log(env: Env) -> None:
    job = await env.run_command(["sh", "-c", "echo hello; echo oops >&2"])
    done = await env.wait_status(job["id"])
    assert done["status"] == "FINISHED", done
    assert done["exit_code"] == 0
    assert done["started_at"] and done["ended_at"]
    assert done["started_at"] <= done["ended_at"]
    events = (await env.client.get(f"/api/v1/jobs/{job['id']}/events")).json()["items"]
    assert [e["status"] for e in events] == EVENTS_OK
    assert all({"status", "at", "actor", "reason"} <= set(e) for e in events)
    assert events[2]["actor"].startswith("worker:")
    log = await env.client.get(f"/api/v1/jobs/{job['id']}/log")
    assert log.status_code == 200
    lines = log.text.splitlines()
    assert any(line.endswith(" out hello") for line in lines), lines
    assert any(line.endswith(" err oops") for line in lines), lines


async def test_a_job_that_printed_nothing_has_an_empty_log(env: Env) -> None:
    job = await env.run_command(["true"])
    assert (await env.wait_status(job["id"]))["status"] == "FINISHED"
    log = await env.client.get(f"/api/v1/jobs/{job['id']}/log")
    assert log.status_code == 200, log.text
    assert log.text == ""
    followed = await env.client.get(f"/api/v1/jobs/{job['id']}/log", params={"follow": "true"})
    assert followed.status_code == 200 and followed.text == ""


async def test_exit_codes_map_to_error_or_finished(env: Env) -> None:
    bad = await env.run_command(["sh", "-c", "exit 3"])
    ok = await env.run_command(["sh", "-c", "exit 3"], success_exit_codes=[0, 3])
    bad_done = await env.wait_status(bad["id"])
    ok_done = await env.wait_status(ok["id"])
    assert bad_done["status"] == "ERROR"
    assert bad_done["exit_code"] == 3
    assert "exit code 3" in bad_done["status_reason"]
    assert ok_done["status"] == "FINISHED"
    assert ok_done["exit_code"] == 3


async def test_missing_program_fails_with_reason(env: Env) -> None:
    job = await env.run_command(["/definitely/not/here"])
    done = await env.wait_status(job["id"])
    assert done["status"] == "FAILED"
    assert done["status_reason"]


async def test_jobconfig_jobs_run_one_at_a_time_in_order(env: Env) -> None:
    r = await env.client.post(
        "/api/v1/jobconfigs",
        json={
            "name": "serial",
            "command": ["sh", "-c", 'echo "start $JOB_ID"; sleep 0.15; echo "end $JOB_ID"'],
        },
    )
    assert r.status_code == 201, r.text
    jc = r.json()
    assert jc["max_concurrent"] == 1
    ids = []
    for _ in range(5):
        r = await env.client.post(f"/api/v1/jobconfigs/{jc['id']}/run", json={})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    spans = []
    for job_id in ids:
        assert (await env.wait_status(job_id))["status"] == "FINISHED"
        lines = (await env.client.get(f"/api/v1/jobs/{job_id}/log")).text.splitlines()
        assert [line.split(" ", 2)[2] for line in lines] == [f"start {job_id}", f"end {job_id}"]
        spans.append((lines[0].split(" ")[0], lines[1].split(" ")[0]))
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"jobs overlapped: {spans}"


async def test_unlimited_concurrency_overlaps(env: Env, tmp_path: Path) -> None:
    r = await env.client.post(
        "/api/v1/jobconfigs",
        json={"name": "parallel", "command": ["sleep", "0.5"], "max_concurrent": 0},
    )
    jc = r.json()
    ids = [
        (await env.client.post(f"/api/v1/jobconfigs/{jc['id']}/run")).json()["id"] for _ in range(3)
    ]
    jobs = [await env.wait_status(i) for i in ids]
    assert all(j["status"] == "FINISHED" for j in jobs)
    starts = sorted(j["started_at"] for j in jobs)
    ends = sorted(j["ended_at"] for j in jobs)
    assert starts[-1] < ends[0], "with max_concurrent=0 and 3 slots the jobs should overlap"


async def test_cancel_held_job_has_no_log(env: Env) -> None:
    r = await env.client.post("/api/v1/jobs", json={"command": ["true"], "hold": True})
    job = r.json()
    assert job["status"] == "WAITING"
    r = await env.client.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200
    assert r.json()["status"] == "CANCELLED"
    log = await env.client.get(f"/api/v1/jobs/{job['id']}/log")
    assert log.status_code == 404
    assert "cancelled" in log.json()["error"]["message"]
    again = await env.client.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    abort = await env.client.post(f"/api/v1/jobs/{job['id']}/abort")
    assert abort.status_code == 409
    events = (await env.client.get(f"/api/v1/jobs/{job['id']}/events")).json()["items"]
    assert [e["status"] for e in events] == ["WAITING", "CANCELLED"]


async def test_abort_kills_the_whole_process_group(env: Env) -> None:
    job = await env.run_command(["sh", "-c", 'sleep 300 & echo "pid=$!"; sleep 300'])
    await env.wait_status(job["id"], {"RUNNING"})
    grandchild = int(await env.wait_log_line(job["id"], "pid="))
    cancel = await env.client.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert cancel.status_code == 409
    r = await env.client.post(f"/api/v1/jobs/{job['id']}/abort")
    assert r.status_code in (200, 202), r.text
    done = await env.wait_status(job["id"])
    assert done["status"] == "FAILED"
    assert "abort" in done["status_reason"]
    deadline = time.monotonic() + 10
    while _alive(grandchild):
        assert time.monotonic() < deadline, "the grandchild survived the abort"
        await asyncio.sleep(0.05)
    again = await env.client.post(f"/api/v1/jobs/{job['id']}/abort")
    assert again.status_code == 409


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split(")")[-1].split()[0] != "Z"


async def test_hold_payload_release(env: Env) -> None:
    r = await env.client.post(
        "/api/v1/jobconfigs",
        json={"name": "reader", "command": ["sh", "-c", 'cat "$JOB_PAYLOAD_DIR/data.txt"']},
    )
    jc = r.json()
    job = (await env.client.post(f"/api/v1/jobconfigs/{jc['id']}/run", json={"hold": True})).json()
    assert job["status"] == "WAITING"
    r = await env.client.post(
        f"/api/v1/jobs/{job['id']}/payload", files={"file": ("data.txt", b"payload-content-42\n")}
    )
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "data.txt"
    r = await env.client.post(f"/api/v1/jobs/{job['id']}/release")
    assert r.status_code == 200
    assert r.json()["status"] in {"SEQUENCED", "QUEUED", "INITIALIZING", "RUNNING", "FINISHED"}
    done = await env.wait_status(job["id"])
    assert done["status"] == "FINISHED", done
    log = (await env.client.get(f"/api/v1/jobs/{job['id']}/log")).text
    assert "payload-content-42" in log
    late = await env.client.post(
        f"/api/v1/jobs/{job['id']}/payload", files={"file": ("x.txt", b"x")}
    )
    assert late.status_code == 409
    release_again = await env.client.post(f"/api/v1/jobs/{job['id']}/release")
    assert release_again.status_code == 409


async def test_outputs_are_kept_and_downloadable(env: Env) -> None:
    job = await env.run_command(
        [
            "sh",
            "-c",
            'echo result > "$LOCAL_JOB_OUT_DIR/result.txt"; '
            'mkdir -p "$LOCAL_JOB_OUT_DIR/sub"; printf abc > "$LOCAL_JOB_OUT_DIR/sub/x.bin"',
        ]
    )
    assert (await env.wait_status(job["id"]))["status"] == "FINISHED"
    items = (await env.client.get(f"/api/v1/jobs/{job['id']}/outputs")).json()["items"]
    assert sorted(i["name"] for i in items) == ["result.txt", "sub/x.bin"]
    r = await env.client.get(f"/api/v1/jobs/{job['id']}/outputs/result.txt")
    assert r.status_code == 200
    assert r.content == b"result\n"
    r = await env.client.get(f"/api/v1/jobs/{job['id']}/outputs/sub/x.bin")
    assert r.content == b"abc"
    missing = await env.client.get(f"/api/v1/jobs/{job['id']}/outputs/nope.txt")
    assert missing.status_code == 404


async def test_log_follow_streams_while_running(env: Env) -> None:
    job = await env.run_command(["sh", "-c", "echo first; sleep 1; echo second"])
    await env.wait_status(job["id"], {"RUNNING", "FINISHED"})
    seen_first_while_running = False
    body = b""
    async with env.client.stream(
        "GET", f"/api/v1/jobs/{job['id']}/log", params={"follow": "true"}
    ) as r:
        assert r.status_code == 200
        async for chunk in r.aiter_bytes():
            body += chunk
            if b" out first" in body and b"second" not in body:
                status = (await env.client.get(f"/api/v1/jobs/{job['id']}")).json()["status"]
                seen_first_while_running = seen_first_while_running or status == "RUNNING"
    assert b" out first" in body and b" out second" in body
    assert seen_first_while_running
    assert (await env.client.get(f"/api/v1/jobs/{job['id']}")).json()["status"] == "FINISHED"


async def test_rerun_points_at_original(env: Env) -> None:
    job = await env.run_command(["sh", "-c", "exit 1"])
    assert (await env.wait_status(job["id"]))["status"] == "ERROR"
    r = await env.client.post(f"/api/v1/jobs/{job['id']}/rerun")
    assert r.status_code == 201
    again = r.json()
    assert again["rerun_of"] == job["id"]
    assert again["id"] != job["id"]
    assert (await env.wait_status(again["id"]))["status"] == "ERROR"
    original = (await env.client.get(f"/api/v1/jobs/{job['id']}")).json()
    assert original["status"] == "ERROR"


async def test_job_listing_filters_and_cursor(env: Env) -> None:
    jc = (
        await env.client.post(
            "/api/v1/jobconfigs", json={"name": "lister", "command": ["true"], "max_concurrent": 0}
        )
    ).json()
    ids = [
        (await env.client.post(f"/api/v1/jobconfigs/{jc['id']}/run")).json()["id"] for _ in range(5)
    ]
    for i in ids:
        await env.wait_status(i)
    await env.run_command(["true"])
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"jobconfig_id": jc["id"], "status": "FINISHED", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await env.client.get("/api/v1/jobs", params=params)).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(ids, reverse=True)
    none = (
        await env.client.get("/api/v1/jobs", params={"jobconfig_id": jc["id"], "status": "ERROR"})
    ).json()
    assert none["items"] == []
