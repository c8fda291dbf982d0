"""What the request-latency middleware of ``/metrics`` adds to each request.

A micro-benchmark: one ASGI call of a trivial app (it answers 201 with a small body,
as the submit fast path does), bare and wrapped in ``RequestMetricsMiddleware``, for
a route FastAPI matched (template from ``scope["route"]``) and for a fast-path submit
(template from the path patterns). Prints the time per call and the difference.

    .venv/bin/python benchmarks/bench_metrics_middleware.py [--calls 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from jobyard.api.metrics import HttpMetrics, RequestMetricsMiddleware


class _Route:
    path = "/api/v1/jobs/{job_id}"


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _send(message: Any) -> None:
    return None


async def _receive() -> Any:
    return {"type": "http.request", "body": b""}


async def _time(app: Any, scope: dict[str, Any], calls: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            await app(dict(scope), _receive, _send)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


async def main(calls: int) -> None:
    wrapped = RequestMetricsMiddleware(_app, HttpMetrics())
    scopes = {
        "routed (scope['route'])": {
            "type": "http", "method": "GET", "path": "/api/v1/jobs/12", "route": _Route(),
        },
        "fast-path submit (pattern)": {
            "type": "http", "method": "POST", "path": "/api/v1/jobconfigs/7/run",
        },
    }  # fmt: skip
    for name, scope in scopes.items():
        bare = await _time(_app, scope, calls)
        with_mw = await _time(wrapped, scope, calls)
        print(
            f"{name}: bare {bare * 1e6:.2f} us, with the middleware {with_mw * 1e6:.2f} us, "
            f"overhead {(with_mw - bare) * 1e6:.2f} us per request"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    asyncio.run(main(parser.parse_args().calls))
