"""The worker's side of the job path in as few transactions as possible.

:meth:`ClaimsMixin.jobs_report`, one transaction for a whole batch of a worker process:

* RUNNING and end reports of many held jobs, and the promotions the ends allow;
* a claim: QUEUED -> INITIALIZING of up to ``limit`` jobs, their run context (package,
  payload files, every macro level, users) read in bulk, and their session tokens
  stored.

Both keep every guard of the single-job calls (status sources, the holder); see
:mod:`jobyard.store.sql.transitions`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, or_, select

from jobyard.core.claims import (
    Claim,
    ClaimRequest,
    EndReport,
    ReportAnswer,
    ReportOutcome,
    RunningReport,
)
from jobyard.core.jobs import TRANSITIONS, JobStatus
from jobyard.core.macros import MacroSources, StoredMacro
from jobyard.core.models import Job
from jobyard.core.users import User
from jobyard.store.schema import api_tokens, job_files, jobconfigs, jobs, macros, packages, users
from jobyard.store.sql.base import (
    SqlBase,
    Tx,
    job_file_from_row,
    package_from_row,
    status_is,
    utcnow,
)
from jobyard.store.sql.held_moves import move_held_many
from jobyard.store.sql.jobs import job_acquire_tx
from jobyard.store.sql.macros import MACRO_COLUMNS
from jobyard.store.sql.prepared import BulkInsert, Prepared, run_raw
from jobyard.store.sql.transitions import (
    move_held,
    move_held_through,
    promote,
)
from jobyard.store.sql.users import user_from_row

_ENDINGS = frozenset({JobStatus.FINISHED, JobStatus.ERROR, JobStatus.FAILED})


class ClaimsMixin(SqlBase):
    """Batched claims and reports of worker processes (see the module docstring)."""

    async def jobs_report(
        self,
        *,
        worker_id: str,
        running: Sequence[RunningReport] = (),
        ended: Sequence[EndReport] = (),
        claim: ClaimRequest | None = None,
    ) -> ReportAnswer:
        """Record RUNNING and end statuses of jobs held by ``worker_id``, in one transaction.

        RUNNING reports come first (a job may have both). Each is guarded like the
        single-job calls; one that does not apply any more (lease lost, aborted and
        ended, ...) is answered ``moved=False`` with the reason, without failing the
        others. A RUNNING report found already applied (the job is RUNNING on this worker
        with this pid: a repeated attempt after a commit whose answer was lost) counts as
        moved. Ends promote the waiting jobs of their jobconfigs in the same transaction.
        Outcomes come in the order of the reports (RUNNING ones first).

        ``claim`` then claims up to ``claim.limit`` QUEUED jobs of its pool (priority
        desc, seq asc) that require no worker labels or only some of ``claim.labels``,
        under a lease, with their run context, in the same transaction (a
        worker process reports the ends of some slots and fills others in one commit;
        jobs the ends promoted can be claimed at once). The n-th claimed job with an
        active submitting user gets ``claim.token_hashes[n]`` as its SESSION_ID token.
        """
        for end in ended:
            if JobStatus(end.status) not in _ENDINGS:
                raise ValueError(f"a job ends FINISHED, ERROR or FAILED, not {end.status}")
        if claim is not None and len(claim.token_hashes) < claim.limit:
            raise ValueError("a claim needs a token hash for every job it may claim")
        if not running and not ended:
            if claim is None or claim.limit <= 0:
                return ReportAnswer([])
            # A claim alone on SQLite: look without the database's write lock first
            # (idle workers all wake on a submit; only one finds the job, the others
            # should not queue for the lock behind it). PostgreSQL claims lock rows only.
            if (
                claim.look_first
                and not self._pg
                and not await self._read(_any_queued, claim.pool, bool(claim.labels))
            ):
                return ReportAnswer([])
        if claim is not None and claim.on_loop and not running and not ended:
            return await self._write_on_loop(_jobs_report, worker_id, [], [], claim)
        return await self._write(_jobs_report, worker_id, list(running), list(ended), claim)


# -- claims ------------------------------------------------------------------------------

_PACKAGES = Prepared(select(packages).where(packages.c.id.in_(bindparam("ids", expanding=True))))
_PAYLOADS = Prepared(
    select(job_files)
    .where(job_files.c.job_id.in_(bindparam("ids", expanding=True)), job_files.c.kind == "payload")
    .order_by(job_files.c.job_id, job_files.c.name),
)
_JOBCONFIGS = Prepared(
    select(
        jobconfigs.c.id, jobconfigs.c.macros, jobconfigs.c.template_id, jobconfigs.c.owner
    ).where(jobconfigs.c.id.in_(bindparam("ids", expanding=True))),
)
_USERS = Prepared(select(users).where(users.c.name.in_(bindparam("names", expanding=True))))
_LEVEL_ROWS = Prepared(
    select(*MACRO_COLUMNS)
    .where(
        or_(
            and_(macros.c.scope == "account", macros.c.scope_id == 0),
            and_(
                macros.c.scope == "template",
                macros.c.scope_id.in_(bindparam("templates", expanding=True)),
            ),
            and_(
                macros.c.scope == "jobconfig",
                macros.c.scope_id.in_(bindparam("jobconfigs", expanding=True)),
                macros.c.secure.is_(True),
            ),
            and_(
                macros.c.scope == "user",
                macros.c.scope_id.in_(bindparam("users", expanding=True)),
            ),
        )
    )
    .order_by(macros.c.name),
)
_SESSION_COLUMNS = (
    "name",
    "token_hash",
    "role",
    "created_at",
    "revoked",
    "user_id",
    "kind",
    "job_id",
)
_INSERT_SESSION = BulkInsert(api_tokens, _SESSION_COLUMNS)


def _job_claim(
    tx: Tx,
    worker_id: str,
    pool: str,
    limit: int,
    lease_seconds: float,
    token_hashes: list[str],
    labels: Mapping[str, str],
) -> list[Claim]:
    claimed = job_acquire_tx(tx, worker_id, pool, limit, lease_seconds, labels)
    return claim_details(tx, claimed, token_hashes) if claimed else []


def _ids(values: Iterable[int | None]) -> list[int]:
    return sorted({v for v in values if v is not None})


def claim_details(tx: Tx, claimed: list[Job], token_hashes: list[str]) -> list[Claim]:
    """Everything needed to run ``claimed`` (held by the caller), read in bulk, and
    their session tokens stored (see :meth:`ClaimsMixin.jobs_report`)."""
    package_ids = _ids(job.package_id for job in claimed)
    found_packages = {}
    if package_ids:
        for row in _PACKAGES.fetch(tx.conn, {"ids": package_ids}):
            package = package_from_row(row)
            found_packages[package.id] = package
    payloads: dict[int, list[Any]] = {}
    # Payload files are attached only to WAITING jobs; a job created SEQUENCED (the
    # common case) was never WAITING: its sequencing time is its creation time.
    may_have_payload = [
        job.id for job in claimed if job.sequenced_at is None or job.sequenced_at != job.created_at
    ]
    if may_have_payload:
        for row in _PAYLOADS.fetch(tx.conn, {"ids": may_have_payload}):
            file = job_file_from_row(row)
            payloads.setdefault(file.job_id, []).append(file)
    jobconfig_rows = {}
    jobconfig_ids = _ids(job.jobconfig_id for job in claimed)
    if jobconfig_ids:
        for jc_id, plain, template_id, owner in _JOBCONFIGS.fetch(tx.conn, {"ids": jobconfig_ids}):
            jobconfig_rows[jc_id] = (dict(plain or {}), template_id, owner)
    names: set[str] = set()
    for job in claimed:
        names.update(
            n for n in (job.submitted_by, *(job.definers or ())) if isinstance(n, str) and n
        )
        if job.jobconfig_id in jobconfig_rows:
            names.add(jobconfig_rows[job.jobconfig_id][2])
    known: dict[str, User] = {}
    if names:
        for row in _USERS.fetch(tx.conn, {"names": sorted(n for n in names if n)}):
            user = user_from_row(row)
            known[user.name] = user

    plans = []
    for job in claimed:
        plain, template_id, owner = jobconfig_rows.get(job.jobconfig_id, ({}, None, None))
        template_id = job.template_id if job.template_id is not None else template_id
        withheld = []
        if job.submitted_by and job.definers:
            withheld = sorted(
                {
                    name
                    for name in job.definers or ()
                    if isinstance(name, str) and name and not _trusted(known.get(name))
                }
            )
        # The user level: the submitter's (a job without one: its jobconfig's owner's);
        # nobody's when a definer who may not read it decided what the job runs.
        user_name = None if withheld else (job.submitted_by or owner)
        plans.append((job, plain, template_id, user_name, withheld))

    user_ids = _ids(
        known[name].id for _job, _p, _t, name, _w in plans if name is not None and name in known
    )
    levels: dict[tuple[str, int], list[StoredMacro]] = {}
    params = {
        "templates": _ids(t for _j, _p, t, _u, _w in plans),
        "jobconfigs": jobconfig_ids,
        "users": user_ids,
    }
    for row in _LEVEL_ROWS.fetch(tx.conn, params):
        macro = StoredMacro(*row)
        levels.setdefault((macro.scope, macro.scope_id), []).append(macro)

    hashes = iter(token_hashes)
    sessions = []
    claims = []
    for job, plain, template_id, user_name, withheld in plans:
        submitter = known.get(job.submitted_by) if job.submitted_by else None
        token_hash = None
        if submitter is not None and submitter.active:
            token_hash = next(hashes)
            sessions.append(
                {
                    "name": f"session of job {job.id}",
                    "token_hash": token_hash,
                    "role": submitter.role,
                    "created_at": tx.now,
                    "revoked": False,
                    "user_id": submitter.id,
                    "kind": "session",
                    "job_id": job.id,
                }
            )
        level_user = known.get(user_name) if user_name is not None else None
        sources = MacroSources(
            account=levels.get(("account", 0), []),
            template=levels.get(("template", template_id), []) if template_id is not None else [],
            user=levels.get(("user", level_user.id), []) if level_user is not None else [],
            jobconfig_plain=plain,
            jobconfig_secure=(
                levels.get(("jobconfig", job.jobconfig_id), [])
                if job.jobconfig_id is not None
                else []
            ),
            template_id=template_id,
            user_name=user_name,
        )
        claims.append(
            Claim(
                job=job,
                package=found_packages.get(job.package_id) if job.package_id else None,
                payload=payloads.get(job.id, []),
                sources=sources,
                submitter=submitter,
                token_hash=token_hash,
                withheld_by=withheld,
            )
        )
    if sessions:
        _INSERT_SESSION.run(tx.conn, sessions)
    return claims


def _trusted(user: User | None) -> bool:
    """Active admins may read every user's macros: what they decide withholds nothing."""
    return user is not None and user.active and user.role == "admin"


# -- reports -----------------------------------------------------------------------------

_STATE_OF = Prepared(
    select(jobs.c.status, jobs.c.worker_id, jobs.c.pid).where(jobs.c.id == bindparam("job_id"))
)


_ANY_QUEUED = Prepared(
    select(jobs.c.id).where(status_is(JobStatus.QUEUED), jobs.c.pool == bindparam("pool")).limit(1)
)
#: For a worker without labels: only jobs requiring none are worth the write lock.
_ANY_QUEUED_UNLABELED = Prepared(
    select(jobs.c.id)
    .where(status_is(JobStatus.QUEUED), jobs.c.pool == bindparam("pool"), jobs.c.labels.is_(None))
    .limit(1)
)


def _any_queued(tx: Tx, pool: str, labelled: bool) -> bool:
    found = _ANY_QUEUED if labelled else _ANY_QUEUED_UNLABELED
    return found.first(tx.conn, {"pool": pool}) is not None


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


def _jobs_report(
    tx: Tx,
    worker_id: str,
    running: list[RunningReport],
    ended: list[EndReport],
    claim: ClaimRequest | None,
) -> ReportAnswer:
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
    claims = []
    if claim is not None and claim.limit > 0:
        claims = _job_claim(
            tx,
            worker_id,
            claim.pool,
            claim.limit,
            claim.lease_seconds,
            list(claim.token_hashes),
            claim.labels,
        )
    return ReportAnswer(outcomes, claims)


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


__all__ = ["ClaimsMixin", "claim_details"]
