"""How the console joins the server's ASGI application."""

from __future__ import annotations

from fastapi import FastAPI

from jobyard.web import admin, config, jobconfig_edit, packages, people
from jobyard.web.routes import router
from jobyard.web.session import Renewals


def install(app: FastAPI) -> None:
    """Add the console's pages and static files to ``app`` (left out of the OpenAPI)."""
    app.state.console_renewals = Renewals()
    # Before the pages of routes.py: /jobconfigs/new must not be read as a jobconfig id.
    app.include_router(jobconfig_edit.router)
    app.include_router(packages.router)
    app.include_router(config.router)
    app.include_router(router)
    for pages in (people, admin):  # users, own account, tokens; policies, audit
        app.include_router(pages.router)
