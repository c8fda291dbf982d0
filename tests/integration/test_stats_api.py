"""``GET /api/v1/jobstats`` and ``GET /metrics`` on a real server, as jobs run.

/metrics is parsed with ``prometheus_client.parser``; its counters must move when jobs
run, and its HTTP latency series carry route templates, never raw paths.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Env, ServerFactory

API = "/api/v1"
#: Fold every maintenance pass (0.5 s in tests), without the lag for late ids.
FAST_STATS = {"fold_lag_seconds": 0}


async def _jobconfig(env: Env, name: str, code: int) -> int:
    r = await env.client.post(
        f"{API}/jobconfigs",
        json={"name": name, "command": ["/bin/sh", "-c", f"exit {code}"], "max_concurrent": 0},
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _run(env: Env, jc: int, times: int) -> list[dict[str, Any]]:
    ids = []
    for _ in range(times):
        r = await env.client.post(f"{API}/jobconfigs/{jc}/run", json={})
        assert r.status_code == 201, r.text
        ids.append(int(r.json()["id"]))
    return [await env.wait_status(i) for i in ids]


async def _stats_until(env: Env, total: int, **params: Any) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        r = await env.client.get(f"{API}/jobstats", params=params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["overall"]["total"] == total:
            return body
        assert asyncio.get_running_loop().time() < deadline, body["overall"]
        await asyncio.sleep(0.1)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def _scrape(env: Env) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await env.client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return _samples(r.text)


async def test_jobstats_counts_what_ran(start_server: ServerFactory) -> None:
    env = await start_server(stats=FAST_STATS)
    good = await _jobconfig(env, "good", 0)
    bad = await _jobconfig(env, "bad", 3)
    finished = await _run(env, good, 3)
    errors = await _run(env, bad, 2)
    assert {j["status"] for j in finished} == {"FINISHED"}
    assert {j["status"] for j in errors} == {"ERROR"}

    body = await _stats_until(env, 5)
    assert body["bucket"] == "hour"
    assert len(body["buckets"]) == 24
    assert body["overall"]["counts"] == {"FINISHED": 3, "ERROR": 2, "FAILED": 0, "CANCELLED": 0}
    per = {j["name"]: j for j in body["jobconfigs"]}
    assert set(per) == {"good", "bad"}
    assert per["good"]["counts"]["FINISHED"] == 3
    assert per["bad"]["counts"]["ERROR"] == 2
    duration = body["overall"]["duration_seconds"]
    assert duration["count"] == 5
    assert 0 < duration["p50"] <= duration["p95"] <= duration["p99"] <= duration["max"] < 30
    assert body["overall"]["queue_wait_seconds"]["count"] == 5
    assert sum(b["total"] for b in body["buckets"]) == 5
    assert body["folded_at"] is not None

    only = await _stats_until(env, 2, jobconfig_id=bad, bucket="day")
    assert [j["name"] for j in only["jobconfigs"]] == ["bad"]
    assert len(only["buckets"]) == 30


async def test_jobstats_refuses_bad_ranges(env: Env) -> None:
    cases = [
        {"bucket": "week"},
        {"since": "2026-01-01T00:00:00"},  # no zone
        {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        {"since": "2025-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z", "bucket": "hour"},
    ]
    for params in cases:
        r = await env.client.get(f"{API}/jobstats", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["error"]["message"]
    r = await env.client.get(f"{API}/jobstats", params={"jobconfig_id": 999_999})
    assert r.status_code == 404


async def test_metrics_parse_and_counters_move(start_server: ServerFactory) -> None:
    env = await start_server(stats=FAST_STATS)
    jc = await _jobconfig(env, "etl", 0)
    await _run(env, jc, 2)
    before = await _scrape(env)
    submitted = ("jobyard_jobs_submitted_total", (("jobconfig", "etl"),))
    ended = ("jobyard_jobs_ended_total", (("jobconfig", "etl"), ("status", "FINISHED")))
    assert before[submitted] == 2
    assert before[ended] == 2
    await _run(env, jc, 3)
    after = await _scrape(env)
    assert after[submitted] == 5
    assert after[ended] == 5

    # histograms follow once the maintenance loop has folded the jobs
    count = ("jobyard_job_duration_seconds_count", (("jobconfig", "etl"),))
    deadline = asyncio.get_running_loop().time() + 30
    while after.get(count) != 5:
        assert asyncio.get_running_loop().time() < deadline, after.get(count)
        await asyncio.sleep(0.1)
        after = await _scrape(env)
    inf = ("jobyard_job_duration_seconds_bucket", (("jobconfig", "etl"), ("le", "+Inf")))
    assert after[inf] == 5
    assert after[("jobyard_job_queue_wait_seconds_count", (("jobconfig", "etl"),))] == 5

    # gauges
    assert after[("jobyard_jobs", (("status", "RUNNING"),))] == 0
    assert after[("jobyard_slots_total", (("pool", "default"),))] == 3
    assert after[("jobyard_slots_busy", (("pool", "default"),))] == 0
    assert after[("jobyard_queue_depth", (("pool", "default"),))] == 0
    assert after[("jobyard_scheduler_lateness_seconds", ())] == 0

    # HTTP latency by route template (the fast submit path included), never raw paths
    await env.client.get(f"{API}/jobs/1")
    text = (await env.client.get("/metrics")).text
    http = [
        s
        for f in text_string_to_metric_families(text)
        if f.name == "jobyard_http_request_duration_seconds"
        for s in f.samples
    ]
    routes = {s.labels["route"] for s in http}
    assert f"{API}/jobs/{{job_id}}" in routes
    assert f"{API}/jobconfigs/{{jobconfig_id}}/run" in routes
    assert "/metrics" in routes
    assert not any(r.rstrip("/").split("/")[-1].isdigit() for r in routes), routes
