"""The request-latency middleware keeps its series bounded: templates, known methods."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jobyard.api.metrics import UNMATCHED, HttpMetrics, RequestMetricsMiddleware


class _Route:
    path = "/api/v1/jobs/{job_id}"


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _noop(*_: Any) -> Any:
    return {"type": "http.request", "body": b""}


async def test_series_use_templates_and_known_methods() -> None:
    metrics = HttpMetrics()
    mw = RequestMetricsMiddleware(_app, metrics)
    scopes = [
        {"type": "http", "method": "GET", "path": "/api/v1/jobs/12", "route": _Route()},
        {"type": "http", "method": "GET", "path": "/api/v1/jobs/13", "route": _Route()},
        {"type": "http", "method": "POST", "path": "/api/v1/jobconfigs/7/run"},
        {"type": "http", "method": "POST", "path": "/api/v1/jobs"},
        {"type": "http", "method": "BREW", "path": "/no/such/1"},
        {"type": "http", "method": "BREW2", "path": "/no/such/2"},
    ]
    for scope in scopes:
        await mw(scope, _noop, _noop)
    assert set(metrics.series) == {
        ("GET", "/api/v1/jobs/{job_id}", 404),
        ("POST", "/api/v1/jobconfigs/{jobconfig_id}/run", 404),
        ("POST", "/api/v1/jobs", 404),
        ("OTHER", UNMATCHED, 404),
    }
    text = generate_latest(metrics.registry).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    key = (("method", "GET"), ("route", "/api/v1/jobs/{job_id}"), ("status", "404"))
    assert samples[("jobyard_http_request_duration_seconds_count", key)] == 2
    assert samples[("jobyard_http_request_duration_seconds_bucket", (("le", "+Inf"), *key))] == 2
