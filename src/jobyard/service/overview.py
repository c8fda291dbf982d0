"""What the web console's pages show, each page from one use case.

Every function here is made of the use cases the API calls (:mod:`jobyard.service.jobs`,
:mod:`jobyard.service.jobconfigs`, :mod:`jobyard.service.stats`,
:mod:`jobyard.service.logs`), with the caller's principal: a page shows exactly what
the same user could read through the API, and nothing of an object they may not view.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from jobyard.core.errors import Forbidden, InvalidInput, NotFound
from jobyard.core.jobs import ABORTABLE, CANCELLABLE, TERMINAL, JobStatus
from jobyard.core.models import Job, JobConfig, JobEvent, JobFile, JobFilter
from jobyard.core.retries import RetryLinks
from jobyard.core.stats import Summary
from jobyard.core.timeutil import utcnow
from jobyard.service import access, jobconfigs, jobs, logs, stats
from jobyard.service.context import Context, Principal
from jobyard.service.stats import BucketStats

#: Statuses of jobs that have not ended, in the order of their life.
OPEN_STATUSES: tuple[JobStatus, ...] = tuple(s for s in JobStatus if s not in TERMINAL)
#: End statuses, in the order the dashboard shows them.
END_STATUSES: tuple[JobStatus, ...] = (
    JobStatus.FINISHED,
    JobStatus.ERROR,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
)
#: Open jobs counted one by one for "now": beyond this the count shows as "N+".
OPEN_COUNT_LIMIT = 1000
_PAGE = 200
RUNNING_SHOWN = 20
FAILURES_SHOWN = 10
#: The end of a log the job page shows.
LOG_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A job a worker holds, with how long it has been going."""

    job: Job
    elapsed_seconds: float


@dataclass(frozen=True, slots=True)
class Dashboard:
    """The dashboard of one caller: only jobs and jobconfigs it may view."""

    at: datetime
    open_counts: dict[str, int]
    open_capped: bool
    last_hour: Summary
    last_day: Summary
    buckets: list[BucketStats]
    folded_at: datetime | None
    running: list[RunningJob]
    failures: list[Job]
    jobconfig_names: dict[int, str]


async def jobconfig_names(ctx: Context, principal: Principal) -> dict[int, str]:
    """Names of the jobconfigs the caller may view, by id."""
    names: dict[int, str] = {}
    cursor: str | None = None
    while True:
        page = await jobconfigs.list_(ctx, principal, name=None, cursor=cursor, limit=500)
        names.update((jc.id, jc.name) for jc in page.items)
        if page.next_cursor is None:
            return names
        cursor = page.next_cursor


async def _open_counts(ctx: Context, principal: Principal) -> tuple[dict[str, int], bool]:
    counts = {s.value: 0 for s in OPEN_STATUSES}
    seen, cursor = 0, None
    flt = JobFilter(statuses=OPEN_STATUSES)
    while seen < OPEN_COUNT_LIMIT:
        page = await jobs.list_(ctx, principal, flt, cursor=cursor, limit=_PAGE)
        for job in page.items:
            counts[job.status.value] += 1
        seen += _PAGE
        if page.next_cursor is None:
            return counts, False
        cursor = page.next_cursor
    return counts, True


async def _first(
    ctx: Context, principal: Principal, flt: JobFilter, want: int, max_pages: int = 5
) -> list[Job]:
    """Up to ``want`` newest jobs the caller may view. A listing page may hold fewer
    items than asked (those it may not view are left out), so a few pages are read."""
    found: list[Job] = []
    cursor: str | None = None
    for _ in range(max_pages):
        page = await jobs.list_(ctx, principal, flt, cursor=cursor, limit=want)
        found.extend(page.items)
        if len(found) >= want or page.next_cursor is None:
            break
        cursor = page.next_cursor
    return found[:want]


async def dashboard(ctx: Context, principal: Principal) -> Dashboard:
    """Counts by status now and over the last hour and day, running jobs, failures."""
    now = utcnow()
    counts, capped = await _open_counts(ctx, principal)
    day = await stats.jobstats(ctx, principal, since=now - timedelta(hours=24), bucket="hour")
    hour_start = now - timedelta(hours=1)
    last_hour = Summary()
    for bucket in day.buckets:
        if bucket.start + timedelta(hours=1) > hour_start:
            last_hour.merge(bucket.summary)
    held = await _first(ctx, principal, JobFilter(statuses=tuple(ABORTABLE)), RUNNING_SHOWN)
    running = [
        RunningJob(j, (now - (j.started_at or j.acquired_at or j.created_at)).total_seconds())
        for j in held
    ]
    failed = await _first(
        ctx, principal, JobFilter(statuses=(JobStatus.ERROR, JobStatus.FAILED)), FAILURES_SHOWN
    )
    return Dashboard(
        at=now,
        open_counts=counts,
        open_capped=capped,
        last_hour=last_hour,
        last_day=day.overall,
        buckets=day.buckets,
        folded_at=day.folded_at,
        running=running,
        failures=failed,
        jobconfig_names=await jobconfig_names(ctx, principal),
    )


#: The console's time ranges for job lists: name -> how far back.
SINCE: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}


#: How a page of jobs may be ordered: name -> (key, descending). By id (``-id``, ``id``)
#: the store pages through the whole history that way (an index walk at any size); by
#: end or run time the listing stays newest first and the sort orders the page shown
#: (no index orders those, and run time is not a column).
SORTS: dict[str, tuple[str, bool]] = {
    "-id": ("id", True),
    "id": ("id", False),
    "-ended": ("ended", True),
    "ended": ("ended", False),
    "-duration": ("duration", True),
    "duration": ("duration", False),
}


def run_seconds(job: Job) -> float | None:
    """How long a job ran (started to ended, or to now while it runs); None if it never ran."""
    if job.started_at is None:
        return None
    return ((job.ended_at or utcnow()) - job.started_at).total_seconds()


def sort_jobs(items: list[Job], sort: str | None) -> list[Job]:
    """``items`` in the order ``sort`` names (:data:`SORTS`); jobs without the value last.

    422 for an unknown order, saying which exist.
    """
    if not sort or sort == "-id":
        return items
    if sort not in SORTS:
        raise InvalidInput(
            f"unknown sort {sort[:40]!r}: one of {', '.join(SORTS)}", {"field": "sort"}
        )
    key, descending = SORTS[sort]

    def value(job: Job) -> float:
        if key == "id":
            return float(job.id)
        if key == "ended":
            return job.ended_at.timestamp() if job.ended_at else float("nan")
        seconds = run_seconds(job)
        return float("nan") if seconds is None else seconds

    known = [j for j in items if value(j) == value(j)]  # NaN: no value
    missing = [j for j in items if value(j) != value(j)]
    known.sort(key=lambda j: (value(j), j.id), reverse=descending)
    return known + missing


@dataclass(frozen=True, slots=True)
class JobList:
    """A page of jobs, with the names of the jobconfigs the caller may view."""

    jobs: list[Job]
    next_cursor: str | None
    jobconfig_names: dict[int, str]


async def job_list(
    ctx: Context,
    principal: Principal,
    *,
    status: str | None,
    jobconfig_id: int | None,
    submitted_by: str | None,
    since: str | None,
    cursor: str | None,
    limit: int,
    sort: str | None = None,
) -> JobList:
    """Jobs the caller may view, filtered (the API's listing underneath): newest first,
    or oldest first through the whole history for ``sort=id``; other sorts order the
    page's jobs (:func:`sort_jobs`)."""
    if sort and sort not in SORTS:
        sort_jobs([], sort)  # 422 before any query
    if status is not None and status not in JobStatus.__members__:
        raise InvalidInput(
            f"unknown status {status[:40]!r}: one of {', '.join(JobStatus.__members__)}",
            {"field": "status"},
        )
    if since is not None and since not in SINCE:
        raise InvalidInput(
            f"unknown time range {since[:40]!r}: one of {', '.join(SINCE)}", {"field": "since"}
        )
    flt = JobFilter(
        jobconfig_id=jobconfig_id,
        statuses=(JobStatus(status),) if status else None,
        submitted_by=submitted_by,
        created_after=utcnow() - SINCE[since] if since else None,
    )
    page = await jobs.list_(
        ctx, principal, flt, cursor=cursor, limit=limit, oldest_first=sort == "id"
    )
    items = sort_jobs(page.items, sort)
    return JobList(items, page.next_cursor, await jobconfig_names(ctx, principal))


@dataclass(frozen=True, slots=True)
class JobDetail:
    """A job as its page shows it: history, the end of its log, what the caller may do."""

    job: Job
    events: list[JobEvent]
    log_tail: str | None
    log_note: str | None
    log_truncated: bool
    may_cancel: bool
    may_abort: bool
    may_rerun: bool
    jobconfig_name: str | None
    #: Files the job left in its LOCAL_JOB_OUT_DIR (what ``GET .../outputs`` lists).
    outputs: tuple[JobFile, ...] = ()
    #: Bytes of log there were when the page was made: a live page follows from there.
    log_size: int = 0
    #: Where it sits in a retry chain (same jobconfig: the caller may view both ends).
    retry: RetryLinks = field(default_factory=RetryLinks)


async def _may(ctx: Context, principal: Principal, action: str, job: Job) -> bool:
    try:
        await access.require_job(ctx, principal, action, job)
    except (Forbidden, NotFound):
        return False
    return True


async def job_detail(ctx: Context, principal: Principal, job_id: int) -> JobDetail:
    """One job the caller may view (the 404 of a missing job otherwise)."""
    job = await jobs.get(ctx, principal, job_id)
    events = await jobs.events(ctx, principal, job_id)
    tail: str | None = None
    note: str | None = None
    truncated = False
    size = 0
    try:
        _, key = await logs.open_log(ctx, principal, job_id)
        size = await ctx.blobs.size(key) or 0
        offset = max(0, size - LOG_TAIL_BYTES)
        truncated = offset > 0
        chunks = [c async for c in logs.stream_log(ctx, job_id, key, offset=offset, follow=False)]
        data = b"".join(chunks)[:LOG_TAIL_BYTES]
        size = offset + len(data)
        tail = data.decode("utf-8", "replace")
    except NotFound as exc:
        note = exc.message
    may_execute = await _may(ctx, principal, "execute", job)
    name = None
    if job.jobconfig_id is not None:
        with contextlib.suppress(NotFound):
            name = (await jobconfigs.get(ctx, principal, job.jobconfig_id)).name
    return JobDetail(
        job=job,
        events=events,
        log_tail=tail,
        log_note=note,
        log_truncated=truncated,
        may_cancel=may_execute and job.status in CANCELLABLE,
        may_abort=may_execute and job.status in ABORTABLE,
        may_rerun=may_execute and job.status in TERMINAL,
        jobconfig_name=name,
        outputs=tuple(await jobs.outputs(ctx, principal, job_id)),
        log_size=size,
        retry=(
            RetryLinks() if job.jobconfig_id is None else await ctx.store.job_retry_links(job.id)
        ),
    )


#: Jobconfigs listed per console page, and their latest jobs shown on a jobconfig's page.
JOBCONFIGS_SHOWN = 500
RECENT_JOBS_SHOWN = 20


@dataclass(frozen=True, slots=True)
class JobconfigRow:
    """A jobconfig with its newest job (None: it never ran, or none the caller may view)."""

    jobconfig: JobConfig
    last_job: Job | None


async def jobconfig_list(
    ctx: Context, principal: Principal, *, search: str | None
) -> tuple[list[JobconfigRow], bool]:
    """The jobconfigs the caller may view whose name or description contains ``search``
    (case-insensitive), by name, each with its newest job; and whether the list was cut
    at :data:`JOBCONFIGS_SHOWN`."""
    needle = (search or "").strip().lower()
    found: list[JobConfig] = []
    cursor: str | None = None
    while True:
        page = await jobconfigs.list_(ctx, principal, name=None, cursor=cursor, limit=500)
        found.extend(
            jc
            for jc in page.items
            if not needle or needle in jc.name.lower() or needle in jc.description.lower()
        )
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    found.sort(key=lambda jc: jc.name)
    cut = len(found) > JOBCONFIGS_SHOWN
    rows = [
        JobconfigRow(jc, await _newest_job(ctx, principal, jc.id))
        for jc in found[:JOBCONFIGS_SHOWN]
    ]
    return rows, cut


async def _newest_job(ctx: Context, principal: Principal, jobconfig_id: int) -> Job | None:
    """The newest job of a jobconfig: one listing, which the store reads as one limited
    (jobconfig, status, id) index range per status (not the jobconfig's whole history)."""
    found = await _first(ctx, principal, JobFilter(jobconfig_id=jobconfig_id), 1)
    return found[0] if found else None


@dataclass(frozen=True, slots=True)
class JobconfigDetail:
    """A jobconfig's page: its settings and its newest jobs."""

    jobconfig: JobConfig
    recent: list[Job]
    may_run: bool
    #: Whether the caller may change its settings (``edit``), as ``PATCH`` requires.
    may_edit: bool = False


async def jobconfig_detail(
    ctx: Context, principal: Principal, jobconfig_id: int
) -> JobconfigDetail:
    """One jobconfig the caller may view (the 404 of a missing one otherwise)."""
    jc = await jobconfigs.get(ctx, principal, jobconfig_id)
    recent = await _first(ctx, principal, JobFilter(jobconfig_id=jc.id), RECENT_JOBS_SHOWN)
    may_run = jc.enabled and await access.can(ctx, principal, "execute", "jobconfigs", jc)
    may_edit = await access.can(ctx, principal, "edit", "jobconfigs", jc)
    return JobconfigDetail(jc, recent, may_run, may_edit)
