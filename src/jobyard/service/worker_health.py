"""Worker health as the server knows it: heartbeats, slots, the jobs each worker holds.

What exists today is the ``workers`` table (one row per worker process: local slots of
``jobyard up`` and its worker processes, refreshed by each heartbeat) and the jobs held
(INITIALIZING or RUNNING, with the holder's ``worker_id``). Remote workers will report
through the same table. The console's workers page (:func:`workers`) and
``GET /api/v1/workers`` (:func:`workers_page`) answer from the same function, so both
show the same health and hide the same jobs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from jobyard.core.cursors import decode_cursor, encode_cursor
from jobyard.core.errors import Forbidden, NotFound
from jobyard.core.models import Job, WorkerInfo
from jobyard.core.timeutil import utcnow
from jobyard.service import access, auditlog
from jobyard.service.context import Context, Principal

#: Lost workers last heard from longer ago than this are left out (counted only).
LOST_SHOWN_FOR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class WorkerHealth:
    """One worker: its heartbeat state, its slots and what it holds.

    ``busy`` counts every job it holds; ``jobs`` are those the caller may view (the
    others are neither named nor numbered).
    """

    worker: WorkerInfo
    state: str  # healthy | late | lost | draining
    heartbeat_age_seconds: float
    busy: int
    jobs: list[Job]


@dataclass(frozen=True, slots=True)
class Workers:
    """The workers page: workers by pool and name, and how many lost ones were left out."""

    at: datetime
    workers: list[WorkerHealth]
    older_lost: int
    slots_total: int
    slots_busy: int


def state_of(info: WorkerInfo, age_seconds: float, heartbeat: float, lease: float) -> str:
    """``healthy`` within three heartbeats, ``late`` until a lease would expire (its jobs
    still count as held), ``lost`` beyond; ``draining`` while alive and draining, or
    asked to drain (from the request on, before its next heartbeat acknowledges it)."""
    if age_seconds > max(lease, 3 * heartbeat):
        return "lost"
    if age_seconds > 3 * heartbeat:
        return "late"
    return "draining" if info.draining or info.drain_requested else "healthy"


async def workers(ctx: Context, principal: Principal) -> Workers:
    """Every worker heard from recently, with its slots in use and the jobs it holds."""
    now = utcnow()
    known = await ctx.store.workers_list()
    held = await ctx.store.jobs_held_by_workers([w.id for w in known])
    by_worker: dict[str, list[Job]] = {}
    for job in held:
        if job.worker_id is not None:
            by_worker.setdefault(job.worker_id, []).append(job)
    found: list[WorkerHealth] = []
    older = 0
    s = ctx.settings
    for info in sorted(known, key=lambda w: (w.pool, w.name)):
        age = max(0.0, (now - info.heartbeat_at).total_seconds())
        state = state_of(info, age, s.heartbeat_seconds, s.lease_seconds)
        mine = by_worker.get(info.id, [])
        if state == "lost" and not mine and now - info.heartbeat_at > LOST_SHOWN_FOR:
            older += 1
            continue
        visible = []
        for job in sorted(mine, key=lambda j: j.id):
            with contextlib.suppress(Forbidden, NotFound):
                await access.require_job(ctx, principal, "view", job)
                visible.append(job)
        found.append(WorkerHealth(info, state, age, len(mine), visible))
    alive = [w for w in found if w.state in ("healthy", "draining", "late")]
    return Workers(
        at=now,
        workers=found,
        older_lost=older,
        slots_total=sum(w.worker.slots for w in alive),
        slots_busy=sum(w.busy for w in alive),
    )


@dataclass(frozen=True, slots=True)
class WorkersPage:
    """A page of :func:`workers` for the API: the totals cover every worker shown,
    ``workers`` only this page; ``next_cursor`` continues after it."""

    listing: Workers
    next_cursor: str | None


async def workers_page(
    ctx: Context, principal: Principal, *, cursor: str | None, limit: int
) -> WorkersPage:
    """``GET /api/v1/workers``: :func:`workers` (the console's workers page), a page at
    a time, in its order (pool, then name).

    The cursor is a position in that order: a worker registering meanwhile may shift a
    later page by one (the listing is small and for people; nothing depends on it).
    """
    start = decode_cursor(cursor) or 0
    listing = await workers(ctx, principal)
    page = listing.workers[start : start + limit]
    end = start + len(page)
    more = end < len(listing.workers)
    return WorkersPage(replace(listing, workers=page), encode_cursor(end) if more else None)


async def request_drain(
    ctx: Context, principal: Principal, worker_id: str, *, remote_addr: str | None = None
) -> WorkerInfo:
    """Ask a worker to drain (admins only): its next heartbeat's answer tells it to claim
    no new jobs and let its running ones finish; the workers list shows it ``draining``
    from now on. Asking again changes nothing. ``NotFound`` for an unknown worker id.
    """
    access.refuse_job_token(principal, "drain a worker")
    if not principal.unbounded_admin:
        raise Forbidden(
            "only an admin may drain a worker: ask an admin, or use an admin's token",
            {"required_role": "admin"},
        )
    info = await ctx.store.worker_request_drain(worker_id)
    await auditlog.record(
        ctx, principal, "worker.drain", "worker", worker_id, {"pool": info.pool}, remote_addr
    )
    return info
