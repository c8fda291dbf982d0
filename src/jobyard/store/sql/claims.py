"""The worker's side of the job path in as few transactions as possible.

:meth:`ClaimsMixin.jobs_report`, one transaction for a whole batch of a worker process:

* RUNNING and end reports of many held jobs, and the promotions the ends allow (see
  :mod:`jobyard.store.sql.reports`);
* a claim: QUEUED -> INITIALIZING of up to ``limit`` jobs, their run context (package,
  payload files, every macro level, users) read in bulk, and their session tokens
  stored.

Both keep every guard of the single-job calls (status sources, the holder); see
:mod:`jobyard.store.sql.transitions`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Integer,
    and_,
    any_,
    bindparam,
    cast,
    func,
    null,
    or_,
    select,
    union_all,
)

from jobyard.core.claims import (
    Claim,
    ClaimRequest,
    EndReport,
    ReportAnswer,
    RunningReport,
)
from jobyard.core.jobs import JobStatus
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
)
from jobyard.store.sql.jobs import job_acquire_tx
from jobyard.store.sql.macros import MACRO_COLUMNS
from jobyard.store.sql.prepared import BulkInsert, Prepared
from jobyard.store.sql.reports import apply_reports
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
        return await self._write_job(_jobs_report, worker_id, list(running), list(ended), claim)


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


def _jobs_report(
    tx: Tx,
    worker_id: str,
    running: list[RunningReport],
    ended: list[EndReport],
    claim: ClaimRequest | None,
) -> ReportAnswer:
    outcomes = apply_reports(tx, worker_id, running, ended) if running or ended else []
    claims = []
    if claim is not None and claim.limit > 0:
        claims = claim_in_tx(tx, worker_id, claim)
    return ReportAnswer(outcomes, claims)


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


def _levels_where(user_ids: ColumnElement[bool]) -> ColumnElement[bool]:
    """The macro rows of a claim: the account level, its templates', its jobconfigs'
    secure ones, and the users' that ``user_ids`` selects."""
    return or_(
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
        and_(macros.c.scope == "user", user_ids),
    )


_LEVEL_ROWS = Prepared(
    select(*MACRO_COLUMNS)
    .where(_levels_where(macros.c.scope_id.in_(bindparam("users", expanding=True))))
    .order_by(macros.c.name),
)
_USER_WIDTH = len(users.c)
#: PostgreSQL: the users and the macro levels of a claim in one statement (one round
#: trip and one statement less per claim). A users row has its macro columns NULL, a
#: macro row its users columns NULL; macro rows come by name. The user level is read for
#: every user whose level a job of the claim may take (``level_names``: submitters, else
#: jobconfig owners); the caller keeps only the level of the user each job gets.
_USERS_AND_LEVELS = Prepared(
    union_all(
        select(
            *users.c, *(cast(null(), col.type).label(f"m_{col.name}") for col in MACRO_COLUMNS)
        ).where(users.c.name.in_(bindparam("names", expanding=True))),
        select(*(cast(null(), col.type) for col in users.c), *MACRO_COLUMNS).where(
            # = ANY(one array, an initplan) keeps the OR an index scan per level: an
            # IN (subquery) there would be a filter over every macro row.
            _levels_where(
                macros.c.scope_id
                == any_(
                    cast(
                        select(func.array_agg(users.c.id))
                        .where(users.c.name.in_(bindparam("level_names", expanding=True)))
                        .scalar_subquery(),
                        ARRAY(Integer),
                    )
                )
            )
        ),
    ).order_by("m_name"),
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


def claim_in_tx(tx: Tx, worker_id: str, claim: ClaimRequest) -> list[Claim]:
    """``claim`` (up to its ``limit`` jobs) written in ``tx``, with the jobs' run context."""
    claimed = job_acquire_tx(
        tx, worker_id, claim.pool, claim.limit, claim.lease_seconds, claim.labels
    )
    return claim_details(tx, claimed, list(claim.token_hashes)) if claimed else []


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
    levels: dict[tuple[str, int], list[StoredMacro]] = {}
    if tx.pg:  # users and levels in one statement
        level_names = set()
        for job in claimed:
            owner = (
                jobconfig_rows[job.jobconfig_id][2] if job.jobconfig_id in jobconfig_rows else None
            )
            level_names.add(job.submitted_by or owner)
        params = {
            "names": sorted(n for n in names if n),
            "level_names": sorted(n for n in level_names if isinstance(n, str) and n),
            "templates": _ids(_template_of(job, jobconfig_rows) for job in claimed),
            "jobconfigs": jobconfig_ids,
        }
        width = _USER_WIDTH
        for row in _USERS_AND_LEVELS.fetch(tx.conn, params):
            if row[0] is not None:
                user = user_from_row(row[:width])
                known[user.name] = user
            else:
                macro = StoredMacro(*row[width:])
                levels.setdefault((macro.scope, macro.scope_id), []).append(macro)
    elif names:
        for row in _USERS.fetch(tx.conn, {"names": sorted(n for n in names if n)}):
            user = user_from_row(row)
            known[user.name] = user

    plans = []
    for job in claimed:
        plain, _template_id, owner = jobconfig_rows.get(job.jobconfig_id, ({}, None, None))
        template_id = _template_of(job, jobconfig_rows)
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

    if not tx.pg:
        user_ids = _ids(
            known[name].id for _job, _p, _t, name, _w in plans if name is not None and name in known
        )
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


def _template_of(job: Job, jobconfig_rows: Mapping[Any, tuple[Any, Any, Any]]) -> int | None:
    """The template whose macro level ``job`` takes: its own, else its jobconfig's."""
    if job.template_id is not None:
        return job.template_id
    found = jobconfig_rows.get(job.jobconfig_id)
    return None if found is None else found[1]


def _trusted(user: User | None) -> bool:
    """Active admins may read every user's macros: what they decide withholds nothing."""
    return user is not None and user.active and user.role == "admin"


__all__ = ["ClaimsMixin", "claim_details"]
