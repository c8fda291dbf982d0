"""Jobs: creation, queries, transitions and leases (the hot paths of the store)."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    Text,
    bindparam,
    func,
    select,
    union_all,
    update,
)

from jobyard.core.errors import InvalidInput, NotFound
from jobyard.core.jobs import ABORTABLE, HELD, JobStatus
from jobyard.core.models import Actor, Job, JobEvent, JobFilter, Page
from jobyard.store.schema import UtcDateTime, job_events, jobs
from jobyard.store.sql.base import (
    SqlBase,
    Tx,
    check_limit,
    decode_cursor,
    encode_cursor,
    event_from_row,
    job_from_row,
    status_in,
    status_is,
)
from jobyard.store.sql.leases import fail_expired_leases
from jobyard.store.sql.transitions import (
    Pick,
    explain_miss,
    lock_for_job,
    lock_jobconfigs,
    move,
    promote,
    queue_one,
)

_ENDINGS = frozenset({JobStatus.FINISHED, JobStatus.ERROR, JobStatus.FAILED})


def _worker_actor(worker_id: str) -> str:
    return f"{Actor.WORKER.value}:{worker_id}"


def _acquire_order(job: Job) -> tuple[int, int]:
    return (-job.priority, job.seq or 0)


class JobsMixin(SqlBase):
    """Job rows and their status model. All status writes go through ``transitions``."""

    # -- creation and queries --------------------------------------------------------

    async def job_get(self, job_id: int) -> Job:
        """Return a job or raise ``NotFound``."""
        return await self._read(_job_get, job_id)

    async def jobs_list(
        self, flt: JobFilter, *, cursor: str | None, limit: int, oldest_first: bool = False
    ) -> Page[Job]:
        """Newest first (id descending), or oldest first; filtered, cursor-paginated."""
        after = decode_cursor(cursor)
        check_limit(limit)
        for bound in (flt.created_after, flt.created_before):
            if bound is not None and bound.tzinfo is None:
                raise InvalidInput("created_after/created_before must be timezone-aware")
        return await self._read(_jobs_list, flt, after, limit, oldest_first)

    async def job_events(self, job_id: int) -> list[JobEvent]:
        """The job's transitions in order, first one WAITING or SEQUENCED."""
        return await self._read(_job_events, job_id)

    # -- transitions ---------------------------------------------------------------------

    async def job_release(self, job_id: int, *, actor: str) -> Job:
        """WAITING -> SEQUENCED (+ promotion). ``Conflict`` from any other status."""
        return await self._write(_job_release, job_id, actor)

    async def job_cancel(self, job_id: int, *, actor: str, reason: str | None) -> Job:
        """WAITING|SEQUENCED|QUEUED -> CANCELLED (+ promotion). ``Conflict`` otherwise."""
        return await self._write(_job_cancel, job_id, actor, reason)

    async def job_acquire(
        self,
        *,
        worker_id: str,
        pool: str,
        limit: int,
        lease_seconds: float,
        labels: Mapping[str, str] | None = None,
    ) -> list[Job]:
        """Claim up to ``limit`` QUEUED jobs of ``pool`` (priority desc, seq asc) whose
        required labels are all among ``labels`` (the worker's)."""
        if limit <= 0:
            return []
        return await self._write_job(job_acquire_tx, worker_id, pool, limit, lease_seconds, labels)

    async def job_set_running(self, job_id: int, *, worker_id: str, pid: int | None) -> Job:
        """INITIALIZING -> RUNNING for the holding worker; sets started_at and pid."""
        return await self._write_job(_job_set_running, job_id, worker_id, pid)

    async def job_end(
        self,
        job_id: int,
        *,
        worker_id: str | None,
        status: JobStatus,
        exit_code: int | None,
        reason: str | None,
        actor: str,
    ) -> Job:
        """Move a held job to FINISHED, ERROR or FAILED (+ promotion); sets ended_at."""
        status = JobStatus(status)
        if status not in _ENDINGS:
            raise InvalidInput(
                f"a job ends FINISHED, ERROR or FAILED, not {status}", {"status": status.value}
            )
        return await self._write_job(_job_end, job_id, worker_id, status, exit_code, reason, actor)

    async def job_request_abort(self, job_id: int, *, actor: str, reason: str | None) -> Job:
        """Mark an INITIALIZING/RUNNING job for abort; ``Conflict`` from other statuses.

        No status changes here (the worker ends the job FAILED once its process is
        gone); ``abort_requested_at`` is set once, and ``reason``, when given, is kept
        in ``status_reason`` for the worker to report.
        """
        return await self._write(_job_request_abort, job_id, reason)

    async def jobs_promote_sequenced(self, jobconfig_id: int | None) -> list[int]:
        """Promote SEQUENCED -> QUEUED within the limit; ``None`` = ad-hoc jobs."""
        return await self._write(_jobs_promote_sequenced, jobconfig_id)

    async def jobconfigs_with_sequenced(self) -> list[int | None]:
        """Jobconfig ids (``None`` for ad-hoc, listed first) that have SEQUENCED jobs."""
        return await self._read(_jobconfigs_with_sequenced)

    # -- leases --------------------------------------------------------------------------

    async def leases_renew(
        self, *, worker_id: str, job_ids: list[int], lease_seconds: float
    ) -> dict[int, bool]:
        """Extend the leases this worker still holds; ``{job_id: abort_requested}``."""
        if not job_ids:
            return {}
        return await self._write(_leases_renew, worker_id, list(job_ids), lease_seconds)

    async def jobs_fail_expired_leases(
        self, *, now: datetime, reason: str, sweep_interval: float | None = None
    ) -> list[Job]:
        """End every INITIALIZING/RUNNING job whose lease expired as FAILED (+ promotion).

        With ``sweep_interval`` (the sweeper's period), time in which no sweep ran is not
        counted against leases (see :mod:`jobyard.store.sql.leases`).
        """
        failed, _pause = await self._write(fail_expired_leases, now, reason, sweep_interval)
        return failed

    async def jobs_held_by_workers(self, worker_ids: list[str]) -> list[Job]:
        """INITIALIZING/RUNNING jobs held by any of these workers (by id)."""
        if not worker_ids:
            return []
        return await self._read(_jobs_held_by_workers, list(worker_ids))


# -- prebuilt statements (construction is the expensive part of a Core statement) ------

_JOB_BY_ID = select(jobs).where(jobs.c.id == bindparam("job_id"))
_EVENTS_OF_JOB = (
    select(
        job_events.c.job_id,
        job_events.c.status,
        job_events.c.at,
        job_events.c.actor,
        job_events.c.reason,
    )
    .where(job_events.c.job_id == bindparam("job_id"))
    .order_by(job_events.c.id)
)
_REQUEST_ABORT = (
    update(jobs)
    .where(jobs.c.id == bindparam("job_id"), status_in(ABORTABLE))
    .values(
        abort_requested_at=func.coalesce(
            jobs.c.abort_requested_at, bindparam("now", type_=UtcDateTime())
        ),
        status_reason=func.coalesce(bindparam("reason", type_=Text()), jobs.c.status_reason),
    )
    .returning(*jobs.c)
)
_RENEW = (
    update(jobs)
    .where(
        jobs.c.id.in_(bindparam("ids", expanding=True)),
        jobs.c.worker_id == bindparam("holder"),
        status_in(HELD),
    )
    .values(lease_expires_at=bindparam("until", type_=UtcDateTime()))
    .returning(jobs.c.id, jobs.c.abort_requested_at)
)
# Locks the renewed rows in id order before the update: the reports and claims of the
# same worker lock theirs in id order too (store/sql/reports.py), and an update locking
# them in the plan's order deadlocked with those (PostgreSQL found it only after its 1 s
# deadlock_timeout, stalling both). SQLite has one writer at a time and skips it.
_LOCK_RENEWED = (
    select(jobs.c.id)
    .where(jobs.c.id.in_(bindparam("ids", expanding=True)), jobs.c.worker_id == bindparam("holder"))
    .order_by(jobs.c.id)
    .with_for_update(key_share=True)
)
_HELD_BY = (
    select(jobs)
    .where(status_in(HELD), jobs.c.worker_id.in_(bindparam("workers", expanding=True)))
    .order_by(jobs.c.id)
)
_WITH_SEQUENCED = select(jobs.c.jobconfig_id).where(status_is(JobStatus.SEQUENCED)).distinct()
# One alias per status for the multi-status listing (aliases are costly to build).
_BRANCHES = {status: jobs.alias(f"b_{status.value.lower()}") for status in JobStatus}


# -- transaction bodies (run in the executor thread) -----------------------------------


def after_sequenced(tx: Tx, job: Job) -> Job:
    """Promote after ``job`` entered SEQUENCED; return ``job`` as it is afterwards."""
    promoted = queue_one(tx, job.id) if job.jobconfig_id is None else promote(tx, job.jobconfig_id)
    for moved in promoted:
        if moved.id == job.id:
            return moved
    return job


def _job_get(tx: Tx, job_id: int) -> Job:
    row = tx.conn.execute(_JOB_BY_ID, {"job_id": job_id}).first()
    if row is None:
        raise NotFound(f"job {job_id} does not exist", {"job_id": job_id})
    return job_from_row(row)


#: Filters of a listing, in the order of the shape key of :func:`_list_shape`.
_LIST_FILTERS = ("jobconfig_id", "submitted_by", "created_after", "created_before", "after")


def _filter_conditions(
    table: Any, present: tuple[bool, ...], oldest_first: bool = False
) -> list[ColumnElement[bool]]:
    """The conditions of the filters that are ``present`` (values bound at execution);
    the cursor's position is passed the listing's way (``id >`` it when oldest first)."""
    jobconfig_id, submitted_by, created_after, created_before, after = present
    conds: list[ColumnElement[bool]] = []
    if jobconfig_id:
        conds.append(table.c.jobconfig_id == bindparam("f_jobconfig_id"))
    if submitted_by:
        conds.append(table.c.submitted_by == bindparam("f_submitted_by"))
    if created_after:
        conds.append(table.c.created_at >= bindparam("f_created_after", type_=UtcDateTime()))
    if created_before:
        conds.append(table.c.created_at < bindparam("f_created_before", type_=UtcDateTime()))
    if after:
        position: BindParameter[int] = bindparam("f_after", type_=Integer())
        conds.append(table.c.id > position if oldest_first else table.c.id < position)
    return conds


@functools.cache
def _list_shape(
    statuses: tuple[JobStatus, ...] | None, present: tuple[bool, ...], oldest_first: bool
) -> Select[Any]:
    """The listing query of one shape (which statuses, which filters, which way), built
    once: a monitoring client polling the list must not pay the construction every time.
    Both ways walk the same indexes (forwards or backwards)."""
    limit: BindParameter[int] = bindparam("f_limit", type_=Integer())
    stmt: Select[Any]
    if statuses is None or len(statuses) == 1:
        conds = _filter_conditions(jobs, present, oldest_first)
        if statuses:
            conds.append(jobs.c.status == statuses[0].value)
        stmt = select(jobs).where(*conds)
    else:
        # One index range per status (newest first, limited), merged: stays an index
        # walk of at most len(statuses) * (limit + 1) rows however big the history is.
        branches = []
        for status in statuses:
            j = _BRANCHES[status]
            branch = (
                select(j.c.id)
                .where(*_filter_conditions(j, present, oldest_first), j.c.status == status.value)
                .order_by(j.c.id.asc() if oldest_first else j.c.id.desc())
                .limit(limit)
                .subquery()
            )
            branches.append(select(branch.c.id))
        stmt = select(jobs).where(jobs.c.id.in_(union_all(*branches)))
    return stmt.order_by(jobs.c.id.asc() if oldest_first else jobs.c.id.desc()).limit(limit)


def _list_query(
    flt: JobFilter, after: int | None, limit: int, oldest_first: bool = False
) -> tuple[Select[Any], dict[str, Any]] | None:
    statuses = None if flt.statuses is None else sorted({JobStatus(s) for s in flt.statuses})
    if statuses is not None and not statuses:
        return None
    if statuses is None and flt.jobconfig_id is not None and _no_time_bounds(flt):
        # A jobconfig's jobs in id order: one (jobconfig, status, id) index range per
        # status, each limited, merged. Without a status, SQLite would otherwise read
        # and sort every job of the jobconfig (~0.1-0.2 s for 50,000 of them). With a
        # time bound the (jobconfig, created_at) index is the better walk: left alone.
        statuses = sorted(JobStatus)
    values = {
        "jobconfig_id": flt.jobconfig_id,
        "submitted_by": flt.submitted_by,
        "created_after": flt.created_after,
        "created_before": flt.created_before,
        "after": after,
    }
    present = tuple(values[name] is not None for name in _LIST_FILTERS)
    shape = _list_shape(None if statuses is None else tuple(statuses), present, oldest_first)
    params = {f"f_{name}": value for name, value in values.items() if value is not None}
    params["f_limit"] = limit + 1
    return shape, params


def _no_time_bounds(flt: JobFilter) -> bool:
    return flt.created_after is None and flt.created_before is None


def jobs_list_statement(
    flt: JobFilter, after: int | None, limit: int, oldest_first: bool = False
) -> Select[Any] | None:
    """The listing query (``None`` when the filter cannot match): newest first (or
    oldest first), limit + 1.

    Public for the query-plan tests: history size must not change how it is executed.
    """
    query = _list_query(flt, after, limit, oldest_first)
    return None if query is None else query[0].params(query[1])


def _jobs_list(
    tx: Tx, flt: JobFilter, after: int | None, limit: int, oldest_first: bool
) -> Page[Job]:
    query = _list_query(flt, after, limit, oldest_first)
    if query is None:
        return Page([], None)
    items = [job_from_row(row) for row in tx.conn.execute(*query)]
    if len(items) > limit:
        items = items[:limit]
        return Page(items, encode_cursor(items[-1].id))
    return Page(items, None)


def _job_events(tx: Tx, job_id: int) -> list[JobEvent]:
    rows = tx.conn.execute(_EVENTS_OF_JOB, {"job_id": job_id}).all()
    if not rows:
        _job_get(tx, job_id)  # NotFound for an unknown job
    return [event_from_row(row) for row in rows]


def _single(
    tx: Tx,
    job_id: int,
    to: JobStatus,
    sets: dict[str, Any],
    actor: str,
    reason: str | None,
    *,
    worker_id: str | None = None,
    new_seq: bool = False,
) -> Job:
    moved = move(
        tx,
        to=to,
        pick=Pick.ONE,
        params={"job_id": job_id},
        sets=sets,
        actor=actor,
        reason=reason,
        worker_id=worker_id,
        new_seq=new_seq,
    )
    if not moved:
        raise explain_miss(tx, job_id, f"move to {to.value}", worker_id=worker_id)
    return moved[0]


def _job_release(tx: Tx, job_id: int, actor: str) -> Job:
    lock_for_job(tx, job_id)
    job = _single(
        tx, job_id, JobStatus.SEQUENCED, {"sequenced_at": tx.now}, actor, None, new_seq=True
    )
    return after_sequenced(tx, job)


def _job_cancel(tx: Tx, job_id: int, actor: str, reason: str | None) -> Job:
    lock_for_job(tx, job_id)
    job = _single(
        tx,
        job_id,
        JobStatus.CANCELLED,
        {"ended_at": tx.now, "status_reason": reason},
        actor,
        reason,
    )
    if job.jobconfig_id is not None:
        promote(tx, job.jobconfig_id)
    return job


def job_acquire_tx(
    tx: Tx,
    worker_id: str,
    pool: str,
    limit: int,
    lease_seconds: float,
    labels: Mapping[str, str] | None = None,
) -> list[Job]:
    """QUEUED -> INITIALIZING of up to ``limit`` jobs of ``pool`` (acquisition order)
    that require no worker labels, or only some of ``labels`` (the worker's)."""
    params: dict[str, Any] = {"p_pool": pool, "limit": limit}
    pick = Pick.QUEUED_OF_POOL
    if labels:
        pick = Pick.QUEUED_OF_POOL_LABELED
        params["p_labels"] = json.dumps(dict(labels))
    return move(
        tx,
        to=JobStatus.INITIALIZING,
        pick=pick,
        params=params,
        sets={
            "worker_id": worker_id,
            "acquired_at": tx.now,
            "lease_expires_at": tx.now + timedelta(seconds=lease_seconds),
        },
        actor=_worker_actor(worker_id),
        reason=None,
        order=_acquire_order,
    )


def _job_set_running(tx: Tx, job_id: int, worker_id: str, pid: int | None) -> Job:
    return _single(
        tx,
        job_id,
        JobStatus.RUNNING,
        {"started_at": tx.now, "pid": pid},
        _worker_actor(worker_id),
        None,
        worker_id=worker_id,
    )


def _job_end(
    tx: Tx,
    job_id: int,
    worker_id: str | None,
    status: JobStatus,
    exit_code: int | None,
    reason: str | None,
    actor: str,
) -> Job:
    lock_for_job(tx, job_id)
    job = _single(
        tx,
        job_id,
        status,
        {"ended_at": tx.now, "exit_code": exit_code, "status_reason": reason},
        actor,
        reason,
        worker_id=worker_id,
    )
    if job.jobconfig_id is not None:
        promote(tx, job.jobconfig_id)
    return job


def _job_request_abort(tx: Tx, job_id: int, reason: str | None) -> Job:
    row = tx.conn.execute(
        _REQUEST_ABORT, {"job_id": job_id, "now": tx.now, "reason": reason}
    ).first()
    if row is None:
        raise explain_miss(tx, job_id, "abort (only INITIALIZING or RUNNING jobs can be aborted)")
    return job_from_row(row)


def _jobs_promote_sequenced(tx: Tx, jobconfig_id: int | None) -> list[int]:
    if jobconfig_id is not None and tx.pg and not lock_jobconfigs(tx, [jobconfig_id]):
        raise NotFound(f"jobconfig {jobconfig_id} does not exist", {"jobconfig_id": jobconfig_id})
    return [job.id for job in promote(tx, jobconfig_id)]


def _jobconfigs_with_sequenced(tx: Tx) -> list[int | None]:
    ids = {row[0] for row in tx.conn.execute(_WITH_SEQUENCED)}
    result: list[int | None] = [None] if None in ids else []
    result.extend(sorted(i for i in ids if i is not None))
    return result


def _leases_renew(
    tx: Tx, worker_id: str, job_ids: list[int], lease_seconds: float
) -> dict[int, bool]:
    until = tx.now + timedelta(seconds=lease_seconds)
    if tx.pg:
        tx.conn.execute(_LOCK_RENEWED, {"ids": job_ids, "holder": worker_id}).all()
    rows = tx.conn.execute(_RENEW, {"ids": job_ids, "holder": worker_id, "until": until})
    return {job_id: aborted is not None for job_id, aborted in rows}


def _jobs_held_by_workers(tx: Tx, worker_ids: list[str]) -> list[Job]:
    return [job_from_row(row) for row in tx.conn.execute(_HELD_BY, {"workers": worker_ids})]
