"""Creating jobs: a submission snapshots what to run, and submissions share commits.

``job_insert`` (ad-hoc jobs, reruns) and ``job_submit_for_jobconfig`` are the first
write of every job. Submissions that arrive while the event loop is busy (a burst of
API requests), or while the previous batch is being written, are written together: one
transaction carries them all, each promoted once at its end (``Tx.promote_later``), and
each caller gets its own job back; one batch is written at a time. A
batch that fails (one bad reference, one disabled jobconfig) is rolled back and its
submissions are written one by one, so one caller's error is never another's. On
PostgreSQL a batch takes its jobconfig locks in id order, like every other transaction.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Insert, bindparam, insert, select, update
from sqlalchemy.engine import Dialect

from jobyard.core.access import AuditNote
from jobyard.core.claims import Claim, RidingClaim
from jobyard.core.errors import Conflict, DatabaseUnavailable, NotFound
from jobyard.core.jobs import JobStatus
from jobyard.core.labels import stored_labels
from jobyard.core.models import Job, NewJob
from jobyard.core.templates import RunTarget, effective_target
from jobyard.store.protocol_claims import SubmitRider
from jobyard.store.schema import UtcDateTime, jobconfigs, jobs, packages, templates
from jobyard.store.sql.access import audit_note_insert
from jobyard.store.sql.base import SqlBase, Tx, job_from_row
from jobyard.store.sql.claims import claim_in_tx
from jobyard.store.sql.jobconfigs import read_jobconfig
from jobyard.store.sql.jobs import after_sequenced
from jobyard.store.sql.prepared import (
    Prepared,
    RowReader,
    array_param,
    bind_processor,
    run_raw,
)
from jobyard.store.sql.transitions import (
    SYSTEM,
    lock_jobconfigs,
    next_seq_expression,
    promote,
)

#: A submission: the transaction body writing one job, and its arguments.
_Body = Callable[..., Job]
T = TypeVar("T")


@dataclass(slots=True)
class _Submission:
    body: _Body
    args: tuple[Any, ...]
    #: Jobconfig id (0 for ad-hoc): batches take jobconfig locks in this order.
    order: int
    answer: asyncio.Future[Job]


class SubmitsMixin(SqlBase):
    """Job creation with shared commits (see the module docstring)."""

    #: Submissions waiting for the next shared commit (None: none, no writer scheduled).
    _submissions: list[_Submission] | None = None
    #: The task writing them (kept referenced while it runs).
    _submission_writer: asyncio.Task[None] | None = None
    #: Asked for a claim to write with each batch (see :meth:`ride_submits`).
    _submit_rider: SubmitRider | None = None

    def ride_submits(self, rider: SubmitRider | None) -> None:
        """Write a claim from ``rider`` with each batch of submissions (see
        ``ClaimStore.ride_submits``): a remote worker's long-poll waiting on an idle
        server gets the job just submitted in the submit's own transaction, saving the
        claim's transaction (its BEGIN and COMMIT, a thread hand-off) and the wake-up
        between the two."""
        self._submit_rider = rider

    async def job_insert(
        self, new: NewJob, *, actor: str, reason: str | None, audit: AuditNote | None = None
    ) -> Job:
        """Create a job WAITING (``new.hold``) or SEQUENCED, then promote in the same tx
        (an ad-hoc job, which no limit holds back, is written QUEUED at once).

        ``audit``, when given, is written about the new job in the same transaction.
        """
        return await self._submit(_job_insert, (new, actor, reason, audit), new.jobconfig_id)

    async def job_submit_for_jobconfig(
        self,
        jobconfig_id: int,
        *,
        macros: dict[str, str],
        hold: bool,
        trigger: str,
        submitted_by: str | None,
        actor: str,
        reason: str | None,
        definers: tuple[str, ...] = (),
        audit: AuditNote | None = None,
    ) -> Job:
        """Snapshot the jobconfig and insert a job of it, in one transaction.

        The job's ``definers`` are the jobconfig's and its template's definers as they
        are now, plus the given ones (those of a job whose SESSION_ID submits it),
        without the submitter.
        """
        args = (jobconfig_id, macros, hold, trigger, submitted_by, actor, reason, definers, audit)
        return await self._submit(_job_submit_for_jobconfig, args, jobconfig_id)

    async def _submit(self, body: _Body, args: tuple[Any, ...], jobconfig_id: int | None) -> Job:
        loop = asyncio.get_running_loop()
        submission = _Submission(body, args, jobconfig_id or 0, loop.create_future())
        queue = self._submissions
        if queue is None:
            self._submissions = queue = []
        queue.append(submission)
        if self._submission_writer is None:
            writer = loop.create_task(self._write_submissions(), name="jobyard-submissions")
            self._submission_writer = writer
        return await submission.answer

    async def _write_submissions(self) -> None:
        """Write what was submitted, one batch at a time, until nothing waits.

        The first batch is what arrived until this task started (the loop's next turn):
        a lone submission on an idle server is written at once. While a batch is being
        written, what arrives waits for its commit and goes in the next batch, so under
        a burst the batches grow with the load instead of several small transactions
        running side by side (each costs a thread hand-off, its BEGIN and COMMIT and its
        statements, in this process and in PostgreSQL).
        """
        try:
            while self._submissions:
                batch, self._submissions = self._submissions, None
                await self._write_batch(batch)
        finally:
            self._submission_writer = None

    async def _write_batch(self, batch: list[_Submission]) -> None:
        """Write ``batch``: together, or each on its own if one of them is refused."""
        riding = self._riding_claim(batch)
        try:
            if len(batch) > 1:
                batch.sort(key=lambda s: s.order)
                calls = [(s.body, s.args) for s in batch]
                try:
                    jobs_ = await self._write_ridden(
                        riding, False, lambda tx: _submit_many(tx, calls)
                    )
                except DatabaseUnavailable as exc:  # the same for each of them
                    for submission in batch:
                        _settle(submission.answer, error=exc)
                    return
                except Exception:  # one of them is refused: each on its own (no claim)
                    pass
                else:
                    for submission, job in zip(batch, jobs_, strict=True):
                        _settle(submission.answer, job=job)
                    return
            for submission in batch:
                try:
                    if len(batch) == 1:  # a lone submit: the server may well be idle
                        job = await self._write_lone(submission, riding)
                    else:
                        job = await self._write_job(submission.body, *submission.args)
                except Exception as exc:
                    _settle(submission.answer, error=exc)
                else:
                    _settle(submission.answer, job=job)
        finally:
            _ride_back(riding)

    def _riding_claim(self, batch: list[_Submission]) -> RidingClaim | None:
        """The claim to write with ``batch``, if the rider has one for its pools."""
        rider = self._submit_rider
        if rider is None:
            return None
        pools: set[str] | None = set()
        for submission in batch:
            if submission.body is not _job_insert:  # a jobconfig's: pool not known here
                pools = None
                break
            new = submission.args[0]
            if not new.hold and pools is not None:
                pools.add(new.pool)
        if pools is not None and not pools:  # all held: nothing to claim
            return None
        return rider(None if pools is None else frozenset(pools))

    async def _write_ridden(
        self, riding: RidingClaim | None, on_loop: bool, run: Callable[[Tx], T]
    ) -> T:
        """``run`` in one transaction (on the loop's thread when ``on_loop`` and the
        server is idle), with ``riding``'s claim written after it; if the transaction
        fails, the claim is answered None (not written) and the error raised."""
        write = self._write_on_loop if on_loop else self._write_job
        if riding is None:
            return await write(run)
        try:
            result, claims = await write(_ridden, run, riding)
        except BaseException:
            _ride_back(riding)
            raise
        if not riding.answer.done():
            riding.answer.set_result(claims)
        return result

    async def _write_lone(self, submission: _Submission, riding: RidingClaim | None) -> Job:
        """A lone submission (with ``riding``'s claim). Refused with its claim, it is
        written again alone (nothing was committed), so it never fails for its rider;
        an outage is raised as is (a commit whose outcome is unknown is never repeated)."""
        run = _applied(submission.body, submission.args)
        try:
            return await self._write_ridden(riding, True, run)
        except DatabaseUnavailable:
            raise
        except Exception:
            if riding is None:
                raise
            return await self._write_on_loop(run)


def _applied(body: _Body, args: tuple[Any, ...]) -> Callable[[Tx], Job]:
    return lambda tx: body(tx, *args)


def _ridden(tx: Tx, run: Callable[[Tx], T], riding: RidingClaim) -> tuple[T, list[Claim]]:
    result = run(tx)
    return result, claim_in_tx(tx, riding.worker_id, riding.request)


def _ride_back(riding: RidingClaim | None) -> None:
    """Tell a riding claim that it was not written (its caller claims on its own)."""
    if riding is not None and not riding.answer.done():
        riding.answer.set_result(None)


def _settle(
    answer: asyncio.Future[Job], *, job: Job | None = None, error: BaseException | None = None
) -> None:
    if answer.done():  # the caller was cancelled meanwhile
        return
    if error is not None:
        answer.set_exception(error)
    elif job is not None:
        answer.set_result(job)


def _submit_many(tx: Tx, calls: list[tuple[_Body, tuple[Any, ...]]]) -> list[Job]:
    """Several submissions in one transaction; their promotions once, at the end."""
    tx.promote_later = set()
    created = _adhoc_together(tx, calls)
    if created is None:
        created = [body(tx, *args) for body, args in calls]
    moved: dict[int, Job] = {}
    for jobconfig_id in sorted(tx.promote_later, key=lambda i: -1 if i is None else i):
        moved.update((job.id, job) for job in promote(tx, jobconfig_id))
    tx.promote_later = None
    return [moved.get(job.id, job) for job in created]


def _adhoc_together(tx: Tx, calls: list[tuple[_Body, tuple[Any, ...]]]) -> list[Job] | None:
    """Ad-hoc jobs of a batch inserted with one statement on PostgreSQL (None: not such a
    batch; each is inserted on its own). The same rows, events and audit entries as
    :func:`_job_insert` writes one by one; an unknown package fails the whole batch,
    which is then written submission by submission (so only its own caller fails)."""
    if not tx.pg or len(calls) < 2:
        return None
    items: list[tuple[NewJob, str, str | None, AuditNote | None]] = []
    for body, args in calls:
        new = args[0]
        if body is not _job_insert or new.jobconfig_id is not None or new.hold:
            return None
        items.append(args)
    for package_id in sorted({new.package_id for new, *_ in items if new.package_id is not None}):
        _check_refs(tx, None, package_id)
    rows = [_new_job_params(tx, new) for new, *_ in items]
    sql, processors = _adhoc_many_form(tx.conn.dialect)
    arrays = []
    for col, processor in zip(_NEW_JOB_COLUMNS, processors, strict=True):
        values = [row[f"v_{col}"] for row in rows]
        if processor is not None:
            values = [None if v is None else processor(v) for v in values]
        arrays.append(values)
    cursor = run_raw(tx.conn, sql, arrays)
    try:
        found = _ADHOC_ROWS.rows(tx.conn, cursor)
    finally:
        cursor.close()
    # Sequence numbers are drawn in the order of the rows: they give each caller its job.
    created = sorted((job_from_row(row) for row in found), key=lambda job: job.seq or 0)
    if len(created) != len(items):
        raise RuntimeError(f"{len(items)} jobs inserted, {len(created)} answered")
    for job, (_new, actor, reason, audit) in zip(created, items, strict=True):
        tx.event(job.id, JobStatus.SEQUENCED, actor, reason)
        tx.event(job.id, JobStatus.QUEUED, SYSTEM, None)
        if audit is not None:
            audit_note_insert(tx, audit, job.id)
    return created


_ADHOC_ROWS = RowReader(list(jobs.c))


@functools.cache
def _adhoc_many_form(dialect: Dialect) -> tuple[str, tuple[Any, ...]]:
    """``INSERT ... SELECT FROM unnest(...)`` of QUEUED ad-hoc jobs, returning them."""
    quote = dialect.identifier_preparer
    aliases = [f"c{i}" for i in range(len(_NEW_JOB_COLUMNS))]
    casts = [array_param(jobs.c[col].type, dialect) for col in _NEW_JOB_COLUMNS]
    created = aliases[_NEW_JOB_COLUMNS.index("created_at")]
    names = ", ".join(quote.quote(col) for col in _NEW_JOB_COLUMNS)
    seq = next_seq_expression(True).compile(dialect=dialect)
    returning = ", ".join(f"jobs.{quote.quote(col.name)}" for col in jobs.c)
    sql = (
        f"INSERT INTO jobs ({names}, status, seq, sequenced_at, queued_at) "
        f"SELECT {', '.join(aliases)}, '{JobStatus.QUEUED.value}', {seq}, {created}, {created} "
        f"FROM (SELECT * FROM unnest({', '.join(casts)}) WITH ORDINALITY "
        f"AS u({', '.join(aliases)}, n) ORDER BY n) AS ordered "
        f"RETURNING {returning}"
    )
    processors = tuple(bind_processor(jobs.c[col].type, dialect) for col in _NEW_JOB_COLUMNS)
    return sql, processors


# -- prebuilt statements ------------------------------------------------------------------

_JOBCONFIG_EXISTS = Prepared(select(jobconfigs.c.id).where(jobconfigs.c.id == bindparam("id")))
_PACKAGE_EXISTS = Prepared(select(packages.c.id).where(packages.c.id == bindparam("id")))
_TEMPLATE_TARGET = Prepared(
    select(
        templates.c.package_id,
        templates.c.entrypoint,
        templates.c.command,
        templates.c.definition_changed_by,
        templates.c.labels,
    ).where(templates.c.id == bindparam("id"))
)
_SET_TEMPLATE = Prepared(
    update(jobs)
    .where(jobs.c.id == bindparam("job_id"))
    .values(template_id=bindparam("tid"))
    .returning(*jobs.c)
)
_NEW_JOB_COLUMNS = (
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
    "rerun_of",
    "created_at",
    "definers",
    "labels",
)


@functools.cache
def _insert_prepared(status: JobStatus, pg: bool) -> Prepared:
    return Prepared(_insert_statement(status, pg))


def _insert_statement(status: JobStatus, pg: bool) -> Insert:
    values: dict[str, Any] = {
        col: bindparam(f"v_{col}", type_=jobs.c[col].type) for col in _NEW_JOB_COLUMNS
    }
    values["status"] = status.value
    if status in (JobStatus.SEQUENCED, JobStatus.QUEUED):
        values["seq"] = next_seq_expression(pg)
        values["sequenced_at"] = bindparam("v_created_at", type_=UtcDateTime())
    if status is JobStatus.QUEUED:
        values["queued_at"] = bindparam("v_created_at", type_=UtcDateTime())
    return insert(jobs).values(**values).returning(*jobs.c)


# -- transaction bodies ---------------------------------------------------------------------


def _check_refs(tx: Tx, jobconfig_id: int | None, package_id: int | None) -> None:
    """``NotFound`` naming the first unknown reference (and, on PostgreSQL, lock it)."""
    if jobconfig_id is not None:
        if tx.pg:
            found = bool(lock_jobconfigs(tx, [jobconfig_id]))
        else:
            found = _JOBCONFIG_EXISTS.first(tx.conn, {"id": jobconfig_id}) is not None
        if not found:
            raise NotFound(
                f"jobconfig {jobconfig_id} does not exist", {"jobconfig_id": jobconfig_id}
            )
    if package_id is not None and _PACKAGE_EXISTS.first(tx.conn, {"id": package_id}) is None:
        raise NotFound(f"package {package_id} does not exist", {"package_id": package_id})


def definers_of(names: Iterable[str | None], submitted_by: str | None) -> list[str]:
    """The definers a job records: each name once, sorted, without the submitter."""
    return sorted({n for n in names if n and n != submitted_by})


def _job_insert(
    tx: Tx, new: NewJob, actor: str, reason: str | None, audit: AuditNote | None = None
) -> Job:
    _check_refs(tx, new.jobconfig_id, new.package_id)
    status = JobStatus.WAITING if new.hold else JobStatus.SEQUENCED
    if status is JobStatus.SEQUENCED and new.jobconfig_id is None:
        # No limit applies to an ad-hoc job: its promotion would queue it at once, in
        # this transaction. It is written QUEUED directly, with both events (SEQUENCED,
        # then QUEUED by the system), one statement instead of an INSERT and an UPDATE.
        status = JobStatus.QUEUED
    params = _new_job_params(tx, new)
    rows = _insert_prepared(status, tx.pg).fetch(tx.conn, params)
    job = job_from_row(rows[0])
    if status is JobStatus.QUEUED:
        tx.event(job.id, JobStatus.SEQUENCED, actor, reason)
        tx.event(job.id, JobStatus.QUEUED, SYSTEM, None)
    else:
        tx.event(job.id, status, actor, reason)
    if audit is not None:
        audit_note_insert(tx, audit, job.id)
    if status is JobStatus.SEQUENCED:
        if tx.promote_later is not None:
            tx.promote_later.add(job.jobconfig_id)
        else:
            job = after_sequenced(tx, job)
    return job


def _new_job_params(tx: Tx, new: NewJob) -> dict[str, Any]:
    """The inserted values of a new job (``v_<column>``), created now."""
    return {
        "v_jobconfig_id": new.jobconfig_id,
        "v_package_id": new.package_id,
        "v_entrypoint": new.entrypoint,
        "v_command": list(new.command) if new.command is not None else None,
        "v_macros": dict(new.macros),
        "v_timeout": new.timeout,
        "v_success_exit_codes": list(new.success_exit_codes),
        "v_pool": new.pool,
        "v_priority": new.priority,
        "v_trigger": new.trigger,
        "v_submitted_by": new.submitted_by,
        "v_rerun_of": new.rerun_of,
        "v_created_at": tx.now,
        "v_definers": definers_of(new.definers, new.submitted_by),
        "v_labels": stored_labels(new.labels),
    }


def _job_submit_for_jobconfig(
    tx: Tx,
    jobconfig_id: int,
    macros: dict[str, str],
    hold: bool,
    trigger: str,
    submitted_by: str | None,
    actor: str,
    reason: str | None,
    definers: tuple[str, ...],
    audit: AuditNote | None,
) -> Job:
    lock_jobconfigs(tx, [jobconfig_id])
    jc = read_jobconfig(tx, jobconfig_id)
    if not jc.enabled:
        raise Conflict(
            f"jobconfig {jc.id} ({jc.name}) is disabled: enable it before running jobs",
            {"jobconfig_id": jc.id},
        )
    target = RunTarget(jc.package_id, jc.entrypoint, jc.command)
    template = None
    names = [*definers, jc.definition_changed_by]
    labels = jc.labels
    if jc.template_id is not None:  # inherits what it does not set itself
        row = _TEMPLATE_TARGET.first(tx.conn, {"id": jc.template_id})
        template = None if row is None else RunTarget(row[0], row[1], row[2])
        target = effective_target(target, template)
        if row is not None:
            names.append(row[3])  # the template decides what its children run too
            labels = labels or row[4] or {}
    new = NewJob(
        jobconfig_id=jc.id,
        package_id=target.package_id,
        entrypoint=target.entrypoint,
        command=target.command,
        macros=dict(macros),
        timeout=jc.timeout,
        success_exit_codes=list(jc.success_exit_codes),
        pool=jc.pool,
        labels=labels,
        trigger=trigger,
        submitted_by=submitted_by,
        hold=hold,
        definers=tuple(definers_of(names, submitted_by)),
    )
    job = _job_insert(tx, new, actor, reason, audit)
    if template is None:
        return job
    params = {"job_id": job.id, "tid": jc.template_id}
    rows = _SET_TEMPLATE.fetch(tx.conn, params)
    if not rows:
        raise NotFound(f"job {job.id} does not exist", {"job_id": job.id})
    return job_from_row(rows[0])
