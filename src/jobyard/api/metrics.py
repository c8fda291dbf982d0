"""HTTP request latency by route template, for ``/metrics``: a pure ASGI middleware.

It runs on every request (the submit fast path of :mod:`jobyard.api.hotpath`
included), so it does as little as it can: a clock read at the start and at the end,
the status noted from the response start, and one list increment into a histogram
this app instance owns. The route label is the matched route's template
(``/api/v1/jobs/{job_id}``), never the raw path, so ids cannot blow up the number of
series; requests no route matched are ``(unmatched)``, the submit routes the fast
path answers before routing get their templates from :data:`FAST_ROUTES`.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Upper bounds (seconds) of the request latency histogram.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
UNMATCHED = "(unmatched)"
#: Methods labelled as themselves; any other is ``OTHER``.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: POST routes answered before routing (api/hotpath.py, api/worker_hotpath.py): (path
#: pattern, template).
FAST_ROUTES = (
    (re.compile(r"/api/v1/worker/acquire"), "/api/v1/worker/acquire"),
    (re.compile(r"/api/v1/worker/reports"), "/api/v1/worker/reports"),
    (re.compile(r"/api/v1/jobs/?"), "/api/v1/jobs"),
    (re.compile(r"/api/v1/jobconfigs/[^/]+/run/?"), "/api/v1/jobconfigs/{jobconfig_id}/run"),
)


class HttpMetrics(Collector):
    """The request-latency histogram of one app instance, in its own registry.

    Plain lists bumped without locks (every request is observed on the event loop's
    thread), turned into a Prometheus histogram only when scraped: prometheus-client's
    own ``Histogram.labels().observe()`` costs several microseconds per request.
    """

    def __init__(self) -> None:
        # (method, route, status) -> [count per bucket (last: +Inf), sum]
        self.series: dict[tuple[str, str, int], tuple[list[int], list[float]]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def observe(self, key: tuple[str, str, int], seconds: float) -> None:
        """Count one request of ``key`` that took ``seconds``."""
        entry = self.series.get(key)
        if entry is None:
            entry = self.series[key] = ([0] * (len(LATENCY_BUCKETS) + 1), [0.0])
        entry[0][bisect_left(LATENCY_BUCKETS, seconds)] += 1
        entry[1][0] += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """The histogram as Prometheus sees it (cumulative buckets)."""
        family = HistogramMetricFamily(
            "jobyard_http_request_duration_seconds",
            "Time to answer an HTTP request (to the end of its body), by route template.",
            labels=["method", "route", "status"],
        )
        for (method, route, status), (counts, total) in sorted(self.series.items()):
            cumulative = list(accumulate(counts))
            buckets = [
                (repr(float(b)), float(n))
                for b, n in zip(LATENCY_BUCKETS, cumulative[:-1], strict=True)
            ]
            buckets.append(("+Inf", float(cumulative[-1])))
            family.add_metric([method, route, str(status)], buckets, total[0])
        yield family


def route_template(scope: Scope) -> str:
    """The template of the route that answered (never the raw path)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if scope.get("method") == "POST":
        raw = scope.get("path", "")
        for pattern, template in FAST_ROUTES:
            if pattern.fullmatch(raw):
                return template
    return UNMATCHED


class RequestMetricsMiddleware:
    """Observe each HTTP request's latency under (method, route template, status)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

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
            method = scope["method"]
            if method not in METHODS:
                method = "OTHER"  # clients may send any token: keep the series bounded
            self.metrics.observe(
                (method, route_template(scope), status), time.perf_counter() - start
            )
