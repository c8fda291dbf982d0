"""Schedules: CRUD, and firing due schedules in bulk, exactly once.

Firing claims due rows (``next_fire_at <= now``; on PostgreSQL ``FOR UPDATE SKIP
LOCKED``, so replicas split the work instead of repeating it), creates their jobs,
stores each schedule's next fire time and promotes, all in one transaction: a firing
either happened completely (job + advanced schedule) or not at all. The unique index
``(schedule_id, scheduled_for)`` on jobs backs that up in the database itself.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import (
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from jobyard.core.errors import Conflict, NotFound
from jobyard.core.jobs import ACTIVE, JobStatus
from jobyard.core.models import Actor, JobConfig
from jobyard.core.schedules import (
    DueSchedule,
    FiringPlanner,
    FiringRound,
    MisfirePolicy,
    Schedule,
    ScheduleSpec,
)
from jobyard.store.schema import UtcDateTime, job_seq, jobconfigs, jobs, schedules, templates
from jobyard.store.schema import users as users_table
from jobyard.store.sql.base import SqlBase, Tx, jobconfig_from_row, status_in
from jobyard.store.sql.transitions import (
    SYSTEM,
    lock_jobconfigs,
    move_bulk,
    promote,
    record_events,
)

SCHEDULER = Actor.SCHEDULER.value
_SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(ScheduleSpec))
_FIRE_COLUMNS = (
    "jobconfig_id",
    "package_id",
    "entrypoint",
    "command",
    "macros",
    "timeout",
    "success_exit_codes",
    "pool",
    "priority",
    "trigger",
    "submitted_by",
    "status",
    "seq",
    "created_at",
    "sequenced_at",
    "schedule_id",
    "scheduled_for",
    "template_id",
    "definers",
    "labels",
)


def schedule_from_row(row: Any) -> Schedule:
    """Map a ``schedules`` row (columns in :class:`Schedule` field order)."""
    values = list(row)
    values[7] = MisfirePolicy(values[7])
    return Schedule(*values)


class SchedulesMixin(SqlBase):
    """Schedules of jobconfigs and their firing."""

    async def schedule_insert(
        self,
        jobconfig_id: int,
        spec: ScheduleSpec,
        *,
        next_fire_at: datetime | None,
        changed_by: str | None = None,
    ) -> Schedule:
        """Create; ``NotFound`` for an unknown jobconfig, ``Conflict`` for a taken name.

        A schedule's macros decide what its jobs run like the jobconfig's own: with
        macros, ``changed_by`` becomes the jobconfig's definer.
        """
        return await self._write(_schedule_insert, jobconfig_id, spec, next_fire_at, changed_by)

    async def schedule_get(self, jobconfig_id: int, schedule_id: int) -> Schedule:
        """One schedule of this jobconfig, or ``NotFound``."""
        return await self._read(_schedule_get, jobconfig_id, schedule_id)

    async def schedules_list(self, jobconfig_id: int) -> list[Schedule]:
        """The jobconfig's schedules by id; ``NotFound`` for an unknown jobconfig."""
        return await self._read(_schedules_list, jobconfig_id)

    async def schedule_replace(
        self,
        jobconfig_id: int,
        schedule_id: int,
        spec: ScheduleSpec,
        *,
        next_fire_at: datetime | None,
        expected_version: int | None = None,
        changed_by: str | None = None,
    ) -> Schedule:
        """Store new writable fields and next fire time; bump the version.

        ``expected_version`` makes it a compare-and-set (``Conflict`` if it moved). When
        its macros change, ``changed_by`` becomes the jobconfig's definer.
        """
        return await self._write(
            _schedule_replace,
            jobconfig_id, schedule_id, spec, next_fire_at, expected_version, changed_by,
        )  # fmt: skip

    async def schedule_delete(self, jobconfig_id: int, schedule_id: int) -> None:
        """Delete; jobs it created keep their schedule id and fire time."""
        await self._write(_schedule_delete, jobconfig_id, schedule_id)

    async def schedules_next_due(self) -> datetime | None:
        """The earliest ``next_fire_at`` of all schedules (None: nothing to fire)."""
        return await self._read(_next_due)

    async def schedules_due_between(
        self,
        after: datetime | None,
        until: datetime,
        *,
        limit: int,
        after_id: int | None = None,
    ) -> list[Schedule]:
        """Schedules with ``after < next_fire_at <= until``, by (next_fire_at, id).

        ``after_id`` continues a page: rows at exactly ``after`` with a larger id.
        """
        return await self._read(_due_between, after, after_id, until, limit)

    async def schedules_fire_due(self, *, limit: int, planner: FiringPlanner) -> FiringRound:
        """Fire up to ``limit`` due schedules in one transaction (see module docs)."""
        return await self._write(_fire_due, limit, planner)


def _name_taken(name: str) -> Conflict:
    return Conflict(f"this jobconfig already has a schedule named {name!r}", {"name": name})


def _spec_values(spec: ScheduleSpec) -> dict[str, Any]:
    values = {f: getattr(spec, f) for f in _SPEC_FIELDS}
    values["misfire_policy"] = MisfirePolicy(spec.misfire_policy).value
    values["macros"] = dict(spec.macros)
    return values


def _check_jobconfig(tx: Tx, jobconfig_id: int) -> None:
    found = tx.conn.execute(select(jobconfigs.c.id).where(jobconfigs.c.id == jobconfig_id)).first()
    if found is None:
        raise NotFound(f"jobconfig {jobconfig_id} does not exist", {"jobconfig_id": jobconfig_id})


def _missing(jobconfig_id: int, schedule_id: int) -> NotFound:
    return NotFound(
        f"jobconfig {jobconfig_id} has no schedule {schedule_id}",
        {"jobconfig_id": jobconfig_id, "schedule_id": schedule_id},
    )


def _mark_defined(tx: Tx, jobconfig_id: int, changed_by: str | None) -> None:
    """The jobconfig's definer is now ``changed_by`` (its schedules' macros changed)."""
    tx.conn.execute(
        update(jobconfigs)
        .where(jobconfigs.c.id == jobconfig_id)
        .values(definition_changed_by=changed_by, definition_changed_at=tx.now)
    )


def _schedule_insert(
    tx: Tx,
    jobconfig_id: int,
    spec: ScheduleSpec,
    next_fire_at: datetime | None,
    changed_by: str | None,
) -> Schedule:
    _check_jobconfig(tx, jobconfig_id)
    stmt = (
        insert(schedules)
        .values(
            jobconfig_id=jobconfig_id,
            **_spec_values(spec),
            next_fire_at=next_fire_at,
            version=1,
            created_at=tx.now,
            updated_at=tx.now,
        )
        .returning(*schedules.c)
    )
    try:
        row = tx.conn.execute(stmt).one()
    except IntegrityError as exc:
        raise _name_taken(spec.name or "") from exc
    if spec.macros:
        _mark_defined(tx, jobconfig_id, changed_by)
    return schedule_from_row(row)


def _schedule_get(tx: Tx, jobconfig_id: int, schedule_id: int) -> Schedule:
    row = tx.conn.execute(
        select(schedules).where(
            schedules.c.id == schedule_id, schedules.c.jobconfig_id == jobconfig_id
        )
    ).first()
    if row is None:
        _check_jobconfig(tx, jobconfig_id)
        raise _missing(jobconfig_id, schedule_id)
    return schedule_from_row(row)


def _schedules_list(tx: Tx, jobconfig_id: int) -> list[Schedule]:
    rows = tx.conn.execute(
        select(schedules).where(schedules.c.jobconfig_id == jobconfig_id).order_by(schedules.c.id)
    ).all()
    if not rows:
        _check_jobconfig(tx, jobconfig_id)
    return [schedule_from_row(r) for r in rows]


def _schedule_replace(
    tx: Tx,
    jobconfig_id: int,
    schedule_id: int,
    spec: ScheduleSpec,
    next_fire_at: datetime | None,
    expected_version: int | None,
    changed_by: str | None,
) -> Schedule:
    where = [schedules.c.id == schedule_id, schedules.c.jobconfig_id == jobconfig_id]
    old_macros = tx.conn.execute(select(schedules.c.macros).where(*where)).scalar()
    if expected_version is not None:
        where.append(schedules.c.version == expected_version)
    stmt = (
        update(schedules)
        .where(*where)
        .values(
            **_spec_values(spec),
            next_fire_at=next_fire_at,
            version=schedules.c.version + 1,
            updated_at=tx.now,
        )
        .returning(*schedules.c)
    )
    try:
        row = tx.conn.execute(stmt).first()
    except IntegrityError as exc:
        raise _name_taken(spec.name or "") from exc
    if row is None:
        current = _schedule_get(tx, jobconfig_id, schedule_id)  # NotFound if gone
        raise Conflict(
            f"schedule {schedule_id} changed meanwhile (version {current.version}); "
            "read it again and retry",
            {"schedule_id": schedule_id, "version": current.version},
        )
    if dict(old_macros or {}) != dict(spec.macros):
        _mark_defined(tx, jobconfig_id, changed_by)
    return schedule_from_row(row)


def _schedule_delete(tx: Tx, jobconfig_id: int, schedule_id: int) -> None:
    result = tx.conn.execute(
        delete(schedules).where(
            schedules.c.id == schedule_id, schedules.c.jobconfig_id == jobconfig_id
        )
    )
    if not result.rowcount:
        _check_jobconfig(tx, jobconfig_id)
        raise _missing(jobconfig_id, schedule_id)


def lock_schedules_of(tx: Tx, jobconfig_id: int) -> None:
    """Lock a jobconfig's schedules (PostgreSQL) before its row: the firing lock order."""
    if tx.pg:
        tx.conn.execute(
            select(schedules.c.id)
            .where(schedules.c.jobconfig_id == jobconfig_id)
            .order_by(schedules.c.id)
            .with_for_update()
        ).all()


def delete_schedules_of(tx: Tx, jobconfig_id: int) -> None:
    """Delete a jobconfig's schedules (called by jobconfig deletion)."""
    tx.conn.execute(delete(schedules).where(schedules.c.jobconfig_id == jobconfig_id))


def _next_due(tx: Tx) -> datetime | None:
    value: datetime | None = tx.conn.execute(select(func.min(schedules.c.next_fire_at))).scalar()
    return value


def _due_between(
    tx: Tx, after: datetime | None, after_id: int | None, until: datetime, limit: int
) -> list[Schedule]:
    nf = schedules.c.next_fire_at
    stmt = select(schedules).where(nf <= until)
    if after is not None:
        later = nf > after
        if after_id is not None:
            later = or_(later, and_(nf == after, schedules.c.id > after_id))
        stmt = stmt.where(later)
    stmt = stmt.order_by(nf, schedules.c.id).limit(limit)
    return [schedule_from_row(r) for r in tx.conn.execute(stmt)]


# -- firing ------------------------------------------------------------------------------

_DUE_COLUMNS = [schedules.c[f.name] for f in dataclasses.fields(DueSchedule)]
_DUE = (
    select(*_DUE_COLUMNS)
    .where(schedules.c.next_fire_at <= bindparam("now", type_=schedules.c.next_fire_at.type))
    .order_by(schedules.c.next_fire_at, schedules.c.id)
    .limit(bindparam("limit"))
)
_DUE_PG = _DUE.with_for_update(skip_locked=True)
_JOBCONFIGS_BY_ID = select(jobconfigs).where(jobconfigs.c.id.in_(bindparam("ids", expanding=True)))
#: Owners among these names who are deactivated: their schedules fire no job.
_INACTIVE_OWNERS = select(users_table.c.name).where(
    users_table.c.name.in_(bindparam("names", expanding=True)), users_table.c.active.is_(False)
)


def _counts_statement(statuses: frozenset[JobStatus]) -> Any:
    return (
        select(jobs.c.jobconfig_id, jobs.c.status, func.count())
        .where(jobs.c.jobconfig_id.in_(bindparam("ids", expanding=True)), status_in(statuses))
        .group_by(jobs.c.jobconfig_id, jobs.c.status)
    )


#: SEQUENCED jobs of every jobconfig fired (older ones waiting go first) ...
_COUNT_SEQUENCED = _counts_statement(frozenset({JobStatus.SEQUENCED}))
#: ... and ACTIVE ones only of jobconfigs with a limit: an unlimited jobconfig's backlog
#: of QUEUED jobs (no free worker) must not make each firing slower.
_COUNT_ACTIVE = _counts_statement(ACTIVE)
_MAX_SEQ_SQLITE = select(func.coalesce(func.max(jobs.c.seq), 0))


def _insert_firings(
    tx: Tx, fire_at: datetime, schedule_ids: list[int]
) -> list[tuple[int, int, int]]:
    """Create one SEQUENCED job per schedule for ``fire_at``; ``[(id, seq, jobconfig_id)]``.

    One ``INSERT ... SELECT`` from the schedules joined to their jobconfigs: the job
    snapshots the jobconfig (what to run) and takes the schedule's macros. Sequencing
    numbers follow schedule ids (PostgreSQL: the sequence; SQLite: MAX(seq) + n under
    the write lock). The events are recorded in bulk too.
    """
    s, jc = schedules, jobconfigs
    if tx.pg:
        seq: Any = job_seq.next_value()
    else:
        base = int(tx.conn.execute(_MAX_SEQ_SQLITE).scalar_one())
        seq = literal(base) + func.row_number().over(order_by=s.c.id)
    now = literal(tx.now, type_=UtcDateTime())
    # A jobconfig naming a template takes what it does not set itself from the template
    # (the rule of jobyard.core.templates.effective_target).
    t = templates
    # Whose authority bounds the job's SESSION_ID besides the owner's: the definers of
    # the jobconfig and of its template, the owner left out (a NULL stays in the array:
    # readers skip it).
    definers = (func.json_build_array if tx.pg else func.json_array)(
        func.nullif(jc.c.definition_changed_by, jc.c.owner),
        func.nullif(t.c.definition_changed_by, jc.c.owner),
    )
    inherits = and_(
        t.c.id.is_not(None),
        jc.c.package_id.is_(None),
        jc.c.entrypoint.is_(None),
        jc.c.command.is_(None),
    )
    rows = (
        select(
            jc.c.id,
            func.coalesce(jc.c.package_id, t.c.package_id),
            case((inherits, t.c.entrypoint), else_=jc.c.entrypoint),
            case((inherits, t.c.command), else_=jc.c.command),
            s.c.macros,
            jc.c.timeout,
            jc.c.success_exit_codes,
            jc.c.pool,
            literal(0),
            literal("schedule"),
            jc.c.owner,
            literal(JobStatus.SEQUENCED.value),
            seq,
            now,
            now,
            s.c.id,
            literal(fire_at, type_=UtcDateTime()),
            t.c.id,
            definers,
            func.coalesce(jc.c.labels, t.c.labels),
        )
        .select_from(
            s.join(jc, jc.c.id == s.c.jobconfig_id).outerjoin(t, t.c.id == jc.c.template_id)
        )
        .where(s.c.id.in_(schedule_ids))
        .order_by(s.c.id)
    )
    stmt = (
        insert(jobs)
        .from_select(list(_FIRE_COLUMNS), rows)
        .returning(jobs.c.id, jobs.c.seq, jobs.c.jobconfig_id)
    )
    created = [(r[0], r[1], r[2]) for r in tx.conn.execute(stmt)]
    reason = (
        literal("schedule ")
        + cast(jobs.c.schedule_id, String)
        + literal(f" fired for {fire_at.isoformat()}")
    )
    record_events(tx, [c[0] for c in created], JobStatus.SEQUENCED, SCHEDULER, reason)
    return created


def _due_from_row(r: Any) -> DueSchedule:
    return DueSchedule(
        id=r[0],
        jobconfig_id=r[1],
        cron=r[2],
        interval_minutes=r[3],
        start_at=r[4],
        timezone=r[5],
        misfire_policy=MisfirePolicy(r[6]),
        next_fire_at=r[7],
        last_fire_at=r[8],
        version=r[9],
    )


def _fire_due(tx: Tx, limit: int, planner: FiringPlanner) -> FiringRound:
    now = tx.now
    due = [
        _due_from_row(r)
        for r in tx.conn.execute(_DUE_PG if tx.pg else _DUE, {"now": now, "limit": limit})
    ]
    if not due:
        return FiringRound(0, 0, 0, frozenset(), now, [])
    jc_ids = sorted({s.jobconfig_id for s in due})
    lock_jobconfigs(tx, jc_ids)  # PostgreSQL: schedules, then jobconfigs, then jobs
    now = tx.now
    configs = {
        jc.id: jc
        for jc in map(jobconfig_from_row, tx.conn.execute(_JOBCONFIGS_BY_ID, {"ids": jc_ids}))
    }
    owners = sorted({jc.owner for jc in configs.values() if jc.owner})
    inactive = (
        set(tx.conn.execute(_INACTIVE_OWNERS, {"names": owners}).scalars()) if owners else set()
    )
    firings: list[tuple[DueSchedule, JobConfig, datetime]] = []
    lateness: list[float] = []  # of on-time firings (a catch-up is late by design)
    missed = 0
    advances: list[dict[str, Any]] = []
    for s in due:
        plan = planner.plan(s, now)
        jc = configs[s.jobconfig_id]
        result = plan.result
        fire_at = plan.fire_at
        if fire_at and not jc.enabled:
            result = f"no job: jobconfig {jc.name!r} is disabled ({result})"
            fire_at = []
        elif fire_at and jc.owner in inactive:
            result = f"no job: owner {jc.owner} is deactivated ({result})"
            fire_at = []
        elif fire_at and plan.missed == 0 and len(fire_at) == 1:
            result = "fired"
        firings.extend((s, jc, t) for t in fire_at)
        if plan.missed:
            missed += 1
        else:
            lateness.extend((now - t).total_seconds() for t in fire_at)
        advances.append(
            {
                "s_id": s.id,
                "s_next": plan.next_fire_at,
                "s_last": fire_at[-1] if fire_at else s.last_fire_at,
                "s_result": f"{now.isoformat()}: {result}",
            }
        )
    _advance(tx, advances)
    if not firings:
        return FiringRound(len(due), 0, 0, frozenset(), now, [], missed)
    by_time: dict[datetime, list[int]] = defaultdict(list)
    for sched, _, t in firings:
        by_time[t].append(sched.id)
    new_by_config: dict[int, list[tuple[int, int]]] = defaultdict(list)
    created = 0
    for t in sorted(by_time):
        for job_id, seq, jc_id in _insert_firings(tx, t, by_time[t]):
            new_by_config[jc_id].append((seq, job_id))
            created += 1
    queued = _promote_new(tx, configs, new_by_config)
    pools = frozenset(pool for _, pool in queued)
    return FiringRound(len(due), created, len(queued), pools, now, lateness, missed)


def _advance(tx: Tx, advances: list[dict[str, Any]]) -> None:
    """Store next fire times: one UPDATE per distinct (next, last, result), usually one."""
    groups: dict[tuple[Any, Any, str], list[int]] = defaultdict(list)
    for a in advances:
        groups[(a["s_next"], a["s_last"], a["s_result"])].append(a["s_id"])
    for (nxt, last, result), ids in groups.items():
        tx.conn.execute(
            update(schedules)
            .where(schedules.c.id.in_(ids))
            .values(next_fire_at=nxt, last_fire_at=last, last_result=result)
        )


def _promote_new(
    tx: Tx, configs: dict[int, JobConfig], new_by_config: dict[int, list[tuple[int, int]]]
) -> list[tuple[int, str]]:
    """Queue new jobs within each jobconfig's limit, in bulk where nothing else waits.

    Jobs of a jobconfig are queued by seq. The new jobs carry the highest seqs, so when
    no older SEQUENCED job waits, "the first ``free`` SEQUENCED jobs" are simply the
    first ``free`` new ones: one UPDATE queues them for every such jobconfig. A
    jobconfig with older waiting jobs goes through the ordinary :func:`promote`.
    ``new_by_config`` maps jobconfig id -> ``[(seq, job id)]``; returns ``(id, pool)``.
    """
    counts: Counter[tuple[int, str]] = Counter()
    limited = sorted(i for i in new_by_config if configs[i].max_concurrent > 0)
    for stmt, ids in ((_COUNT_SEQUENCED, sorted(new_by_config)), (_COUNT_ACTIVE, limited)):
        if ids:
            for jc_id, status, n in tx.conn.execute(stmt, {"ids": ids}):
                counts[(jc_id, status)] = n
    bulk: list[int] = []
    queued: list[tuple[int, str]] = []
    for jc_id, new in new_by_config.items():
        older = counts[(jc_id, JobStatus.SEQUENCED.value)] - len(new)
        if older > 0:
            queued.extend((job.id, job.pool) for job in promote(tx, jc_id))
            continue
        limit = configs[jc_id].max_concurrent
        free = len(new) if limit == 0 else limit - sum(counts[(jc_id, s.value)] for s in ACTIVE)
        bulk.extend(job_id for _, job_id in sorted(new)[: max(free, 0)])
    queued.extend(
        move_bulk(
            tx,
            to=JobStatus.QUEUED,
            ids=bulk,
            sets={"queued_at": tx.now},
            actor=SYSTEM,
            reason=None,
        )
    )
    return queued
