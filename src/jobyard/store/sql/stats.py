"""Job statistics: fold ended jobs into the ``jobstats`` rollup; read it back.

**The fold** (:meth:`StatsMixin.jobstats_fold`, run by the maintenance leader, never
on the job path) walks the jobs table by id past a watermark, in batches: a job that
has ended is added to the rollup rows of its jobconfig and of the hour, the day and
all time of its end; one that has not is put in ``jobstats_pending`` and folded by a
later pass, once it has ended. The watermark only passes ids of jobs created more
than ``lag_seconds`` ago, so a job whose insert has not committed yet (PostgreSQL
hands ids out before commit) is not skipped. A batch is read and summed in a read
transaction (SQLite's write lock is not held meanwhile, so the job path never waits
for it); the sums are written in a short write transaction that first locks and
re-reads the state row and checks the folded jobs still exist: if another fold or a
deletion moved meanwhile, nothing is written and the batch is read again, so no job
is ever counted twice.

**Deleting jobs** (retention, removing a jobconfig) counts the ones the fold has not
counted yet in the same transaction (:func:`fold_deleted`), so a purge never changes
the statistics.

**Reading** a range is one indexed scan of rollup rows; nothing reads the jobs table
except the metrics' small reads (live statuses, the unfolded tail).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    String,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    type_coerce,
    union_all,
    update,
)

from jobyard.core.jobs import JobStatus
from jobyard.core.stats import (
    FIELD_BITS,
    FoldResult,
    Histogram,
    JobsNow,
    StatsRead,
    StatsRow,
    StatsSummary,
    Summary,
)
from jobyard.store.schema import jobs, jobstats, jobstats_pending, jobstats_state
from jobyard.store.sql.base import SqlBase, Tx

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Grains of the rollup: hour, day (UTC), all time.
GRAINS = ("h", "d", "t")
#: ``jobconfig_key`` of the rows summing every jobconfig (hour and day grains): the
#: per-bucket series of a caller who sees everything reads one row per bucket.
ALL_KEY = -1
_STATE_ID = 1
_STATUS_ORDER = (JobStatus.FINISHED, JobStatus.ERROR, JobStatus.FAILED, JobStatus.CANCELLED)
_COUNT_COLUMNS = {
    JobStatus.FINISHED.value: "finished",
    JobStatus.ERROR.value: "error",
    JobStatus.FAILED.value: "failed",
    JobStatus.CANCELLED.value: "cancelled",
}
_JOB_COLUMNS = (
    jobs.c.id,
    jobs.c.jobconfig_id,
    jobs.c.status,
    jobs.c.queued_at,
    jobs.c.acquired_at,
    jobs.c.started_at,
    jobs.c.ended_at,
)


def bucket_of(at: datetime, grain: str) -> datetime:
    """The start of the bucket of ``at`` at ``grain`` (UTC)."""
    at = at.astimezone(UTC)
    if grain == "h":
        return at.replace(minute=0, second=0, microsecond=0)
    if grain == "d":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    return EPOCH


def fold_deleted(tx: Tx, ids: list[int]) -> None:
    """Count into the rollup the ended jobs among ``ids`` it has not counted yet.

    Called in the transaction that deletes them (retention, jobconfig removal), so
    their statistics stay; the fold later finds them gone and does not count them again.
    """
    if not ids:
        return
    watermark = _state(tx, lock=True)
    in_pending = select(jobstats_pending.c.job_id).where(jobstats_pending.c.job_id.in_(ids))
    rows = tx.conn.execute(
        select(*_JOB_COLUMNS).where(
            jobs.c.id.in_(ids),
            jobs.c.ended_at.is_not(None),
            or_(jobs.c.id > watermark, jobs.c.id.in_(in_pending.scalar_subquery())),
        )
    ).all()
    deltas: dict[tuple[str, int, datetime], Summary] = {}
    for row in rows:
        _count_into(deltas, row)
    _apply(tx, deltas)
    tx.conn.execute(delete(jobstats_pending).where(jobstats_pending.c.job_id.in_(ids)))


def _count_into(deltas: dict[tuple[str, int, datetime], Summary], row: Any) -> None:
    ended_at = row.ended_at
    key = int(row.jobconfig_id or 0)
    for grain in GRAINS:
        start = bucket_of(ended_at, grain)
        targets = (key, ALL_KEY) if grain != "t" else (key,)
        for target in targets:
            summary = deltas.setdefault((grain, target, start), Summary())
            summary.add_job(row.status, row.queued_at, row.acquired_at, row.started_at, ended_at)


class StatsMixin(SqlBase):
    """The rollup of job statistics (see the module docstring)."""

    _fold_thread: ThreadPoolExecutor | None = None

    async def close(self) -> None:
        """Stop the fold's thread (SQLite), then close as usual."""
        if self._fold_thread is not None:
            await asyncio.to_thread(self._fold_thread.shutdown, True)
            self._fold_thread = None
        await super().close()

    async def jobstats_fold(self, *, lag_seconds: float, batch: int = 5000) -> FoldResult:
        """Fold up to ``batch`` newly ended jobs (and pass as many ids) into the rollup.

        The jobs are read and summed in a read transaction; only the sums are written,
        in a short write transaction that first checks nothing moved meanwhile.
        """
        side = self._reader
        if side.executor is None:
            # SQLite runs reads inline on the event loop; a batch of thousands of jobs
            # would hold the loop (and the API in front of it) for a while: one thread
            # of its own (one reader connection), made on first use.
            if self._fold_thread is None:
                self._fold_thread = ThreadPoolExecutor(1, thread_name_prefix="jobyard-fold")
            plan = await asyncio.get_running_loop().run_in_executor(
                self._fold_thread,
                lambda: self._run_sync(side, False, True, _fold_read, lag_seconds, batch),
            )
        else:
            plan = await self._read(_fold_read, lag_seconds, batch)
        return await self._write(_fold_apply, plan)

    async def jobstats_read(
        self,
        *,
        grain: str,
        since: datetime | None,
        until: datetime | None,
        jobconfig_keys: list[int] | None,
    ) -> StatsRead:
        """Rollup rows of ``grain`` with ``since <= bucket_start < until``; ``folded_at``.

        ``jobconfig_keys`` None: every jobconfig (and ad-hoc jobs, key 0).
        """
        return await self._read(_read, grain, since, until, jobconfig_keys)

    async def jobstats_summarize(
        self,
        *,
        grain: str,
        since: datetime | None,
        until: datetime | None,
        jobconfig_keys: list[int] | None,
    ) -> StatsSummary:
        """Like :meth:`jobstats_read`, summed per jobconfig and per bucket start."""
        return await self._read(_summarize, grain, since, until, jobconfig_keys)

    async def jobstats_watermark(self) -> tuple[int, datetime | None]:
        """``(folded_through, folded_at)`` of the rollup."""
        return await self._read(_watermark)

    async def jobs_now(self) -> JobsNow:
        """Counters and gauges of ``/metrics`` (cluster-wide), in one statement."""
        return await self._read(_jobs_now)


# -- transaction bodies ------------------------------------------------------------------


def _state(tx: Tx, lock: bool) -> int:
    stmt = select(jobstats_state.c.folded_through).where(jobstats_state.c.id == _STATE_ID)
    if lock and tx.pg:
        stmt = stmt.with_for_update()
    value = tx.conn.execute(stmt).scalar()
    if value is None:
        if lock:
            tx.conn.execute(
                insert(jobstats_state).values(id=_STATE_ID, folded_through=0, folded_at=None)
            )
        return 0
    return int(value)


def _watermark(tx: Tx) -> tuple[int, datetime | None]:
    row = tx.conn.execute(
        select(jobstats_state.c.folded_through, jobstats_state.c.folded_at).where(
            jobstats_state.c.id == _STATE_ID
        )
    ).first()
    return (0, None) if row is None else (int(row[0]), row[1])


@dataclass(slots=True)
class _FoldPlan:
    """What a fold read found, to be written by :func:`_fold_apply` if nothing moved."""

    state: tuple[int, datetime | None]  # (folded_through, folded_at) when read
    watermark: int  # the new watermark
    folded: list[int] = field(default_factory=list)  # ended jobs counted in deltas
    pending_done: list[int] = field(default_factory=list)  # pending entries to drop
    passed: list[int] = field(default_factory=list)  # jobs passed before they ended
    deltas: dict[tuple[str, int, datetime], Summary] = field(default_factory=dict)
    more: bool = False


def _fold_read(tx: Tx, lag_seconds: float, batch: int) -> _FoldPlan:
    """Read and sum one batch (no lock held: the job path's writers are not delayed)."""
    state = _watermark(tx)
    plan = _FoldPlan(state, state[0])
    # 1. Jobs passed earlier that have ended since (or were deleted: forgotten).
    pending_rows = tx.conn.execute(
        select(jobstats_pending.c.job_id, *_JOB_COLUMNS[1:])
        .select_from(jobstats_pending.outerjoin(jobs, jobs.c.id == jobstats_pending.c.job_id))
        .where(or_(jobs.c.id.is_(None), jobs.c.ended_at.is_not(None)))
        .limit(batch)
    ).all()
    for row in pending_rows:
        plan.pending_done.append(int(row.job_id))
        if row.ended_at is not None:
            _count_into(plan.deltas, row)
            plan.folded.append(int(row.job_id))
    # 2. New ids, up to the newest job created before the lag.
    cut = tx.now - timedelta(seconds=lag_seconds)
    bound = tx.conn.execute(
        select(jobs.c.id).where(jobs.c.created_at < cut).order_by(jobs.c.created_at.desc()).limit(1)
    ).scalar()
    scanned = 0
    if bound is not None and bound > plan.watermark:
        rows = tx.conn.execute(
            select(*_JOB_COLUMNS)
            .where(jobs.c.id > plan.watermark, jobs.c.id <= bound)
            .order_by(jobs.c.id)
            .limit(batch)
        ).all()
        scanned = len(rows)
        for row in rows:
            if row.ended_at is not None:
                _count_into(plan.deltas, row)
                plan.folded.append(int(row.id))
            else:
                plan.passed.append(int(row.id))
        plan.watermark = int(rows[-1].id) if scanned == batch else int(bound)
    plan.more = scanned == batch or len(pending_rows) == batch
    return plan


def _fold_apply(tx: Tx, plan: _FoldPlan) -> FoldResult:
    """Write a plan in a short transaction, unless another fold or a purge moved first."""
    current = _state(tx, lock=True)
    if (current, _watermark(tx)[1]) != plan.state:
        return FoldResult(0, 0, current, more=True)  # another fold ran: read again
    if plan.watermark == current and not plan.pending_done:
        return FoldResult(0, 0, current, more=False)  # nothing new
    still = 0
    for start in range(0, len(plan.folded), 1000):
        chunk = plan.folded[start : start + 1000]
        still += tx.conn.execute(
            select(func.count()).select_from(jobs).where(jobs.c.id.in_(chunk))
        ).scalar_one()
    if still != len(plan.folded):
        # Some were deleted meanwhile, and counted by that deletion: read again later.
        return FoldResult(0, 0, current, more=False)
    for start in range(0, len(plan.pending_done), 1000):
        chunk = plan.pending_done[start : start + 1000]
        tx.conn.execute(delete(jobstats_pending).where(jobstats_pending.c.job_id.in_(chunk)))
    if plan.passed:
        tx.conn.execute(insert(jobstats_pending), [{"job_id": i} for i in plan.passed])
    _apply(tx, plan.deltas)
    tx.conn.execute(
        update(jobstats_state)
        .where(jobstats_state.c.id == _STATE_ID)
        .values(folded_through=plan.watermark, folded_at=tx.now)
    )
    return FoldResult(len(plan.folded), len(plan.passed), plan.watermark, plan.more)


def _values(summary: Summary) -> dict[str, Any]:
    d, w = summary.duration, summary.wait
    values: dict[str, Any] = {
        column: int(summary.counts.get(status, 0)) for status, column in _COUNT_COLUMNS.items()
    }
    values.update(
        dur_count=d.count,
        dur_sum_ms=d.sum_ms,
        dur_max_ms=d.max_ms,
        dur_bins=d.encode(),
        wait_count=w.count,
        wait_sum_ms=w.sum_ms,
        wait_max_ms=w.max_ms,
        wait_bins=w.encode(),
    )
    return values


#: The columns of a summary, in the order :func:`_summary_of` takes them.
_SUMMARY_COLUMNS = (
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
_STATUS_VALUES = tuple(s.value for s in _STATUS_ORDER)
_FINISHED, _ERROR, _FAILED, _CANCELLED = _STATUS_VALUES


def _summary_of(values: Sequence[Any]) -> Summary:
    """A summary from the values of :data:`_SUMMARY_COLUMNS` (the answer's hot loop)."""
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


def _summary(row: Any) -> Summary:
    return _summary_of([getattr(row, c.name) for c in _SUMMARY_COLUMNS])


def _apply(tx: Tx, deltas: dict[tuple[str, int, datetime], Summary]) -> None:
    """Add each delta to its rollup row (read, merge, write: the state row serialises us)."""
    for (grain, key, start), delta in deltas.items():
        where = (
            jobstats.c.grain == grain,
            jobstats.c.jobconfig_key == key,
            jobstats.c.bucket_start == start,
        )
        existing = tx.conn.execute(select(jobstats).where(*where)).first()
        if existing is None:
            tx.conn.execute(
                insert(jobstats).values(
                    grain=grain, jobconfig_key=key, bucket_start=start, **_values(delta)
                )
            )
            continue
        total = _summary(existing)
        total.merge(delta)
        tx.conn.execute(update(jobstats).where(*where).values(**_values(total)))


def _range_rows(
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
    stmt = select(jobstats.c.jobconfig_key, start, *_SUMMARY_COLUMNS).where(
        jobstats.c.grain == grain
    )
    if since is not None:
        stmt = stmt.where(jobstats.c.bucket_start >= since)
    if until is not None:
        stmt = stmt.where(jobstats.c.bucket_start < until)
    folded_at = _watermark(tx)[1]
    if keys is None:
        stmt = stmt.where(jobstats.c.jobconfig_key >= 0)
    else:
        if not keys:
            return [], folded_at
        stmt = stmt.where(jobstats.c.jobconfig_key.in_(keys))
    rows = tx.conn.execute(stmt.order_by(jobstats.c.bucket_start, jobstats.c.jobconfig_key))
    return list(rows.all()), folded_at


def _read(
    tx: Tx,
    grain: str,
    since: datetime | None,
    until: datetime | None,
    keys: list[int] | None,
) -> StatsRead:
    rows, folded_at = _range_rows(tx, grain, since, until, keys)
    starts: dict[Any, datetime] = {}
    out = []
    for r in rows:
        at = starts.get(r[1])
        if at is None:
            at = starts[r[1]] = _as_utc(r[1])
        out.append(StatsRow(r[0], at, _summary_of(r[2:])))
    return StatsRead(out, folded_at)


#: Positions in an accumulator list (see :func:`_summarize`).
_N_COUNTS = 4


def _summarize(
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
    rows, folded_at = _range_rows(tx, grain, since, until, keys)
    per_key: dict[Any, list[Any]] = {}
    per_start: dict[Any, list[Any]] = {}
    _accumulate(rows, per_key, per_start)
    return StatsSummary(
        {key: _summary_from(acc) for key, acc in per_key.items()},
        {_as_utc(start): _summary_from(acc) for start, acc in per_start.items()},
        folded_at,
    )


def _summarize_everything(tx: Tx, grain: str, since: datetime, until: datetime) -> StatsSummary:
    all_rows, folded_at = _range_rows(tx, grain, since, until, [ALL_KEY])
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
            rows, _ = _range_rows(tx, part_grain, lo, hi, None)
            _accumulate(rows, per_key, None)
    return StatsSummary(
        {key: _summary_from(acc) for key, acc in per_key.items()},
        {_as_utc(start): _summary_from(acc) for start, acc in per_start.items()},
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
    counts = {s: int(n) for s, n in zip(_STATUS_VALUES, acc[:_N_COUNTS], strict=True) if n}
    return Summary(
        counts,
        Histogram(acc[7], int(acc[4]), float(acc[5]), float(acc[6])),
        Histogram(acc[11], int(acc[8]), float(acc[9]), float(acc[10])),
    )


def _as_utc(value: Any) -> datetime:
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


def _jobs_now(tx: Tx) -> JobsNow:
    """One UNION ALL statement, so a fold committing meanwhile cannot count a job twice."""
    watermark = (
        select(func.coalesce(func.max(jobstats_state.c.folded_through), 0))
        .where(jobstats_state.c.id == _STATE_ID)
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
            for status, column in _COUNT_COLUMNS.items()
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
    ended_values = set(_COUNT_COLUMNS)
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
