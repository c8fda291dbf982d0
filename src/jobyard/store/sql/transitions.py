"""The only code that writes ``jobs.status``: guarded moves, sequencing and promotion.

Every status change goes through :func:`move`, which builds

    UPDATE jobs SET status = :to, ... WHERE id IN (...) AND status IN (sources_of(to))
        [AND worker_id = :w] RETURNING jobs.*

and records one job event per moved row in the same transaction. A row that does not
match the guard is simply not moved; single-job callers turn that into ``Conflict``
(or ``NotFound``) with :func:`explain_miss`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.sql.elements import ColumnElement

from jobyard.core.errors import Conflict, NotFound
from jobyard.core.jobs import ACTIVE, HELD, JobStatus, sources_of
from jobyard.core.models import Actor, Job
from jobyard.store.schema import job_seq, jobconfigs, jobs
from jobyard.store.sql.base import Tx, job_from_row, status_in, status_is

SYSTEM = Actor.SYSTEM.value

#: Guard of each target status, computed once from the status model.
_GUARDS: dict[JobStatus, ColumnElement[bool]] = {
    to: status_in(sources_of(to)) for to in JobStatus if sources_of(to)
}


def move(
    tx: Tx,
    *,
    to: JobStatus,
    ids: Sequence[int] | Select[Any],
    values: dict[str, Any],
    actor: str,
    reason: str | None,
    worker_id: str | None = None,
    extra: ColumnElement[bool] | None = None,
    order: Callable[[Job], Any] | None = None,
) -> list[Job]:
    """Move the jobs selected by ``ids`` into ``to`` where the status model allows it.

    ``ids`` is a list of ids or a SELECT of ids (acquisition, promotion). ``values`` are
    the other columns to set. ``worker_id`` additionally requires the holder. Returns
    the moved jobs and records an event ``(to, now, actor, reason)`` for each. RETURNING
    order is unspecified, so ``order`` (a sort key) fixes the order of the answer and of
    the events when several rows move.
    """
    guard = _GUARDS.get(to)
    if guard is None:
        raise ValueError(f"no status moves into {to}")
    where: list[ColumnElement[bool]] = [jobs.c.id.in_(ids), guard]
    if worker_id is not None:
        where.append(jobs.c.worker_id == worker_id)
    if extra is not None:
        where.append(extra)
    stmt = update(jobs).where(*where).values(status=to.value, **values).returning(*jobs.c)
    moved = [job_from_row(row) for row in tx.conn.execute(stmt)]
    if order is not None and len(moved) > 1:
        moved.sort(key=order)
    for job in moved:
        tx.event(job.id, to, actor, reason)
    return moved


def explain_miss(tx: Tx, job_id: int, action: str, *, worker_id: str | None = None) -> Exception:
    """Why a guarded single-job write matched nothing: ``NotFound`` or ``Conflict``.

    ``action`` completes "job 7 is RUNNING: cannot ...", e.g. ``"move to CANCELLED"``.
    The details carry the current status so callers can show or act on it.
    """
    row = tx.conn.execute(
        select(jobs.c.status, jobs.c.worker_id).where(jobs.c.id == job_id)
    ).first()
    if row is None:
        return NotFound(f"job {job_id} does not exist", {"job_id": job_id})
    status, holder = row
    details: dict[str, Any] = {"job_id": job_id, "status": status}
    if worker_id is not None and holder != worker_id and status in HELD:
        details["worker_id"] = holder
        return Conflict(
            f"job {job_id} is {status} on worker {holder}, not {worker_id}: cannot {action}",
            details,
        )
    return Conflict(f"job {job_id} is {status}: cannot {action}", details)


def next_seq(tx: Tx) -> Any:
    """SQL expression of the next global sequencing number.

    PostgreSQL: a sequence. SQLite: ``MAX(seq) + 1``, correct because the write
    transaction holds the database write lock (``BEGIN IMMEDIATE``) and ``ux_jobs_seq``
    makes it an index lookup.
    """
    if tx.pg:
        return job_seq.next_value()
    j = jobs.alias("s")
    return select(func.coalesce(func.max(j.c.seq), 0) + 1).scalar_subquery()


# -- locking ---------------------------------------------------------------------------


def lock_jobconfigs(tx: Tx, jobconfig_ids: Iterable[int | None]) -> set[int]:
    """Lock these jobconfig rows (PostgreSQL), in id order; return the ids that exist.

    Every transaction that may promote takes these locks before touching job rows, so
    lock order is always jobconfigs (ascending) then jobs. On SQLite the write
    transaction already holds the database lock, and this is a no-op.
    """
    wanted = sorted({i for i in jobconfig_ids if i is not None})
    if not wanted or not tx.pg:
        return set(wanted)
    stmt = (
        select(jobconfigs.c.id)
        .where(jobconfigs.c.id.in_(wanted))
        .order_by(jobconfigs.c.id)
        .with_for_update()
    )
    return {row[0] for row in tx.conn.execute(stmt)}


def lock_for_job(tx: Tx, job_id: int) -> None:
    """Lock the jobconfig of ``job_id`` before moving it (PostgreSQL only).

    ``jobconfig_id`` never changes, so reading it without a lock is safe. An unknown
    job is left for the guarded UPDATE to report.
    """
    if not tx.pg:
        return
    jobconfig_id = tx.conn.execute(select(jobs.c.jobconfig_id).where(jobs.c.id == job_id)).scalar()
    if jobconfig_id is not None:
        lock_jobconfigs(tx, [jobconfig_id])


# -- promotion -------------------------------------------------------------------------


def promote(tx: Tx, jobconfig_id: int | None) -> list[Job]:
    """SEQUENCED -> QUEUED for one jobconfig, within its limit, strictly by seq.

    The caller holds the jobconfig lock (see :func:`lock_jobconfigs`). For ad-hoc jobs
    (``None``) there is no limit: every SEQUENCED ad-hoc job is queued; on PostgreSQL
    rows another transaction is busy with are skipped (it will queue them itself).
    """
    s = jobs.alias("p")
    if jobconfig_id is None:
        candidates = (
            select(s.c.id)
            .where(s.c.jobconfig_id.is_(None), status_is(JobStatus.SEQUENCED, s))
            .order_by(s.c.seq)
        )
        if tx.pg:
            candidates = candidates.with_for_update(skip_locked=True)
        return _queue(tx, candidates)

    a = jobs.alias("a")
    w = jobs.alias("w")
    active = (
        select(func.count())
        .select_from(a)
        .where(a.c.jobconfig_id == jobconfig_id, status_in(ACTIVE, a))
        .scalar_subquery()
    )
    waiting = (
        select(w.c.id)
        .where(w.c.jobconfig_id == jobconfig_id, status_is(JobStatus.SEQUENCED, w))
        .exists()
    )
    row = tx.conn.execute(
        select(jobconfigs.c.max_concurrent, active, waiting).where(jobconfigs.c.id == jobconfig_id)
    ).first()
    if row is None:
        raise NotFound(f"jobconfig {jobconfig_id} does not exist", {"jobconfig_id": jobconfig_id})
    limit, n_active, has_waiting = row
    if not has_waiting:
        return []
    candidates = (
        select(s.c.id)
        .where(s.c.jobconfig_id == jobconfig_id, status_is(JobStatus.SEQUENCED, s))
        .order_by(s.c.seq)
    )
    if limit:
        free = limit - n_active
        if free <= 0:
            return []
        candidates = candidates.limit(free)
    return _queue(tx, candidates)


def _queue(tx: Tx, candidates: Select[Any]) -> list[Job]:
    return move(
        tx,
        to=JobStatus.QUEUED,
        ids=candidates,
        values={"queued_at": tx.now},
        actor=SYSTEM,
        reason=None,
        order=_by_seq,
    )


def _by_seq(job: Job) -> int:
    return job.seq or 0
