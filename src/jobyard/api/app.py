"""The ASGI application factory.

The API builds nothing of the running system: the runtime (``jobyard.runtime.Runtime``)
owns the store, the workers and the background loops, and is handed to
:func:`create_app`, whose lifespan only starts and stops it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from fastapi import FastAPI

from jobyard import __version__
from jobyard.api import docs as docs_pages
from jobyard.api.auth import OPEN_PATHS, AuthMiddleware
from jobyard.api.door import JobyardAPI
from jobyard.api.errors import install_error_handlers
from jobyard.api.limits import BodyLimitMiddleware
from jobyard.api.metrics import HttpMetrics, RequestMetricsMiddleware
from jobyard.api.openapi import DESCRIPTION, install_openapi, summarize
from jobyard.api.routes import access as access_routes
from jobyard.api.routes import admin as admin_routes
from jobyard.api.routes import apply as apply_routes
from jobyard.api.routes import cron, health, jobconfigs, jobs, packages, schedules
from jobyard.api.routes import macros as macro_routes
from jobyard.api.routes import stats as stats_routes
from jobyard.api.routes import templates as template_routes
from jobyard.api.routes import users as user_routes
from jobyard.api.routes import worker as remote_worker_routes
from jobyard.api.routes import worker_tokens as worker_token_routes
from jobyard.api.routes import workers as worker_routes
from jobyard.service.context import Context
from jobyard.settings import Settings
from jobyard.web.app import close_streams as close_streams
from jobyard.web.app import install as install_console


class Services(Protocol):
    """What the API needs of the system it serves (``jobyard.runtime.Runtime`` is one).

    ``ctx`` is read once, after :meth:`start`: every request reaches the use cases and
    this server's caches through that one reference.
    """

    @property
    def settings(self) -> Settings:
        """The server's settings (body limits are read from them)."""

    @property
    def ctx(self) -> Context:
        """The use-case context (valid after :meth:`start`)."""

    async def start(self) -> None:
        """Open the store and start workers and background loops."""

    async def stop(self) -> None:
        """Stop what :meth:`start` started."""


def create_app(services: Services) -> FastAPI:
    """The API over ``services``; its lifespan starts them and stops them."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        app.state.ctx = services.ctx
        try:
            yield
        finally:
            await services.stop()

    http_metrics = HttpMetrics()
    app = JobyardAPI(
        settings=services.settings,
        metrics=http_metrics,
        title="jobyard",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # FastAPI's built-in OpenTelemetry looks up the global providers on every
        # request; jobyard exports no traces, metrics or logs through it.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    # The last one added runs first: request metrics, authentication, then the body
    # limits (which need the caller to count its uploads). The job path's submit routes
    # and the remote workers' acquire and reports routes do not come this way: the app's
    # door (api/door.py) does the same for them in one step, then their fast paths.
    app.add_middleware(BodyLimitMiddleware, settings=services.settings)
    app.add_middleware(AuthMiddleware)
    # Outermost: request latency by route template, for /metrics (this app's own).
    app.state.http_metrics = http_metrics
    app.add_middleware(RequestMetricsMiddleware, metrics=http_metrics)
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
        apply_routes,
        stats_routes,
        worker_routes,
        worker_token_routes,
        remote_worker_routes,
        docs_pages,
    ):
        app.include_router(summarize(module.router))
    # The web console (``/``, ``/login``, ``/jobs``...): its own router, outside the API's
    # description; it authenticates with its session cookie, never with a bearer token.
    install_console(app)
    install_openapi(app, OPEN_PATHS)
    return app
