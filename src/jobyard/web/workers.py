"""The workers page: heartbeat health, slots in use and the jobs each worker holds."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from jobyard.core.errors import JobyardError
from jobyard.service import worker_health
from jobyard.web.pages import ctx_of, error_page, new_router, signed_in, to_login, view

router = new_router()


@router.get("/workers")
async def workers_page(request: Request) -> Response:
    """Every worker heard from recently (the dashboard shows its summary box)."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    try:
        found = await worker_health.workers(ctx_of(request), resolved.principal)
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    return view(request, resolved, "workers.html", {"nav": "workers", "w": found})
