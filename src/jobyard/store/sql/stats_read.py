"""Job statistics, the read side: rollup rows of a range, their sums, metrics figures.

Shared with the fold (:mod:`jobyard.store.sql.stats`): the rollup's constants, the
columns of a summary and the watermark. Every function here is the body of one read
transaction (or a helper of one); none reads the history of the jobs table except
:func:`jobs_now_figures` (jobs past the watermark, pending ones, live ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, func, literal, select, type_coerce, union_all

from jobyard.core.jobs import JobStatus
from jobyard.core.stats import (
    FIELD_BITS,
    Histogram,
    JobsNow,
    StatsRead,
    StatsRow,
    StatsSummary,
    Summary,
)
from jobyard.store.schema import jobs, jobstats, jobstats_pending, jobstats_state
from jobyard.store.sql.base import Tx

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Grains of the rollup: hour, day (UTC), all time.
GRAINS = ("h", "d", "t")
#: ``jobconfig_key`` of the rows summing every jobconfig (hour and day grains): the
#: per-bucket series of a caller who sees everything reads one row per bucket.
ALL_KEY = -1
STATE_ID = 1
STATUS_ORDER = (JobStatus.FINISHED, JobStatus.ERROR, JobStatus.FAILED, JobStatus.CANCELLED)
COUNT_COLUMNS = {
    JobStatus.FINISHED.value: "finished",
    JobStatus.ERROR.value: "error",
    JobStatus.FAILED.value: "failed",
    JobStatus.CANCELLED.value: "cancelled",
}


def bucket_of(at: datetime, grain: str) -> datetime:
    """The start of the bucket of ``at`` at ``grain`` (UTC)."""
    at = at.astimezone(UTC)
    if grain == "h":
        return at.replace(minute=0, second=0, microsecond=0)
    if grain == "d":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    return EPOCH


def watermark_of(tx: Tx) -> tuple[int, datetime | None]:
    row = tx.conn.execute(
        select(jobstats_state.c.folded_through, jobstats_state.c.folded_at).where(
            jobstats_state.c.id == STATE_ID
        )
    ).first()
    return (0, None) if row is None else (int(row[0]), row[1])


#: The columns of a summary, in the order :func:`summary_of` takes them.
SUMMARY_COLUMNS = (
    jobstats.c.finished,
    jobstats.c.error,
    jobstats.c.failed,
    jobstats.c.cancelled,
    jobstats.c.dur_count,
    jobstats.c.dur_sum_ms,
    jobstats.c.dur_max_ms,
    jobstats.c.dur_bins,
    jobstats.c.wait_count,
    jobstats.c.wait_sum_ms,
    jobstats.c.wait_max_ms,
    jobstats.c.wait_bins,
)
STATUS_VALUES = tuple(s.value for s in STATUS_ORDER)
_FINISHED, _ERROR, _FAILED, _CANCELLED = STATUS_VALUES


def summary_of(values: Sequence[Any]) -> Summary:
    """A summary from the values of :data:`SUMMARY_COLUMNS` (the answer's hot loop)."""
    fin, err, fail, canc, dc, ds, dm, db, wc, ws, wm, wb = values
    counts = {}
    if fin:
        counts[_FINISHED] = fin
    if err:
        counts[_ERROR] = err
    if fail:
        counts[_FAILED] = fail
    if canc:
        counts[_CANCELLED] = canc
    return Summary(counts, Histogram.decode(db, dc, ds, dm), Histogram.decode(wb, wc, ws, wm))


def range_rows(
    tx: Tx,
    grain: str,
    since: datetime | None,
    until: datetime | None,
    keys: list[int] | None,
) -> tuple[list[Any], datetime | None]:
    """Raw rows ``(key, start, *summary columns)`` of a range, and ``folded_at``."""
    # The bucket start comes raw (SQLite: text) and is parsed once per distinct value:
    # an answer reads thousands of rows sharing a few hundred starts.
    start = type_coerce(jobstats.c.bucket_start, String)
    stmt = select(jobstats.c.jobconfig_key, start, *SUMMARY_COLUMNS).where(
        jobstats.c.grain == grain
    )
    if since is not None:
        stmt = stmt.where(jobstats.c.bucket_start >= since)
    if until is not None:
        stmt = stmt.where(jobstats.c.bucket_start < until)
    folded_at = watermark_of(tx)[1]
    if keys is None:
        stmt = stmt.where(jobstats.c.jobconfig_key >= 0)
    else:
        if not keys:
            return [], folded_at
        stmt = stmt.where(jobstats.c.jobconfig_key.in_(keys))
    rows = tx.conn.execute(stmt.order_by(jobstats.c.bucket_start, jobstats.c.jobconfig_key))
    return list(rows.all()), folded_at


def read_rows(
    tx: Tx,
    grain: str,
    since: datetime | None,
    until: datetime | None,
    keys: list[int] | None,
) -> StatsRead:
    rows, folded_at = range_rows(tx, grain, since, until, keys)
    starts: dict[Any, datetime] = {}
    out = []
    for r in rows:
        at = starts.get(r[1])
        if at is None:
            at = starts[r[1]] = as_utc(r[1])
        out.append(StatsRow(r[0], at, summary_of(r[2:])))
    return StatsRead(out, folded_at)


#: Positions in an accumulator list (see :func:`summarize`).
_N_COUNTS = 4


def summarize(
    tx: Tx,
    grain: str,
    since: datetime | None,
    until: datetime | None,
    keys: list[int] | None,
) -> StatsSummary:
    """Per jobconfig and per bucket sums of a range, straight from the raw rows.

    The answer's hot loop: one accumulator list per group, updated in place (no
    object per row); histograms are packed integers, so a merge is one addition.
    For every jobconfig over a bounded range, the per-bucket sums come from the
    all-jobconfigs rows and the per-jobconfig sums of whole days from day rows, so
    a long range of hours reads far fewer rows than jobconfigs x hours.
    """
    if keys is None and since is not None and until is not None:
        return _summarize_everything(tx, grain, since, until)
    rows, folded_at = range_rows(tx, grain, since, until, keys)
    per_key: dict[Any, list[Any]] = {}
    per_start: dict[Any, list[Any]] = {}
    _accumulate(rows, per_key, per_start)
    return StatsSummary(
        {key: _summary_from(acc) for key, acc in per_key.items()},
        {as_utc(start): _summary_from(acc) for start, acc in per_start.items()},
        folded_at,
    )


def _summarize_everything(tx: Tx, grain: str, since: datetime, until: datetime) -> StatsSummary:
    all_rows, folded_at = range_rows(tx, grain, since, until, [ALL_KEY])
    per_start: dict[Any, list[Any]] = {}
    _accumulate(all_rows, None, per_start)
    per_key: dict[Any, list[Any]] = {}
    first_day = bucket_of(since, "d")
    if first_day < since:
        first_day += timedelta(days=1)
    last_day = bucket_of(until, "d")
    if grain == "h" and first_day < last_day:
        # whole days from day rows, the hours before and after from hour rows
        parts = [("d", first_day, last_day), ("h", since, first_day), ("h", last_day, until)]
    else:
        parts = [(grain, since, until)]
    for part_grain, lo, hi in parts:
        if lo < hi:
            rows, _ = range_rows(tx, part_grain, lo, hi, None)
            _accumulate(rows, per_key, None)
    return StatsSummary(
        {key: _summary_from(acc) for key, acc in per_key.items()},
        {as_utc(start): _summary_from(acc) for start, acc in per_start.items()},
        folded_at,
    )


def _accumulate(
    rows: list[Any], per_key: dict[Any, list[Any]] | None, per_start: dict[Any, list[Any]] | None
) -> None:
    """Add raw rows into per-jobconfig and/or per-bucket accumulators."""
    targets = [(groups, i) for groups, i in ((per_key, 0), (per_start, 1)) if groups is not None]
    for row in rows:
        _key, _start, fin, err, fail, canc, dc, ds, dm, db, wc, ws, wm, wb = row
        dpk = _unpack(db) if db else 0
        wpk = _unpack(wb) if wb else 0
        for groups, index in targets:
            group = row[index]
            acc = groups.get(group)
            if acc is None:
                groups[group] = [fin, err, fail, canc, dc, ds, dm, dpk, wc, ws, wm, wpk]
                continue
            acc[0] += fin
            acc[1] += err
            acc[2] += fail
            acc[3] += canc
            acc[4] += dc
            acc[5] += ds
            if dm > acc[6]:
                acc[6] = dm
            acc[7] += dpk
            acc[8] += wc
            acc[9] += ws
            if wm > acc[10]:
                acc[10] = wm
            acc[11] += wpk


def _unpack(data: bytes) -> int:
    return int.from_bytes(data[2:], "little") << (FIELD_BITS * int.from_bytes(data[:2], "little"))


def _summary_from(acc: list[Any]) -> Summary:
    counts = {s: int(n) for s, n in zip(STATUS_VALUES, acc[:_N_COUNTS], strict=True) if n}
    return Summary(
        counts,
        Histogram(acc[7], int(acc[4]), float(acc[5]), float(acc[6])),
        Histogram(acc[11], int(acc[8]), float(acc[9]), float(acc[10])),
    )


def as_utc(value: Any) -> datetime:
    """A bucket start as stored (SQLite: naive UTC text; PostgreSQL: a datetime)."""
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


_LIVE = (
    JobStatus.WAITING,
    JobStatus.SEQUENCED,
    JobStatus.QUEUED,
    JobStatus.INITIALIZING,
    JobStatus.RUNNING,
)


def jobs_now_figures(tx: Tx) -> JobsNow:
    """One UNION ALL statement, so a fold committing meanwhile cannot count a job twice."""
    watermark = (
        select(func.coalesce(func.max(jobstats_state.c.folded_through), 0))
        .where(jobstats_state.c.id == STATE_ID)
        .scalar_subquery()
    )
    key = func.coalesce(jobs.c.jobconfig_id, 0)
    # Jobs still pending, read from the (short) pending list: SQLite's planner, without
    # statistics, would scan the jobs table for a join, PostgreSQL's for an IN.
    pending_tail = select(literal("tail"), key, jobs.c.status, func.count())
    if tx.pg:
        pending_tail = pending_tail.select_from(
            jobstats_pending.join(jobs, jobs.c.id == jobstats_pending.c.job_id)
        )
    else:
        pending_tail = pending_tail.where(
            jobs.c.id.in_(select(jobstats_pending.c.job_id).scalar_subquery())
        )
    pending_tail = pending_tail.group_by(key, jobs.c.status)
    parts = [
        # folded ended jobs, by jobconfig and end status
        *(
            select(
                literal("ended"),
                jobstats.c.jobconfig_key,
                literal(status),
                func.sum(getattr(jobstats.c, column)),
            )
            .where(jobstats.c.grain == "t")
            .group_by(jobstats.c.jobconfig_key)
            for status, column in COUNT_COLUMNS.items()
        ),
        # jobs not folded yet (past the watermark, or pending), by jobconfig and status:
        # two primary-key reads, never a scan of the history
        select(literal("tail"), key, jobs.c.status, func.count())
        .where(jobs.c.id > watermark)
        .group_by(key, jobs.c.status),
        pending_tail,
        # live jobs by pool and status (the partial and (status, id) indexes)
        select(literal("pool"), literal(0), jobs.c.status + ":" + jobs.c.pool, func.count())
        .where(jobs.c.status.in_([s.value for s in _LIVE]))
        .group_by(jobs.c.status, jobs.c.pool),
    ]
    submitted: dict[int, int] = {}
    ended: dict[tuple[int, str], int] = {}
    live: dict[str, int] = {s.value: 0 for s in _LIVE}
    queued: dict[str, int] = {}
    busy: dict[str, int] = {}
    ended_values = set(COUNT_COLUMNS)
    for kind, jc, status, n in tx.conn.execute(union_all(*parts)):
        n = int(n or 0)
        jc = int(jc)
        if kind == "ended":
            if not n:
                continue
            ended[(jc, status)] = ended.get((jc, status), 0) + n
            submitted[jc] = submitted.get(jc, 0) + n
        elif kind == "tail":
            submitted[jc] = submitted.get(jc, 0) + n
            if status in ended_values:
                ended[(jc, status)] = ended.get((jc, status), 0) + n
        else:
            st, _, pool = str(status).partition(":")
            live[st] = live.get(st, 0) + n
            if st == JobStatus.QUEUED.value:
                queued[pool] = queued.get(pool, 0) + n
            elif st in (JobStatus.INITIALIZING.value, JobStatus.RUNNING.value):
                busy[pool] = busy.get(pool, 0) + n
    return JobsNow(submitted, ended, live, queued, busy)
