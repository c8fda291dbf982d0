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

**Reading** (the bodies live in :mod:`jobyard.store.sql.stats_read`) a range is one
indexed scan of rollup rows, a few for a caller who sees every jobconfig; nothing reads
the jobs table except the metrics' small reads (live statuses, the unfolded tail).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from jobyard.core.stats import (
    FoldResult,
    JobsNow,
    StatsRead,
    StatsSummary,
    Summary,
)
from jobyard.store.schema import jobs, jobstats, jobstats_pending, jobstats_state
from jobyard.store.sql.base import SqlBase, Tx
from jobyard.store.sql.stats_read import (
    ALL_KEY,
    COUNT_COLUMNS,
    GRAINS,
    STATE_ID,
    SUMMARY_COLUMNS,
    bucket_of,
    jobs_now_figures,
    read_rows,
    summarize,
    summary_of,
    watermark_of,
)

_JOB_COLUMNS = (
    jobs.c.id,
    jobs.c.jobconfig_id,
    jobs.c.status,
    jobs.c.queued_at,
    jobs.c.acquired_at,
    jobs.c.started_at,
    jobs.c.ended_at,
)


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
        return await self._read(read_rows, grain, since, until, jobconfig_keys)

    async def jobstats_summarize(
        self,
        *,
        grain: str,
        since: datetime | None,
        until: datetime | None,
        jobconfig_keys: list[int] | None,
    ) -> StatsSummary:
        """Like :meth:`jobstats_read`, summed per jobconfig and per bucket start."""
        return await self._read(summarize, grain, since, until, jobconfig_keys)

    async def jobstats_watermark(self) -> tuple[int, datetime | None]:
        """``(folded_through, folded_at)`` of the rollup."""
        return await self._read(watermark_of)

    async def jobs_now(self) -> JobsNow:
        """Counters and gauges of ``/metrics`` (cluster-wide), in one statement."""
        return await self._read(jobs_now_figures)


# -- transaction bodies ------------------------------------------------------------------


def _state(tx: Tx, lock: bool) -> int:
    stmt = select(jobstats_state.c.folded_through).where(jobstats_state.c.id == STATE_ID)
    if lock and tx.pg:
        stmt = stmt.with_for_update()
    value = tx.conn.execute(stmt).scalar()
    if value is None:
        if lock:
            tx.conn.execute(
                insert(jobstats_state).values(id=STATE_ID, folded_through=0, folded_at=None)
            )
        return 0
    return int(value)


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
    state = watermark_of(tx)
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
    if (current, watermark_of(tx)[1]) != plan.state:
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
        .where(jobstats_state.c.id == STATE_ID)
        .values(folded_through=plan.watermark, folded_at=tx.now)
    )
    return FoldResult(len(plan.folded), len(plan.passed), plan.watermark, plan.more)


def _values(summary: Summary) -> dict[str, Any]:
    d, w = summary.duration, summary.wait
    values: dict[str, Any] = {
        column: int(summary.counts.get(status, 0)) for status, column in COUNT_COLUMNS.items()
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


def _summary(row: Any) -> Summary:
    return summary_of([getattr(row, c.name) for c in SUMMARY_COLUMNS])


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
