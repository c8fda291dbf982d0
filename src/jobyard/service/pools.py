"""Pools nobody serves: say so when a jobconfig is written and when a job waits.

A job is acquired only by workers of its pool that have every worker label it requires.
A jobconfig naming a pool that no live worker serves (a typo, ``gpu`` before the GPU
host is set up), or requiring labels no live worker of its pool has (``zone=b`` while
every worker runs in zone a), is valid, and its jobs simply wait QUEUED until such a
worker registers, which looks like a hang. So writes of jobconfigs (the REST routes,
template import and clone, apply) still succeed but carry a ``pool_unserved``
:class:`~jobyard.core.models.Notice`, and a QUEUED job in such a pool says why it
waits (``waiting_reason``).

"Serves" means: a worker of that pool whose heartbeat is ``healthy`` or ``late``
(:func:`jobyard.service.worker_health.state_of`) and that has the required labels. A
``lost`` worker serves nothing, and neither does a ``draining`` one (it takes no new
jobs). Only the ``workers`` table (and, for a jobconfig requiring no labels of its own,
its template) is read, at write time and when one job is shown: nothing on the job path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass

from jobyard.core.errors import NotFound
from jobyard.core.jobs import JobStatus
from jobyard.core.labels import format_labels, missing
from jobyard.core.models import Job, JobConfig, Notice
from jobyard.core.timeutil import utcnow
from jobyard.service.context import Context
from jobyard.service.worker_health import state_of

#: Heartbeat states whose worker acquires new jobs of its pool.
SERVING = frozenset({"healthy", "late"})
#: The code of the notice (stable: scripts may match it).
POOL_UNSERVED = "pool_unserved"

#: ``(jobconfig name, pool)``, or with the worker labels its jobs require.
Served = tuple[str, str] | tuple[str, str, Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class Saved:
    """A jobconfig as written, and what the caller should know about it."""

    jobconfig: JobConfig
    warnings: list[Notice]


async def serving_workers(ctx: Context) -> dict[str, list[Mapping[str, str]]]:
    """Pool -> the labels of each of its workers acquiring new jobs now."""
    now = utcnow()
    s = ctx.settings
    served: dict[str, list[Mapping[str, str]]] = {}
    for info in await ctx.store.workers_list():
        age = max(0.0, (now - info.heartbeat_at).total_seconds())
        if state_of(info, age, s.heartbeat_seconds, s.lease_seconds) in SERVING:
            served.setdefault(info.pool, []).append(info.labels)
    return served


async def served_pools(ctx: Context) -> set[str]:
    """The pools that have at least one worker acquiring new jobs now."""
    return set(await serving_workers(ctx))


def _why(pool: str, labels: Mapping[str, str], workers: list[Mapping[str, str]]) -> str | None:
    """Why no worker of ``workers`` (of ``pool``) takes a job requiring ``labels``; None
    when one does."""
    if not workers:
        return f"no worker serves pool {pool!r}"
    if any(not missing(labels, have) for have in workers):
        return None
    return f"no live worker of pool {pool!r} has labels {format_labels(labels)}"


def _awaited(labels: Mapping[str, str]) -> str:
    return "a worker of that pool with those labels" if labels else "a worker of that pool"


async def unserved(ctx: Context, jobconfigs: Iterable[Served]) -> list[Notice]:
    """One ``pool_unserved`` notice per pool (and required labels) of ``jobconfigs`` that
    no live worker serves, naming its jobconfigs; by pool name, then labels. Empty when
    every one is served (and then the ``workers`` table is read once)."""
    by_need: dict[tuple[str, str], tuple[dict[str, str], list[str]]] = {}
    for entry in jobconfigs:
        name, pool = entry[0], entry[1]
        labels = dict(entry[2]) if len(entry) > 2 else {}
        key = (pool, format_labels(labels))
        by_need.setdefault(key, (labels, []))[1].append(name)
    if not by_need:
        return []
    serving = await serving_workers(ctx)
    notices: list[Notice] = []
    for (pool, _shown), (labels, named) in sorted(by_need.items()):
        why = _why(pool, labels, serving.get(pool, []))
        if why is None:
            continue
        names = sorted(set(named))
        which = ", ".join(repr(n) for n in names)
        details: dict[str, object] = {"pool": pool, "jobconfigs": names}
        if labels:
            details["labels"] = labels
        notices.append(
            Notice(
                POOL_UNSERVED,
                f"{why}: jobs of jobconfig {which} will wait QUEUED until {_awaited(labels)} "
                "registers (see GET /api/v1/workers)",
                details,
            )
        )
    return notices


async def required_labels(ctx: Context, jobconfig: JobConfig) -> dict[str, str]:
    """The worker labels the jobconfig's jobs will require: its own, else its template's."""
    if jobconfig.labels or jobconfig.template_id is None:
        return dict(jobconfig.labels)
    try:
        return dict((await ctx.store.template_get(jobconfig.template_id)).labels)
    except NotFound:
        return {}


async def noting_pools(ctx: Context, write: Awaitable[JobConfig]) -> Saved:
    """Run a jobconfig write (create, replace, patch) and add the warning its pool
    calls for. The write is done first: a refused one raises and reads no workers."""
    jobconfig = await write
    labels = await required_labels(ctx, jobconfig)
    return Saved(jobconfig, await unserved(ctx, [(jobconfig.name, jobconfig.pool, labels)]))


async def waiting_reason(ctx: Context, job: Job) -> Notice | None:
    """Why a QUEUED job is not being acquired, when the reason is that no live worker of
    its pool (with the labels it requires) serves it; None otherwise (other statuses, or
    a served job)."""
    if job.status != JobStatus.QUEUED:
        return None
    labels = job.labels or {}
    why = _why(job.pool, labels, (await serving_workers(ctx)).get(job.pool, []))
    if why is None:
        return None
    details: dict[str, object] = {"pool": job.pool}
    if labels:
        details["labels"] = dict(labels)
    return Notice(
        POOL_UNSERVED,
        f"{why}: the job waits QUEUED until {_awaited(labels)} registers (see GET /api/v1/workers)",
        details,
    )
