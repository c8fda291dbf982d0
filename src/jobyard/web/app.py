"""How the console joins the server's ASGI application."""

from __future__ import annotations

from fastapi import FastAPI

from jobyard.web import admin, config, jobconfig_edit, jobfiles, live, packages, people, workers
from jobyard.web.routes import router
from jobyard.web.session import Renewals
from jobyard.web.streams import Streams


def install(app: FastAPI) -> None:
    """Add the console's pages and static files to ``app`` (left out of the OpenAPI)."""
    app.state.console_renewals = Renewals()
    app.state.console_streams = Streams()
    # Before the pages of routes.py: /jobconfigs/new must not be read as a jobconfig id.
    app.include_router(jobconfig_edit.router)
    app.include_router(packages.router)
    app.include_router(config.router)
    app.include_router(router)
    # live lists and job streams, output files, workers; users, own account, tokens;
    # policies, audit
    for pages in (live, jobfiles, workers, people, admin):
        app.include_router(pages.router)


def close_streams(app: FastAPI) -> None:
    """End the console's open event streams: the server is stopping.

    Called before uvicorn waits for open connections to finish, which a stream would
    otherwise never do (see :class:`jobyard.server.GracefulServer`).
    """
    streams: Streams | None = getattr(app.state, "console_streams", None)
    if streams is not None:
        streams.close_all()
