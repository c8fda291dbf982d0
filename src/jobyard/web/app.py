"""How the console joins the server's ASGI application."""

from __future__ import annotations

from fastapi import FastAPI

from jobyard.web.routes import router


def install(app: FastAPI) -> None:
    """Add the console's pages and static files to ``app`` (left out of the OpenAPI)."""
    app.include_router(router)
