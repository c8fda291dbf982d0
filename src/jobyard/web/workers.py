"""The workers page: heartbeat health, slots in use and the jobs each worker holds; for
admins, each worker's release (flagged when it is not this server's: mid-upgrade, or
forgotten) and a Drain button (the console's ``POST /api/v1/workers/{id}/drain``)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request
from starlette.responses import Response

from jobyard import __version__
from jobyard.core.errors import JobyardError, NotFound
from jobyard.service import worker_health
from jobyard.web.pages import (
    address,
    ctx_of,
    error_page,
    guarded,
    new_router,
    signed_in,
    to_login,
    view,
)
from jobyard.web.people import done

router = new_router()

#: The longest worker id the registry stores (``workers.id``).
WORKER_ID_MAX = 200


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
    drained = request.query_params.get("drained", "")[:WORKER_ID_MAX]
    notice = None
    if drained:
        notice = (
            f"Worker {drained} was asked to drain: at its next heartbeat it stops taking "
            "jobs and lets its running ones finish."
        )
    values = {"nav": "workers", "w": found, "notice": notice, "server_version": __version__}
    return view(request, resolved, "workers.html", values)


@router.post("/workers/{worker_id}/drain")
async def drain_worker(request: Request, worker_id: str) -> Response:
    """Ask a worker to drain (admins; the API's 403 for others, 404 for unknown ids)."""
    checked = await guarded(request)
    if isinstance(checked, Response):
        return checked
    resolved, _form = checked
    try:
        if len(worker_id) > WORKER_ID_MAX:
            raise NotFound(f"worker {worker_id[:40]}… does not exist")
        await worker_health.request_drain(
            ctx_of(request), resolved.principal, worker_id, remote_addr=address(request)
        )
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    return done(request, resolved, "/workers?" + urlencode({"drained": worker_id}))
