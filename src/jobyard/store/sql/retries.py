"""Retries: submit a new job for each ended job its jobconfig's retry policy repeats.

Run by the maintenance pass, never on the job path: submit, claim and report neither
read nor write anything of it. One transaction finds the ended ERROR/FAILED jobs of
jobconfigs with ``retries > 0`` (or, for a jobconfig with ``retries`` 0, its template's
policy) that ended since that policy's ``retry_since`` and have no decision in
``job_retries`` yet (the join only reaches jobconfigs with a policy, through
``ix_jobs_jobconfig_status_id``), and decides each one that is due: a row in
``job_retries`` keyed by the ended job (``INSERT … ON CONFLICT DO NOTHING``, so of two
concurrent passes exactly one wins) and, when the policy allows another attempt, a new
job repeating it, written like a rerun.

A job that was given payload files is not retried: its retry would run without them
(they belong to the ended job and go with it), so the decision is recorded with no new
job rather than a run that silently lacks its input.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update

from jobyard.core.jobs import JobStatus
from jobyard.core.models import Job, repeat_job
from jobyard.core.retries import RETRYABLE, RetryLinks, retry_due_at
from jobyard.store.schema import job_files, job_retries, jobconfigs, jobs, templates
from jobyard.store.sql.base import SqlBase, Tx, job_from_row, upsert
from jobyard.store.sql.submits import _job_insert

#: Most undecided jobs one pass looks at (the rest wait for the next pass).
SCAN_LIMIT = 1000

_done = job_retries.alias("done")
_prev = job_retries.alias("prev")

_own = jobconfigs.c.retries > 0
_inherited = and_(jobconfigs.c.retries == 0, templates.c.retries > 0)

_CANDIDATES = (
    select(
        jobs.c.id,
        jobs.c.status,
        jobs.c.ended_at,
        _prev.c.attempt,
        jobconfigs.c.enabled,
        jobconfigs.c.retries,
        jobconfigs.c.retry_delay_seconds,
        jobconfigs.c.retry_backoff,
        jobconfigs.c.retry_on,
        templates.c.retries,
        templates.c.retry_delay_seconds,
        templates.c.retry_backoff,
        templates.c.retry_on,
    )
    .select_from(
        jobconfigs.outerjoin(templates, templates.c.id == jobconfigs.c.template_id)
        .join(jobs, jobs.c.jobconfig_id == jobconfigs.c.id)
        .outerjoin(_done, _done.c.retry_of == jobs.c.id)
        .outerjoin(_prev, _prev.c.job_id == jobs.c.id)
    )
    .where(
        or_(
            and_(_own, jobs.c.ended_at >= jobconfigs.c.retry_since),
            and_(_inherited, jobs.c.ended_at >= templates.c.retry_since),
        ),
        jobs.c.status.in_(RETRYABLE),
        _done.c.retry_of.is_(None),
    )
    .order_by(jobs.c.jobconfig_id, jobs.c.id)  # jobconfig locks in id order, as everywhere
    .limit(SCAN_LIMIT)
)

_JOB_BY_ID = select(jobs).where(jobs.c.id == bindparam("job_id"))
_HAS_PAYLOAD = (
    select(job_files.c.job_id)
    .where(job_files.c.job_id == bindparam("job_id"), job_files.c.kind == "payload")
    .limit(1)
)


class RetriesMixin(SqlBase):
    """Retry submission (maintenance) and the retry links of one job (shown jobs)."""

    async def jobs_submit_due_retries(self, *, now: datetime) -> list[Job]:
        """Decide every ended job whose retry is due at ``now``; the retry jobs submitted.

        Exactly once per ended job, however many passes run at the same time.
        """
        # Look first in a read transaction: most passes find nothing due, and on SQLite
        # a write transaction would take the write lock the job path is waiting for.
        if not await self._read(_any_due, now):
            return []
        return await self._write(_submit_due_retries, now)

    async def job_retry_links(self, job_id: int) -> RetryLinks:
        """Which job ``job_id`` retries (and its attempt), and which job retries it."""
        return await self._read(_job_retry_links, job_id)


def _decide(tx: Tx, retry_of: int, attempt: int) -> bool:
    """Record the decision about ``retry_of``; False if another pass recorded it first."""
    stmt = (
        upsert(tx, job_retries)
        .values(retry_of=retry_of, job_id=None, attempt=attempt, created_at=tx.now)
        .on_conflict_do_nothing(index_elements=[job_retries.c.retry_of])
        .returning(job_retries.c.retry_of)
    )
    return tx.conn.execute(stmt).first() is not None


def _submit_retry(tx: Tx, old: Job, attempt: int) -> Job:
    """A new job repeating ``old`` (what a rerun would take), linked to it."""
    new = repeat_job(
        old, trigger="retry", submitted_by=old.submitted_by, definers=tuple(old.definers or ())
    )
    job = _job_insert(tx, new, "system", f"retry {attempt} of job {old.id} ({old.status})")
    tx.conn.execute(
        update(job_retries).where(job_retries.c.retry_of == old.id).values(job_id=job.id)
    )
    return job


def _judge(row: Any, now: datetime) -> tuple[int, int, bool] | None:
    """(ended job, attempt of its retry, whether to submit one) for a candidate row whose
    decision is due at ``now``; None when it is not due yet."""
    job_id, status, ended_at, prev_attempt, enabled = row[:5]
    # Its jobconfig's own policy when it has one, else its template's.
    retries, delay, backoff, retry_on = row[5:9] if row[5] > 0 else row[9:13]
    attempt = (prev_attempt or 0) + 1
    wanted = bool(
        enabled and attempt <= retries and status in (retry_on or [JobStatus.FAILED.value])
    )
    if wanted and retry_due_at(ended_at, delay, backoff, attempt) > now:
        return None  # not yet: a later pass submits it
    return job_id, attempt, wanted


def _any_due(tx: Tx, now: datetime) -> bool:
    return any(_judge(row, now) is not None for row in tx.conn.execute(_CANDIDATES).all())


def _submit_due_retries(tx: Tx, now: datetime) -> list[Job]:
    submitted: list[Job] = []
    for row in tx.conn.execute(_CANDIDATES).all():
        judged = _judge(row, now)
        if judged is None:
            continue
        job_id, attempt, wanted = judged
        if wanted and tx.conn.execute(_HAS_PAYLOAD, {"job_id": job_id}).first() is not None:
            wanted = False  # its payload files are not the retry's: see the module's notes
        if not _decide(tx, job_id, attempt) or not wanted:
            continue
        old = tx.conn.execute(_JOB_BY_ID, {"job_id": job_id}).first()
        if old is not None:
            submitted.append(_submit_retry(tx, job_from_row(old), attempt))
    return submitted


def _job_retry_links(tx: Tx, job_id: int) -> RetryLinks:
    rows: Sequence[Any] = tx.conn.execute(
        select(job_retries.c.retry_of, job_retries.c.job_id, job_retries.c.attempt).where(
            or_(
                job_retries.c.job_id == job_id,
                and_(job_retries.c.retry_of == job_id, job_retries.c.job_id.is_not(None)),
            )
        )
    ).all()
    retry_of, attempt, retried_by = None, 0, None
    for of, by, n in rows:
        if by == job_id:
            retry_of, attempt = of, n
        else:
            retried_by = by
    return RetryLinks(retry_of=retry_of, attempt=attempt, retried_by=retried_by)
