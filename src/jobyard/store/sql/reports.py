"""A worker's RUNNING and end reports, applied in one transaction.

:func:`apply_reports` applies a batch of a worker process (see
:meth:`~jobyard.store.sql.claims.ClaimsMixin.jobs_report`): RUNNING and end reports of
many held jobs, each kind of move in one statement, and the promotions the ends allow.
Each keeps every guard of the single-job calls (status sources, the holder); see
:mod:`jobyard.store.sql.transitions`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select

from jobyard.core.claims import EndReport, ReportOutcome, RunningReport
from jobyard.core.jobs import TRANSITIONS, JobStatus
from jobyard.store.schema import jobs
from jobyard.store.sql.base import Tx, utcnow
from jobyard.store.sql.held_moves import move_held_many
from jobyard.store.sql.prepared import Prepared, run_raw
from jobyard.store.sql.transitions import move_held, move_held_through, promote

_STATE_OF = Prepared(
    select(jobs.c.status, jobs.c.worker_id, jobs.c.pid).where(jobs.c.id == bindparam("job_id"))
)

#: A reports batch's locks on PostgreSQL, in one statement: the jobconfigs of its ended
#: jobs (by id; the initplan runs before any job row is read), then its job rows held by
#: the worker, by id. The batch's moves then run one statement per kind (RUNNING and end,
#: end, RUNNING), each in id order but not in one order together: without these row
#: locks first, a transaction taking the same rows in id order (a lease renewal) could
#: hold a row one of those statements waits for while waiting for a row the batch took
#: in an earlier statement — a deadlock, broken by PostgreSQL only after its
#: deadlock_timeout (1 s), then retried.
_LOCK_BATCH = (
    "WITH configs AS (SELECT jobconfigs.id FROM jobconfigs WHERE jobconfigs.id IN "
    "(SELECT jobs.jobconfig_id FROM jobs WHERE jobs.id = ANY(%b::BIGINT[])) "
    "ORDER BY jobconfigs.id FOR UPDATE) "
    "SELECT jobs.id, jobs.jobconfig_id FROM jobs "
    "WHERE jobs.id = ANY(%b::BIGINT[]) AND jobs.worker_id = %s "
    "AND (SELECT count(*) FROM configs) >= 0 "
    "ORDER BY jobs.id FOR NO KEY UPDATE OF jobs"
)


def _lock_batch(tx: Tx, worker_id: str, ended_ids: list[int], job_ids: list[int]) -> None:
    cursor = run_raw(tx.conn, _LOCK_BATCH, (ended_ids, job_ids, worker_id))
    try:
        rows = cursor.fetchall()
    finally:
        cursor.close()
    ended = set(ended_ids)
    if any(jobconfig_id is not None for job_id, jobconfig_id in rows if job_id in ended):
        # As lock_jobconfigs: the times this transaction records (ended_at, queued_at)
        # follow the order in which jobconfig slots changed hands.
        tx.now = utcnow()


def apply_reports(
    tx: Tx, worker_id: str, running: list[RunningReport], ended: list[EndReport]
) -> list[ReportOutcome]:
    """Apply the RUNNING reports, then the end reports, of ``worker_id`` and promote
    the waiting jobs of the jobconfigs the ends freed; the outcomes in the order of the
    reports (RUNNING ones first)."""
    if tx.pg and ended:
        # Jobconfig locks before job rows (the lock order of every promoting
        # transaction), then the job rows in id order (see _LOCK_BATCH).
        ended_ids = sorted({end.job_id for end in ended})
        job_ids = sorted({r.job_id for r in running} | set(ended_ids))
        _lock_batch(tx, worker_id, ended_ids, job_ids)
    to_promote: set[int] = set()
    if len({r.job_id for r in running}) == len(running) and len({e.job_id for e in ended}) == len(
        ended
    ):
        outcomes = _apply_batched(tx, worker_id, running, ended, to_promote)
    else:  # a report repeated within the batch: each applied after the one before
        outcomes = _apply_in_turn(tx, worker_id, running, ended, to_promote)
    for jobconfig_id in sorted(to_promote):
        promote(tx, jobconfig_id)
    return outcomes


def _running_sets(tx: Tx, report: RunningReport) -> dict[str, Any]:
    sets: dict[str, Any] = {"started_at": min(report.started_at, tx.now), "pid": report.pid}
    if report.resolved is not None:
        sets["resolved_macros"] = report.resolved
    return sets


def _grouped(
    items: list[tuple[Any, JobStatus, dict[str, Any]]],
) -> dict[tuple[JobStatus, tuple[str, ...]], list[tuple[Any, dict[str, Any]]]]:
    """Items by target status and the columns they set (one statement each)."""
    groups: dict[tuple[JobStatus, tuple[str, ...]], list[tuple[Any, dict[str, Any]]]] = {}
    for item, to, sets in items:
        groups.setdefault((to, tuple(sorted(sets))), []).append((item, sets))
    return groups


def _apply_batched(
    tx: Tx,
    worker_id: str,
    running: list[RunningReport],
    ended: list[EndReport],
    to_promote: set[int],
) -> list[ReportOutcome]:
    """The reports of a batch naming each job once: every move of one kind in one
    statement (:func:`move_held_many`), events and outcomes in the order of the reports,
    as :func:`_apply_in_turn` records them."""
    actor = f"worker:{worker_id}"
    ends = {end.job_id: end for end in ended}
    through: list[tuple[Any, JobStatus, dict[str, Any]]] = []
    for report in running:
        end = ends.get(report.job_id)
        if end is not None and JobStatus(end.status) in TRANSITIONS[JobStatus.RUNNING]:
            sets = {**_running_sets(tx, report), **_end_sets(tx, end)}
            through.append((report, JobStatus(end.status), sets))
    moved_through: dict[int, int | None] = {}
    for (to, _cols), rows in _grouped(through).items():
        ids = [(r.job_id, sets) for r, sets in rows]
        moved_through.update(move_held_many(tx, worker_id, to, ids, through=JobStatus.RUNNING))
    plain = [
        (report, JobStatus.RUNNING, _running_sets(tx, report))
        for report in running
        if report.job_id not in moved_through
    ]
    moved_running: dict[int, int | None] = {}
    for (to, _cols), rows in _grouped(plain).items():
        moved_running.update(move_held_many(tx, worker_id, to, [(r.job_id, s) for r, s in rows]))
    outcomes = []
    for report in running:
        started_at = min(report.started_at, tx.now)
        if report.job_id in moved_through:
            end = ends[report.job_id]
            tx.event(report.job_id, JobStatus.RUNNING, actor, None, started_at)
            tx.event(report.job_id, JobStatus(end.status), end.actor, end.reason)
            jobconfig_id = moved_through[report.job_id]
            if jobconfig_id is not None:
                to_promote.add(jobconfig_id)
            outcomes.append(ReportOutcome(report.job_id, True))
        elif report.job_id in moved_running:
            tx.event(report.job_id, JobStatus.RUNNING, actor, None, started_at)
            outcomes.append(ReportOutcome(report.job_id, True))
        else:
            outcomes.append(_outcome(tx, report.job_id, False, worker_id, report.pid, "run it"))
    rest = [
        (end, JobStatus(end.status), _end_sets(tx, end))
        for end in ended
        if end.job_id not in moved_through
    ]
    moved_ends: dict[int, int | None] = {}
    for (to, _cols), rows in _grouped(rest).items():
        moved_ends.update(move_held_many(tx, worker_id, to, [(e.job_id, s) for e, s in rows]))
    for end in ended:
        status = JobStatus(end.status)
        if end.job_id in moved_through:
            outcomes.append(ReportOutcome(end.job_id, True))
        elif end.job_id in moved_ends:
            tx.event(end.job_id, status, end.actor, end.reason)
            jobconfig_id = moved_ends[end.job_id]
            if jobconfig_id is not None:
                to_promote.add(jobconfig_id)
            outcomes.append(ReportOutcome(end.job_id, True))
        else:
            action = f"end it {status.value}"
            outcomes.append(_outcome(tx, end.job_id, False, worker_id, None, action))
    return outcomes


def _apply_in_turn(
    tx: Tx,
    worker_id: str,
    running: list[RunningReport],
    ended: list[EndReport],
    to_promote: set[int],
) -> list[ReportOutcome]:
    """The reports one by one, in order (RUNNING ones first; a RUNNING report with its
    job's end in the batch moves both in one statement)."""
    actor = f"worker:{worker_id}"
    outcomes = []
    ends = {end.job_id: end for end in ended}
    done_ends: dict[int, ReportOutcome] = {}
    for report in running:
        sets = _running_sets(tx, report)
        started_at = sets["started_at"]
        end = ends.get(report.job_id)
        if end is not None and JobStatus(end.status) in TRANSITIONS[JobStatus.RUNNING]:
            # A short job: RUNNING and its end in one statement (both events kept).
            moved, jobconfig_id = move_held_through(
                tx,
                report.job_id,
                through=JobStatus.RUNNING,
                to=JobStatus(end.status),
                worker_id=worker_id,
                sets={**sets, **_end_sets(tx, end)},
                actor=actor,
                to_actor=end.actor,
                reason=end.reason,
                through_at=started_at,
            )
            if moved:
                if jobconfig_id is not None:
                    to_promote.add(jobconfig_id)
                outcomes.append(ReportOutcome(report.job_id, True))
                done_ends[end.job_id] = ReportOutcome(end.job_id, True)
                continue
        moved, _jc = move_held(
            tx,
            report.job_id,
            to=JobStatus.RUNNING,
            worker_id=worker_id,
            sets=sets,
            actor=actor,
            reason=None,
            at=started_at,
        )
        outcomes.append(_outcome(tx, report.job_id, moved, worker_id, report.pid, "run it"))
    for end in ended:
        if end.job_id in done_ends:
            outcomes.append(done_ends[end.job_id])
            continue
        status = JobStatus(end.status)
        moved, jobconfig_id = move_held(
            tx,
            end.job_id,
            to=status,
            worker_id=worker_id,
            sets=_end_sets(tx, end),
            actor=end.actor,
            reason=end.reason,
        )
        if moved and jobconfig_id is not None:
            to_promote.add(jobconfig_id)
        outcomes.append(_outcome(tx, end.job_id, moved, worker_id, None, f"end it {status.value}"))
    return outcomes


def _end_sets(tx: Tx, end: EndReport) -> dict[str, Any]:
    return {"ended_at": tx.now, "exit_code": end.exit_code, "status_reason": end.reason}


def _outcome(
    tx: Tx, job_id: int, moved: bool, worker_id: str, pid: int | None, action: str
) -> ReportOutcome:
    if moved:
        return ReportOutcome(job_id, True)
    row = _STATE_OF.first(tx.conn, {"job_id": job_id})
    if row is None:
        return ReportOutcome(job_id, False, f"job {job_id} does not exist")
    status, holder, stored_pid = row
    if (
        pid is not None
        and status == JobStatus.RUNNING.value
        and holder == worker_id
        and stored_pid == pid
    ):
        return ReportOutcome(job_id, True)  # an earlier attempt of this very report
    if holder != worker_id:
        return ReportOutcome(
            job_id, False, f"job {job_id} is {status} on worker {holder}: cannot {action}"
        )
    return ReportOutcome(job_id, False, f"job {job_id} is {status}: cannot {action}")


__all__ = ["apply_reports"]
