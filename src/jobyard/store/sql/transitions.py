"""The only code that writes ``jobs.status``: guarded moves, sequencing and promotion.

Every status change goes through :func:`move`, which builds

    UPDATE jobs SET status = :to, ... WHERE id IN (...) AND status IN (sources_of(to))
        [AND worker_id = :w] RETURNING jobs.*

and records one job event per moved row in the same transaction. A row that does not
match the guard is simply not moved; single-job callers turn that into ``Conflict``
(or ``NotFound``) with :func:`explain_miss`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any

from sqlalchemy import (
    Select,
    Update,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.sql.elements import ColumnElement, TextClause
from sqlalchemy.types import Text

from jobyard.core.errors import Conflict, NotFound
from jobyard.core.jobs import ACTIVE, HELD, TRANSITIONS, JobStatus, sources_of
from jobyard.core.models import Actor, Job
from jobyard.store.schema import UtcDateTime, job_events, job_seq, jobconfigs, jobs
from jobyard.store.sql.base import Tx, job_from_row, status_in, status_is, utcnow
from jobyard.store.sql.prepared import Prepared

SYSTEM = Actor.SYSTEM.value

# Aliases are built once: building one (and its 27 column proxies) costs ~0.5 ms.
_PICK = jobs.alias("pick")
_SEQ = jobs.alias("s")
_ACTIVE = jobs.alias("a")
_WAITING = jobs.alias("w")


#: On PostgreSQL the clock is read in Python before a statement runs, and a concurrent
#: transaction may queue a row a moment after that reading yet before the statement
#: sees it: a claim's acquired_at is then lifted to the row's queued_at, so recorded
#: times stay in causal order (SQLite takes its write lock before reading the clock).
_NOT_BEFORE = {"acquired_at": "queued_at"}


class Pick(Enum):
    """Which jobs a :func:`move` is about, and the parameters each kind needs."""

    ONE = "one"  # job_id
    MANY = "many"  # ids
    EXPIRED = "expired"  # ids, expired_before: leases that are (still) expired
    QUEUED_OF_POOL = "queued_of_pool"  # p_pool, limit: acquisition order (no labels)
    #: p_pool, p_labels (the worker's, JSON text), limit: jobs requiring none of them or
    #: only labels the worker has
    QUEUED_OF_POOL_LABELED = "queued_of_pool_labeled"
    SEQUENCED_OF_JOBCONFIG = "sequenced_of_jobconfig"  # p_jobconfig_id, limit: seq order
    ALL_SEQUENCED_OF_JOBCONFIG = "all_sequenced_of_jobconfig"  # p_jobconfig_id
    SEQUENCED_ADHOC = "sequenced_adhoc"  # (none): every ad-hoc SEQUENCED job


def next_seq_expression(pg: bool) -> ColumnElement[Any]:
    """SQL of the next global sequencing number.

    PostgreSQL: a sequence. SQLite: ``MAX(seq) + 1``, correct because the write
    transaction holds the database write lock (``BEGIN IMMEDIATE``), and an index
    lookup thanks to ``ux_jobs_seq``.
    """
    if pg:
        return job_seq.next_value()
    return select(func.coalesce(func.max(_SEQ.c.seq), 0) + 1).scalar_subquery()


def _picked(pick: Pick, pg: bool) -> ColumnElement[bool]:
    if pick is Pick.ONE:
        return jobs.c.id == bindparam("job_id")
    if pick is Pick.MANY:
        return jobs.c.id.in_(bindparam("ids", expanding=True))
    if pick is Pick.EXPIRED:
        return jobs.c.id.in_(bindparam("ids", expanding=True)) & (
            jobs.c.lease_expires_at
            < bindparam("expired_before", type_=jobs.c.lease_expires_at.type)
        )
    p = _PICK
    candidates: Select[Any]
    if pick in (Pick.QUEUED_OF_POOL, Pick.QUEUED_OF_POOL_LABELED):
        # A job requiring no labels (NULL) is claimable by every worker of its pool: the
        # test is a column read on a row the index scan fetches anyway.
        fits: ColumnElement[bool] = p.c.labels.is_(None)
        if pick is Pick.QUEUED_OF_POOL_LABELED:
            fits = or_(fits, _has_every_label(pg))
        candidates = (
            select(p.c.id)
            .where(status_is(JobStatus.QUEUED, p), p.c.pool == bindparam("p_pool"), fits)
            .order_by(p.c.priority.desc(), p.c.seq)
            .limit(bindparam("limit"))
        )
    elif pick is Pick.SEQUENCED_ADHOC:
        candidates = (
            select(p.c.id)
            .where(p.c.jobconfig_id.is_(None), status_is(JobStatus.SEQUENCED, p))
            .order_by(p.c.seq)
        )
    else:
        candidates = (
            select(p.c.id)
            .where(
                p.c.jobconfig_id == bindparam("p_jobconfig_id"),
                status_is(JobStatus.SEQUENCED, p),
            )
            .order_by(p.c.seq)
        )
        if pick is Pick.SEQUENCED_OF_JOBCONFIG:
            candidates = candidates.limit(bindparam("limit"))
    if pg and pick in (Pick.QUEUED_OF_POOL, Pick.QUEUED_OF_POOL_LABELED, Pick.SEQUENCED_ADHOC):
        # Claims skip rows another transaction is busy with. Promotion within a
        # jobconfig needs no SKIP LOCKED: it runs under the jobconfig lock.
        candidates = candidates.with_for_update(skip_locked=True)
    # A materialized CTE runs the picking SELECT exactly once; PostgreSQL may re-run a
    # plain ``IN (subquery ... LIMIT)`` inside the join and move more rows than LIMIT.
    cte = candidates.cte("picked").prefix_with("MATERIALIZED")
    return jobs.c.id.in_(select(cte.c.id))


def _has_every_label(pg: bool) -> TextClause:
    """The picked job's required labels are all among the worker's (``:p_labels``, a
    JSON object as text): containment on PostgreSQL; on SQLite, no required label whose
    value the worker's object lacks (label keys are plain words: no quoting in a path)."""
    if pg:
        return text("CAST(:p_labels AS JSONB) @> CAST(pick.labels AS JSONB)").bindparams(
            bindparam("p_labels", type_=Text())
        )
    return text(
        "NOT EXISTS (SELECT 1 FROM json_each(pick.labels) AS r WHERE "
        "json_extract(:p_labels, '$.\"' || r.key || '\"') IS NOT r.value)"
    ).bindparams(bindparam("p_labels", type_=Text()))


@functools.cache
def _move_statement(
    to: JobStatus, pick: Pick, sets: tuple[str, ...], new_seq: bool, by_worker: bool, pg: bool
) -> Update:
    """The guarded UPDATE for one shape of move, built once and reused (bind parameters)."""
    sources = sources_of(to)
    if not sources:
        raise ValueError(f"no status moves into {to}")
    guard = status_in(sources)
    if pg:
        # The same guard, hidden from PostgreSQL's index matching: the rows come by
        # primary key from the pick. Otherwise statistics older than a burst (a fresh
        # table, or few QUEUED rows when last analyzed) make the planner scan every
        # QUEUED row through the status indexes, each joined against the picked ids.
        guard = guard.is_(true())
    where = [_picked(pick, pg), guard]
    if by_worker:
        where.append(jobs.c.worker_id == bindparam("p_worker_id"))
    values: dict[str, Any] = {"status": to.value}
    for col in sets:
        value: Any = bindparam(f"v_{col}", type_=jobs.c[col].type)
        if pg and col in _NOT_BEFORE:
            value = func.greatest(value, jobs.c[_NOT_BEFORE[col]])
        values[col] = value
    if new_seq:
        values["seq"] = next_seq_expression(pg)
    return update(jobs).where(*where).values(**values).returning(*jobs.c)


@functools.cache
def _move_prepared(
    to: JobStatus, pick: Pick, sets: tuple[str, ...], new_seq: bool, by_worker: bool, pg: bool
) -> Prepared:
    return Prepared(_move_statement(to, pick, sets, new_seq, by_worker, pg))


def move(
    tx: Tx,
    *,
    to: JobStatus,
    pick: Pick,
    params: dict[str, Any],
    sets: dict[str, Any],
    actor: str,
    reason: str | None,
    worker_id: str | None = None,
    new_seq: bool = False,
    order: Callable[[Job], Any] | None = None,
) -> list[Job]:
    """Move the jobs ``pick`` selects into ``to``, where the status model allows it.

    ``params`` feed the pick (see :class:`Pick`); ``sets`` are the other columns to
    write; ``new_seq`` assigns the next sequencing number; ``worker_id`` additionally
    requires the holder. Returns the moved jobs and records an event
    ``(to, now, actor, reason)`` for each. RETURNING order is unspecified, so ``order``
    (a sort key) fixes the order of the answer and of the events.
    """
    stmt = _move_prepared(to, pick, tuple(sorted(sets)), new_seq, worker_id is not None, tx.pg)
    bound = dict(params)
    bound.update({f"v_{col}": value for col, value in sets.items()})
    if worker_id is not None:
        bound["p_worker_id"] = worker_id
    moved = [job_from_row(row) for row in stmt.fetch(tx.conn, bound)]
    if order is not None and len(moved) > 1:
        moved.sort(key=order)
    # A claim's event takes the job's acquired_at: on PostgreSQL that is never before
    # queued_at (see _NOT_BEFORE), whereas this transaction's clock may have been read
    # before another one queued the job.
    claimed = to is JobStatus.INITIALIZING and "acquired_at" in sets
    for job in moved:
        tx.event(job.id, to, actor, reason, job.acquired_at if claimed else None)
    return moved


def record_events(
    tx: Tx, job_ids: list[int], status: JobStatus, actor: str, reason: Any = None
) -> None:
    """Record one event per job with one ``INSERT ... SELECT`` (bulk paths).

    ``reason`` is text or an SQL expression over ``jobs`` columns. Written at once (not
    buffered like :meth:`Tx.event`): callers use it for jobs with no buffered event.
    """
    if not job_ids:
        return
    reason_sql = reason if isinstance(reason, ColumnElement) else literal(reason, type_=Text())
    rows = (
        select(
            jobs.c.id,
            literal(status.value),
            literal(tx.now, type_=UtcDateTime()),
            literal(actor),
            reason_sql,
        )
        .where(jobs.c.id.in_(job_ids))
        .order_by(jobs.c.id)
    )
    columns = ["job_id", "status", "at", "actor", "reason"]
    tx.conn.execute(insert(job_events).from_select(columns, rows))


@functools.cache
def _bulk_move_statement(to: JobStatus, sets: tuple[str, ...]) -> Update:
    values: dict[str, Any] = {"status": to.value}
    values.update({col: bindparam(f"v_{col}", type_=jobs.c[col].type) for col in sets})
    return (
        update(jobs)
        .where(jobs.c.id.in_(bindparam("ids", expanding=True)), status_in(sources_of(to)))
        .values(**values)
        .returning(jobs.c.id, jobs.c.pool)
    )


def move_bulk(
    tx: Tx,
    *,
    to: JobStatus,
    ids: list[int],
    sets: dict[str, Any],
    actor: str,
    reason: str | None,
) -> list[tuple[int, str]]:
    """:func:`move` of many jobs by id, returning only ``(id, pool)`` of the moved ones.

    The same guard (``status IN sources_of(to)``); events are written in bulk. For
    thousands of jobs at once (schedule firings), where building full :class:`Job`
    records would cost more than the move itself.
    """
    if not ids:
        return []
    bound: dict[str, Any] = {"ids": ids}
    bound.update({f"v_{col}": value for col, value in sets.items()})
    moved = [
        (row[0], row[1])
        for row in tx.conn.execute(_bulk_move_statement(to, tuple(sorted(sets))), bound)
    ]
    record_events(tx, sorted(i for i, _ in moved), to, actor, reason)
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


# -- locking ---------------------------------------------------------------------------


_LOCK_JOBCONFIGS = Prepared(
    select(jobconfigs.c.id)
    .where(jobconfigs.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(jobconfigs.c.id)
    .with_for_update(),
)
_JOBCONFIG_OF_JOB = Prepared(select(jobs.c.jobconfig_id).where(jobs.c.id == bindparam("job_id")))


def lock_jobconfigs(tx: Tx, jobconfig_ids: Iterable[int | None]) -> set[int]:
    """Lock these jobconfig rows (PostgreSQL), in id order; return the ids that exist.

    Every transaction that may promote takes these locks before touching job rows, so
    lock order is always jobconfigs (ascending) then jobs. On SQLite the write
    transaction already holds the database lock, and this is a no-op.
    """
    wanted = sorted({i for i in jobconfig_ids if i is not None})
    if not wanted or not tx.pg:
        return set(wanted)
    locked = {row[0] for row in _LOCK_JOBCONFIGS.fetch(tx.conn, {"ids": wanted})}
    # Read the clock again once the locks are ours: the times this transaction records
    # (ended_at, queued_at) then follow the order in which jobconfig slots changed hands.
    tx.now = utcnow()
    return locked


def lock_for_job(tx: Tx, job_id: int) -> None:
    """Lock the jobconfig of ``job_id`` before moving it (PostgreSQL only).

    ``jobconfig_id`` never changes, so reading it without a lock is safe. An unknown
    job is left for the guarded UPDATE to report.
    """
    if not tx.pg:
        return
    found = _JOBCONFIG_OF_JOB.first(tx.conn, {"job_id": job_id})
    jobconfig_id = None if found is None else found[0]
    if jobconfig_id is not None:
        lock_jobconfigs(tx, [jobconfig_id])


# -- promotion -------------------------------------------------------------------------

_SLOTS = Prepared(
    select(
        jobconfigs.c.max_concurrent,
        select(_WAITING.c.id)
        .where(
            _WAITING.c.jobconfig_id == bindparam("jobconfig_id"),
            status_is(JobStatus.SEQUENCED, _WAITING),
        )
        .exists(),
    ).where(jobconfigs.c.id == bindparam("jobconfig_id"))
)

#: ACTIVE jobs of a jobconfig, counted no further than its limit: the cost of a
#: promotion stays bounded by ``max_concurrent``, not by how many jobs are queued.
_ACTIVE_UP_TO_LIMIT = Prepared(
    select(func.count()).select_from(
        select(_ACTIVE.c.id)
        .where(_ACTIVE.c.jobconfig_id == bindparam("jobconfig_id"), status_in(ACTIVE, _ACTIVE))
        .limit(bindparam("cap"))
        .subquery()
    )
)


def promote(tx: Tx, jobconfig_id: int | None) -> list[Job]:
    """SEQUENCED -> QUEUED for one jobconfig, within its limit, strictly by seq.

    The caller holds the jobconfig lock (see :func:`lock_jobconfigs`), so the count of
    ACTIVE jobs cannot change under us. For ad-hoc jobs (``None``) there is no limit:
    every SEQUENCED ad-hoc job is queued (on PostgreSQL, rows another transaction is
    busy with are skipped; that transaction queues them itself).
    """
    if jobconfig_id is None:
        return _queue(tx, Pick.SEQUENCED_ADHOC, {})
    row = _SLOTS.first(tx.conn, {"jobconfig_id": jobconfig_id})
    if row is None:
        raise NotFound(f"jobconfig {jobconfig_id} does not exist", {"jobconfig_id": jobconfig_id})
    limit, has_waiting = row
    if not has_waiting:
        return []
    if not limit:
        return _queue(tx, Pick.ALL_SEQUENCED_OF_JOBCONFIG, {"p_jobconfig_id": jobconfig_id})
    counted = _ACTIVE_UP_TO_LIMIT.first(tx.conn, {"jobconfig_id": jobconfig_id, "cap": limit})
    n_active = 0 if counted is None else counted[0]
    free = limit - n_active
    if free <= 0:
        return []
    params = {"p_jobconfig_id": jobconfig_id, "limit": free}
    return _queue(tx, Pick.SEQUENCED_OF_JOBCONFIG, params)


def queue_one(tx: Tx, job_id: int) -> list[Job]:
    """SEQUENCED -> QUEUED for one ad-hoc job (no limit applies to ad-hoc jobs)."""
    return _queue(tx, Pick.ONE, {"job_id": job_id})


def _queue(tx: Tx, pick: Pick, params: dict[str, Any]) -> list[Job]:
    return move(
        tx,
        to=JobStatus.QUEUED,
        pick=pick,
        params=params,
        sets={"queued_at": tx.now},
        actor=SYSTEM,
        reason=None,
        order=_by_seq,
    )


def _by_seq(job: Job) -> int:
    return job.seq or 0


# -- single-row moves of the job path --------------------------------------------------


@functools.cache
def _held_move_statement(
    to: JobStatus, sets: tuple[str, ...], through: JobStatus | None = None
) -> Update:
    """The guarded UPDATE of one held job (passing ``through`` a status on the way, when
    given), answering only ``(id, jobconfig_id)``."""
    first = to if through is None else through
    if through is not None and to not in TRANSITIONS[through]:
        raise ValueError(f"no move from {through} into {to}")
    values: dict[str, Any] = {"status": to.value}
    values.update({col: bindparam(f"v_{col}", type_=jobs.c[col].type) for col in sets})
    return (
        update(jobs)
        .where(
            jobs.c.id == bindparam("job_id"),
            status_in(sources_of(first)),
            jobs.c.worker_id == bindparam("p_worker_id"),
        )
        .values(**values)
        .returning(jobs.c.id, jobs.c.jobconfig_id)
    )


@functools.cache
def _held_move_prepared(
    to: JobStatus, sets: tuple[str, ...], through: JobStatus | None
) -> Prepared:
    return Prepared(_held_move_statement(to, sets, through))


def held_move_row(
    tx: Tx,
    job_id: int,
    worker_id: str,
    to: JobStatus,
    sets: dict[str, Any],
    through: JobStatus | None = None,
) -> tuple[bool, int | None]:
    bound = {f"v_{col}": value for col, value in sets.items()}
    bound["job_id"] = job_id
    bound["p_worker_id"] = worker_id
    stmt = _held_move_prepared(to, tuple(sorted(sets)), through)
    row = stmt.first(tx.conn, bound)
    return (False, None) if row is None else (True, row[1])


def move_held(
    tx: Tx,
    job_id: int,
    *,
    to: JobStatus,
    worker_id: str,
    sets: dict[str, Any],
    actor: str,
    reason: str | None,
    at: Any = None,
) -> tuple[bool, int | None]:
    """:func:`move` of one job held by ``worker_id``, without reading the row back.

    The same guard (``status IN sources_of(to)`` and the holder); one event when it
    moved (at ``at`` when given, else the transaction's clock). Returns ``(moved,
    jobconfig_id)``; the worker's batched reports use it, where decoding every column of
    every job would cost more than the write.
    """
    moved, jobconfig_id = held_move_row(tx, job_id, worker_id, to, sets)
    if moved:
        tx.event(job_id, to, actor, reason, at)
    return moved, jobconfig_id


def move_held_through(
    tx: Tx,
    job_id: int,
    *,
    through: JobStatus,
    to: JobStatus,
    worker_id: str,
    sets: dict[str, Any],
    actor: str,
    to_actor: str,
    reason: str | None,
    through_at: Any,
) -> tuple[bool, int | None]:
    """Two moves of one held job in one statement: into ``through``, then into ``to``.

    Guarded like the first move (``status IN sources_of(through)`` and the holder);
    ``to`` must be allowed after ``through``. Records both events (``through`` at
    ``through_at`` by ``actor``, ``to`` now by ``to_actor``), as the two moves would. The
    worker's reports use it when a short job's RUNNING and end are written together.
    """
    moved, jobconfig_id = held_move_row(tx, job_id, worker_id, to, sets, through)
    if moved:
        tx.event(job_id, through, actor, None, through_at)
        tx.event(job_id, to, to_actor, reason)
    return moved, jobconfig_id
