"""Pools nobody serves: say so when a jobconfig is written and when a job waits.

A job is acquired only by workers of its pool. A jobconfig naming a pool that no live
worker serves (a typo, ``gpu`` before the GPU host is set up) is valid, and its jobs
simply wait QUEUED until such a worker registers, which looks like a hang. So writes of
jobconfigs (the REST routes, template import and clone, apply) still succeed but carry
a ``pool_unserved`` :class:`~jobyard.core.models.Notice`, and a QUEUED job in such a
pool says why it waits (``waiting_reason``).

"Serves" means: a worker of that pool whose heartbeat is ``healthy`` or ``late``
(:func:`jobyard.service.worker_health.state_of`). A ``lost`` worker serves nothing, and
neither does a ``draining`` one (it takes no new jobs). Only the ``workers`` table is
read, at write time and when one job is shown: nothing on the job path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

from jobyard.core.jobs import JobStatus
from jobyard.core.models import Job, JobConfig, Notice
from jobyard.core.timeutil import utcnow
from jobyard.service.context import Context
from jobyard.service.worker_health import state_of

#: Heartbeat states whose worker acquires new jobs of its pool.
SERVING = frozenset({"healthy", "late"})
#: The code of the notice (stable: scripts may match it).
POOL_UNSERVED = "pool_unserved"


@dataclass(frozen=True, slots=True)
class Saved:
    """A jobconfig as written, and what the caller should know about it."""

    jobconfig: JobConfig
    warnings: list[Notice]


async def served_pools(ctx: Context) -> set[str]:
    """The pools that have at least one worker acquiring new jobs now."""
    now = utcnow()
    s = ctx.settings
    served: set[str] = set()
    for info in await ctx.store.workers_list():
        age = max(0.0, (now - info.heartbeat_at).total_seconds())
        if state_of(info, age, s.heartbeat_seconds, s.lease_seconds) in SERVING:
            served.add(info.pool)
    return served


async def unserved(ctx: Context, jobconfigs: Iterable[tuple[str, str]]) -> list[Notice]:
    """One ``pool_unserved`` notice per pool of ``(jobconfig name, pool)`` that no live
    worker serves, naming its jobconfigs; by pool name. Empty when every pool is served
    (and then the ``workers`` table is read once)."""
    by_pool: dict[str, list[str]] = {}
    for name, pool in jobconfigs:
        by_pool.setdefault(pool, []).append(name)
    if not by_pool:
        return []
    served = await served_pools(ctx)
    notices: list[Notice] = []
    for pool in sorted(set(by_pool) - served):
        names = sorted(set(by_pool[pool]))
        which = ", ".join(repr(n) for n in names)
        notices.append(
            Notice(
                POOL_UNSERVED,
                f"no worker serves pool {pool!r}: jobs of jobconfig {which} will wait QUEUED "
                "until a worker of that pool registers (see GET /api/v1/workers)",
                {"pool": pool, "jobconfigs": names},
            )
        )
    return notices


async def noting_pools(ctx: Context, write: Awaitable[JobConfig]) -> Saved:
    """Run a jobconfig write (create, replace, patch) and add the warning its pool
    calls for. The write is done first: a refused one raises and reads no workers."""
    jobconfig = await write
    return Saved(jobconfig, await unserved(ctx, [(jobconfig.name, jobconfig.pool)]))


async def waiting_reason(ctx: Context, job: Job) -> Notice | None:
    """Why a QUEUED job is not being acquired, when the reason is that no live worker
    serves its pool; None otherwise (other statuses, or a served pool)."""
    if job.status != JobStatus.QUEUED or job.pool in await served_pools(ctx):
        return None
    return Notice(
        POOL_UNSERVED,
        f"no worker serves pool {job.pool!r}: the job waits QUEUED until a worker of that "
        "pool registers (see GET /api/v1/workers)",
        {"pool": job.pool},
    )
