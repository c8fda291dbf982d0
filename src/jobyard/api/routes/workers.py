"""``GET /api/v1/workers``: the worker registry, as the console's workers page shows it.

Every caller with a token may list workers (what runs their jobs, and whether anything
serves a pool); host, process id and version are for admins only, as host and PID are
on the console's page. The
jobs a worker holds are listed only when the caller may view them, the others counted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from jobyard.api.deps import Caller, Ctx, require_principal
from jobyard.api.dto import CURSOR_HELP, json_response
from jobyard.api.openapi import errors
from jobyard.api.routes.access import client_address
from jobyard.core.jobs import JobStatus
from jobyard.service import worker_health
from jobyard.service.worker_health import WorkerHealth

router = APIRouter(
    prefix="/api/v1/workers",
    tags=["workers"],
    dependencies=[Depends(require_principal)],
    responses=errors(401, 422),
)

Health = Literal["healthy", "late", "lost", "draining"]


class HeldJobOut(BaseModel):
    """A job the worker holds (INITIALIZING or RUNNING) that the caller may view."""

    id: int
    status: JobStatus
    jobconfig_id: int | None


class WorkerOut(BaseModel):
    """One worker process, as of its last heartbeat."""

    id: str = Field(description="Its id (jobs it ran name it as their worker_id).")
    name: str
    kind: str = Field(description="'local' (slots of a jobyard up) or 'remote'.")
    pool: str = Field(description="The pool whose jobs it acquires.")
    labels: dict[str, str] = Field(
        description="Labels it was started with (none yet for local slots)."
    )
    slots: int = Field(description="Jobs it may run at once.")
    slots_busy: int = Field(description="Jobs it holds now (all of them, viewable or not).")
    health: Health = Field(
        description="healthy (heard within 3 heartbeats), late (until its jobs' leases "
        "would expire), lost (beyond: its jobs end FAILED), draining (alive, takes no "
        "new jobs)."
    )
    draining: bool = Field(description="It reported that it takes no new jobs.")
    drain_requested: bool = Field(
        description="An admin asked it to drain (POST /workers/{id}/drain)."
    )
    started_at: datetime
    heartbeat_at: datetime = Field(description="Its last heartbeat.")
    heartbeat_age_seconds: float = Field(description="Seconds since then, at the answer.")
    jobs: list[HeldJobOut] = Field(description="The jobs it holds that you may view, by id.")
    jobs_hidden: int = Field(description="How many more it holds that you may not view.")
    host: str | None = Field(description="Host name (admins only; null for others).")
    pid: int | None = Field(description="Process id on that host (admins only).")
    version: str | None = Field(
        description="The jobyard version it runs (admins only; null before its first "
        "heartbeat since the upgrade that records it)."
    )

    @classmethod
    def of(cls, health: WorkerHealth, *, admin: bool) -> WorkerOut:
        """Build from the service's record; host and pid only for an admin."""
        w = health.worker
        state: Health = health.state  # type: ignore[assignment]
        return cls(
            id=w.id,
            name=w.name,
            kind=w.kind,
            pool=w.pool,
            labels=dict(w.labels),
            slots=w.slots,
            slots_busy=health.busy,
            health=state,
            draining=w.draining,
            drain_requested=w.drain_requested,
            started_at=w.started_at,
            heartbeat_at=w.heartbeat_at,
            heartbeat_age_seconds=round(health.heartbeat_age_seconds, 3),
            jobs=[
                HeldJobOut(id=j.id, status=j.status, jobconfig_id=j.jobconfig_id)
                for j in health.jobs
            ],
            jobs_hidden=health.busy - len(health.jobs),
            host=w.host if admin else None,
            pid=w.pid if admin else None,
            version=w.version if admin else None,
        )


class WorkerPage(BaseModel):
    """A page of workers, with totals over every worker listed (all pages)."""

    items: list[WorkerOut]
    next_cursor: str | None
    at: datetime = Field(description="When the heartbeats were read.")
    slots_total: int = Field(description="Slots of the workers not lost.")
    slots_busy: int = Field(description="Jobs held by the workers not lost.")
    older_lost: int = Field(
        description="Workers lost more than an hour ago and holding nothing: left out."
    )


@router.get("", response_model=WorkerPage)
async def list_workers(
    ctx: Ctx,
    caller: Caller,
    cursor: Annotated[str | None, Query(description=CURSOR_HELP)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    """List the workers heard from in the last hour (and lost ones still holding jobs),
    by pool and name, with their health, slots in use and the jobs they hold.

    Host, pid and version are shown to admins only; jobs the caller may not view are counted in
    ``jobs_hidden``, never named.
    """
    page = await worker_health.workers_page(ctx, caller, cursor=cursor, limit=limit)
    listing = page.listing
    body = WorkerPage(
        items=[WorkerOut.of(w, admin=caller.is_admin) for w in listing.workers],
        next_cursor=page.next_cursor,
        at=listing.at,
        slots_total=listing.slots_total,
        slots_busy=listing.slots_busy,
        older_lost=listing.older_lost,
    )
    return json_response(body)


class DrainOut(BaseModel):
    """The drain request as recorded; the worker acts on it at its next heartbeat."""

    id: str
    pool: str
    drain_requested: bool
    draining: bool = Field(description="Whether it already reported draining.")


@router.post(
    "/{worker_id}/drain",
    status_code=202,
    response_model=DrainOut,
    responses=errors(403, 404),
)
async def drain_worker(
    ctx: Ctx,
    caller: Caller,
    request: Request,
    worker_id: Annotated[str, Path(max_length=200)],
) -> DrainOut:
    """Ask a worker to drain (admins only): at its next heartbeat it stops claiming jobs
    and lets the running ones finish; a remote worker then exits, the local slots of
    ``jobyard up`` stay idle. 202: asked (again is harmless); 404: no such worker."""
    info = await worker_health.request_drain(
        ctx, caller, worker_id, remote_addr=client_address(request)
    )
    return DrainOut(
        id=info.id, pool=info.pool, drain_requested=info.drain_requested, draining=info.draining
    )
