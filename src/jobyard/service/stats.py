"""Job statistics for a caller: the rollup rows of what it may view, merged three ways.

``GET /api/v1/jobstats`` answers counts by end status, run durations and queue waits
overall, per jobconfig and per time bucket (hour or day, UTC) of a range. It reads
only the ``jobstats`` rollup (:mod:`jobyard.store.sql.stats`), never the jobs table,
so its cost depends on the number of jobconfigs and buckets, not on the history.

Visibility: a caller counts only the jobconfigs it may view (owner, a policy, or
admin); ad-hoc jobs (no jobconfig) only when it sees everything. A jobconfig it may
not view is never counted nor named, and asking for one by id answers the 404 of a
missing jobconfig. Statistics of a removed jobconfig stay (under its old id, without
a name) for those who see everything.

Freshness: jobs are folded into the rollup by the maintenance leader every
``maintenance_seconds``, ``stats.fold_lag_seconds`` after their submission at the
earliest; ``folded_at`` in the answer says when the last fold ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from jobyard.core.errors import InvalidInput
from jobyard.core.models import JobConfig
from jobyard.core.stats import Summary
from jobyard.core.timeutil import utcnow
from jobyard.service import access
from jobyard.service.context import Context, Principal

#: Bucket name -> (rollup grain, bucket length, default range, longest range).
BUCKETS: dict[str, tuple[str, timedelta, timedelta, timedelta]] = {
    "hour": ("h", timedelta(hours=1), timedelta(hours=24), timedelta(days=31)),
    "day": ("d", timedelta(days=1), timedelta(days=30), timedelta(days=366)),
}
_PAGE = 500


@dataclass(frozen=True, slots=True)
class JobconfigStats:
    """Statistics of one jobconfig (``jobconfig_id`` None: ad-hoc jobs)."""

    jobconfig_id: int | None
    name: str | None
    summary: Summary


@dataclass(frozen=True, slots=True)
class BucketStats:
    """Statistics of one time bucket (all counted jobconfigs together)."""

    start: datetime
    summary: Summary


@dataclass(frozen=True, slots=True)
class JobStats:
    """The answer of ``GET /api/v1/jobstats``."""

    bucket: str
    since: datetime
    until: datetime
    folded_at: datetime | None
    overall: Summary
    jobconfigs: list[JobconfigStats]
    buckets: list[BucketStats]


def _floor(at: datetime, bucket: str) -> datetime:
    at = at.astimezone(UTC)
    if bucket == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def _ceil(at: datetime, bucket: str) -> datetime:
    floor = _floor(at, bucket)
    return floor if floor == at else floor + BUCKETS[bucket][1]


def _range(
    bucket: str, since: datetime | None, until: datetime | None
) -> tuple[datetime, datetime]:
    """The range widened to whole buckets; checked (order, length)."""
    if bucket not in BUCKETS:
        raise InvalidInput(f"bucket must be 'hour' or 'day', not {bucket!r}", {"bucket": bucket})
    _grain, _step, default, longest = BUCKETS[bucket]
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(
                f"{name} needs a time zone: add 'Z' or an offset such as '+00:00'",
                {name: value.isoformat()},
            )
    end = _ceil(until if until is not None else utcnow(), bucket)
    start = _floor(since, bucket) if since is not None else end - default
    if start >= end:
        raise InvalidInput(
            "since must be before until", {"since": start.isoformat(), "until": end.isoformat()}
        )
    if end - start > longest:
        raise InvalidInput(
            f"a range of {bucket} buckets may span at most {longest.days} days: narrow "
            f"since/until or use bucket=day",
            {"since": start.isoformat(), "until": end.isoformat(), "bucket": bucket},
        )
    return start, end


def _starts(start: datetime, end: datetime, bucket: str) -> list[datetime]:
    """Every bucket start of the range (empty buckets are answered too: a sparkline)."""
    step = BUCKETS[bucket][1]
    out = []
    at = start
    while at < end:
        out.append(at)
        at += step
    return out


async def _visible_jobconfigs(
    ctx: Context, principal: Principal
) -> tuple[dict[int, JobConfig], bool]:
    """Jobconfigs the caller may view by id, and whether it sees everything."""
    visible = await access.visible_jobconfig_filter(ctx, principal)
    found: dict[int, JobConfig] = {}
    cursor: str | None = None
    while True:
        page = await ctx.store.jobconfigs_list(cursor=cursor, limit=_PAGE)
        for jc in page.items:
            if visible is None or visible.admits(jc.id, jc.owner, jc.template_id):
                found[jc.id] = jc
        if page.next_cursor is None:
            return found, visible is None
        cursor = page.next_cursor


async def jobstats(
    ctx: Context,
    principal: Principal,
    *,
    jobconfig_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    bucket: str = "hour",
) -> JobStats:
    """Statistics of ended jobs the caller may view, over whole buckets of the range.

    ``since`` is rounded down and ``until`` up to the bucket (the answer says which
    range it covers); the default range is the last 24 hours (``hour``) or 30 days
    (``day``).
    """
    start, end = _range(bucket, since, until)
    grain = BUCKETS[bucket][0]
    names: dict[int, str | None]
    keys: list[int] | None
    if jobconfig_id is not None:
        jc = await ctx.store.jobconfig_get(jobconfig_id)  # NotFound: 404 as for anyone
        await access.require(ctx, principal, "view", "jobconfigs", jc)
        names, keys = {jc.id: jc.name}, [jc.id]
    else:
        configs, everything = await _visible_jobconfigs(ctx, principal)
        names = {i: jc.name for i, jc in configs.items()}
        keys = None if everything else sorted(configs)
    found = await ctx.store.jobstats_summarize(
        grain=grain, since=start, until=end, jobconfig_keys=keys
    )
    per_jc, per_bucket = found.per_jobconfig, found.per_bucket
    overall = Summary()
    for summary in per_jc.values():
        overall.merge(summary)
    return JobStats(
        bucket=bucket,
        since=start,
        until=end,
        folded_at=found.folded_at,
        overall=overall,
        jobconfigs=[
            JobconfigStats(key or None, names.get(key) if key else None, summary)
            for key, summary in sorted(per_jc.items())
        ],
        buckets=[
            BucketStats(at, per_bucket.get(at, Summary())) for at in _starts(start, end, bucket)
        ],
    )
