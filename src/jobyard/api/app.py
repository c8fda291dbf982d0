"""The ASGI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from jobyard import __version__
from jobyard.api.auth import AuthMiddleware
from jobyard.api.errors import install_error_handlers
from jobyard.api.hotpath import HotPathMiddleware
from jobyard.api.limits import BodyLimitMiddleware
from jobyard.api.metrics import HttpMetrics, RequestMetricsMiddleware
from jobyard.api.routes import access as access_routes
from jobyard.api.routes import admin as admin_routes
from jobyard.api.routes import cron, health, jobconfigs, jobs, packages, schedules
from jobyard.api.routes import macros as macro_routes
from jobyard.api.routes import stats as stats_routes
from jobyard.api.routes import templates as template_routes
from jobyard.api.routes import users as user_routes
from jobyard.settings import Settings


def create_app(settings: Settings, *, example: bool = False) -> FastAPI:
    """Build the API; its lifespan starts the runtime (store, workers, maintenance)."""
    from jobyard.runtime import Runtime

    runtime = Runtime(settings, example=example)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        app.state.ctx = runtime.ctx
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="jobyard",
        version=__version__,
        description="Self-hosted job execution manager: packages, jobconfigs, jobs, logs.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # FastAPI's built-in OpenTelemetry looks up the global providers on every
        # request; jobyard exports no traces, metrics or logs through it.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    # The last one added runs first: request metrics, authentication, then the body
    # limits (which need the caller to count its uploads), then the job path's submit
    # routes.
    app.add_middleware(HotPathMiddleware)
    app.add_middleware(BodyLimitMiddleware, settings=settings)
    app.add_middleware(AuthMiddleware)
    # Outermost: request latency by route template, for /metrics (this app's own).
    app.state.http_metrics = HttpMetrics()
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.http_metrics)
    # Routes are matched in order: the job path's (submit, run a jobconfig) come first.
    for module in (
        jobs,
        jobconfigs,
        health,
        packages,
        template_routes,
        user_routes,
        macro_routes,
        schedules,
        cron,
        access_routes,
        admin_routes,
        stats_routes,
    ):
        app.include_router(module.router)
    return app
