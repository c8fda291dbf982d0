"""HTTP request latency by route template, for ``/metrics``: a pure ASGI middleware.

It runs on every request (the submit fast path of :mod:`jobyard.api.hotpath`
included), so it does as little as it can: one clock read at the start, one when the
response starts (status) and one observation at the end, into a histogram this app
instance owns. The route label is the matched route's template
(``/api/v1/jobs/{job_id}``), never the raw path, so ids cannot blow up the number of
series; requests no route matched are ``(unmatched)``, the submit routes the fast
path answers before routing get their templates from :data:`FAST_ROUTES`.
"""

from __future__ import annotations

import re
import time

from prometheus_client import CollectorRegistry, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Upper bounds (seconds) of the request latency histogram.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
UNMATCHED = "(unmatched)"
#: Routes answered before routing (api/hotpath.py): (method, path pattern, template).
FAST_ROUTES = (
    ("POST", re.compile(r"/api/v1/jobs/?"), "/api/v1/jobs"),
    (
        "POST",
        re.compile(r"/api/v1/jobconfigs/[^/]+/run/?"),
        "/api/v1/jobconfigs/{jobconfig_id}/run",
    ),
)


class HttpMetrics:
    """The request-latency histogram of one app instance, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram(
            "jobyard_http_request_duration_seconds",
            "Time to answer an HTTP request (to the end of its body), by route template.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )


def route_template(scope: Scope) -> str:
    """The template of the route that answered (never the raw path)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    method = scope.get("method", "")
    raw = scope.get("path", "")
    for fast_method, pattern, template in FAST_ROUTES:
        if method == fast_method and pattern.fullmatch(raw):
            return template
    return UNMATCHED


class RequestMetricsMiddleware:
    """Observe each HTTP request's latency under (method, route template, status)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.latency = metrics.latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.latency.labels(scope["method"], route_template(scope), str(status)).observe(
                time.perf_counter() - start
            )
