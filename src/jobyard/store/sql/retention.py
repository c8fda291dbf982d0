"""Retention: find and delete ended jobs past their keep, old audit rows, unused packages.

Every write here is a short transaction over at most one batch of rows, guarded by
the condition that made the rows purgeable (ended, unreferenced, old enough) so a
purge racing a status change, a submission or an upload deletes nothing still in use.
The blob files of what was deleted are returned to the caller, which removes them
after the commit: a crash in between leaves orphan files (swept later), never rows
pointing at missing files.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from jobyard.core.jobs import TERMINAL
from jobyard.core.models import Package
from jobyard.core.retention import JobconfigKey, JobsPurged
from jobyard.store.schema import (
    api_tokens,
    audit,
    job_events,
    job_files,
    job_retries,
    jobconfigs,
    jobs,
    packages,
    templates,
)
from jobyard.store.sql.base import SqlBase, Tx, package_from_row, status_in
from jobyard.store.sql.stats import fold_deleted

#: Most ids a caller may hand to one purge transaction.
MAX_BATCH = 10_000


def _of_jobconfig(jobconfig_id: JobconfigKey) -> ColumnElement[bool]:
    if jobconfig_id is None:
        return jobs.c.jobconfig_id.is_(None)
    return jobs.c.jobconfig_id == jobconfig_id


def _check_batch(ids: list[int]) -> list[int]:
    if len(ids) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} ids per purge transaction")
    return sorted(set(ids))


class RetentionMixin(SqlBase):
    """Purge queries of the retention pass (see :mod:`jobyard.engine.retention`)."""

    async def retention_overrides(self) -> list[tuple[int, float | None, int | None]]:
        """``(jobconfig id, max_age_days, max_jobs)`` of every jobconfig (None: global)."""
        return await self._read(_retention_overrides)

    async def jobs_purgeable(
        self,
        jobconfig_id: JobconfigKey,
        *,
        keep: int,
        ended_before: datetime | None,
        after_id: int = 0,
        limit: int,
    ) -> list[int]:
        """Ids (ascending, > ``after_id``) of ended jobs of one jobconfig past their keep.

        Past the keep: older than the ``keep`` newest ended jobs (``keep`` 0: no count
        limit), or ended before ``ended_before`` (None: no age limit). Jobs that have not
        ended are never listed.
        """
        return await self._read(_jobs_purgeable, jobconfig_id, keep, ended_before, after_id, limit)

    async def jobs_purge(self, job_ids: list[int], *, dry_run: bool = False) -> JobsPurged:
        """Delete these jobs if ended, with their events, file records and session tokens.

        One transaction; ids of jobs that have not ended (or no longer exist) are
        skipped. Returns what went, with the blob keys of the files to delete next.
        ``dry_run`` deletes nothing and answers what would go.
        """
        ids = _check_batch(job_ids)
        if dry_run:
            return await self._read(_jobs_purge, ids, True)
        return await self._write(_jobs_purge, ids, False)

    async def audit_purge(self, *, before: datetime, limit: int, dry_run: bool = False) -> int:
        """Delete up to ``limit`` audit rows older than ``before`` (oldest first); the count."""
        if dry_run:
            return await self._read(_audit_count, before)
        return await self._write(_audit_purge, before, limit)

    async def packages_purgeable(self, *, created_before: datetime, limit: int) -> list[Package]:
        """Packages no jobconfig, template or job refers to, created before the time."""
        return await self._read(_packages_purgeable, created_before, None, limit)

    async def packages_purge(
        self, package_ids: list[int], *, created_before: datetime | None
    ) -> list[Package]:
        """Delete these packages if still unreferenced (and created before the time).

        Returns the deleted ones (their blobs go next). A package that something came
        to refer to meanwhile stays.
        """
        return await self._write(_packages_purge, _check_batch(package_ids), created_before)

    async def jobs_existing(self, job_ids: list[int]) -> set[int]:
        """Which of these job ids still exist (the orphan-file sweep)."""
        return await self._read(_jobs_existing, _check_batch(job_ids))

    async def packages_existing(self, sha256s: list[str]) -> set[str]:
        """Which of these package hashes have a package row (the orphan-file sweep)."""
        return await self._read(_packages_existing, sorted(set(sha256s)))


# -- transaction bodies ------------------------------------------------------------------


def _retention_overrides(tx: Tx) -> list[tuple[int, float | None, int | None]]:
    rows = tx.conn.execute(
        select(
            jobconfigs.c.id, jobconfigs.c.retention_max_age_days, jobconfigs.c.retention_max_jobs
        ).order_by(jobconfigs.c.id)
    )
    return [(int(r[0]), r[1], r[2]) for r in rows]


def _jobs_purgeable(
    tx: Tx,
    jobconfig_id: JobconfigKey,
    keep: int,
    ended_before: datetime | None,
    after_id: int,
    limit: int,
) -> list[int]:
    of_jc = _of_jobconfig(jobconfig_id)
    # Both conditions: the status is the rule, ``ended_at`` the partial index's predicate.
    ended = status_in(TERMINAL) & jobs.c.ended_at.is_not(None)
    found: set[int] = set()
    if keep > 0:
        # The newest ended job beyond the keep: it and every older ended job go.
        # A range of the partial index ix_jobs_ended, read backwards; no sort.
        threshold = tx.conn.execute(
            select(jobs.c.id).where(of_jc, ended).order_by(jobs.c.id.desc()).offset(keep).limit(1)
        ).scalar()
        if threshold is not None:
            rows = tx.conn.execute(
                select(jobs.c.id)
                .where(of_jc, ended, jobs.c.id > after_id, jobs.c.id <= threshold)
                .order_by(jobs.c.id)
                .limit(limit)
            )
            found.update(r[0] for r in rows)
    if ended_before is not None:
        # A job created at or after the cutoff cannot have ended before it: stop the
        # scan at the first such id (ids grow with creation time).
        bound = tx.conn.execute(
            select(jobs.c.id)
            .where(jobs.c.created_at >= ended_before)
            .order_by(jobs.c.created_at)
            .limit(1)
        ).scalar()
        stmt = (
            select(jobs.c.id)
            .where(
                of_jc,
                ended,
                jobs.c.id > after_id,
                func.coalesce(jobs.c.ended_at, jobs.c.created_at) < ended_before,
            )
            .order_by(jobs.c.id)
            .limit(limit)
        )
        if bound is not None:
            stmt = stmt.where(jobs.c.id < bound)
        found.update(r[0] for r in tx.conn.execute(stmt))
    return sorted(found)[:limit]


def _jobs_purge(tx: Tx, ids: list[int], dry_run: bool) -> JobsPurged:
    if not ids:
        return JobsPurged([], 0, 0, [], 0)
    ended_ids = [
        r[0]
        for r in tx.conn.execute(
            select(jobs.c.id).where(jobs.c.id.in_(ids), status_in(TERMINAL)).order_by(jobs.c.id)
        )
    ]
    return delete_job_rows(tx, ended_ids, dry_run=dry_run)


def delete_job_rows(tx: Tx, ids: list[int], *, dry_run: bool = False) -> JobsPurged:
    """Delete jobs (already checked as deletable) and every row keyed by their ids.

    Events, payload/output file records and session tokens go with them (resolved
    macros and definers are columns of the job). Returns the file blobs to delete.
    """
    if not ids:
        return JobsPurged([], 0, 0, [], 0)
    files = tx.conn.execute(
        select(job_files.c.blob_key, job_files.c.size).where(job_files.c.job_id.in_(ids))
    ).all()
    keys = [r[0] for r in files]
    size = sum(int(r[1] or 0) for r in files)
    if dry_run:
        events = tx.conn.execute(
            select(func.count()).select_from(job_events).where(job_events.c.job_id.in_(ids))
        ).scalar_one()
        tokens = tx.conn.execute(
            select(func.count()).select_from(api_tokens).where(api_tokens.c.job_id.in_(ids))
        ).scalar_one()
        return JobsPurged(list(ids), int(events), int(tokens), keys, size)
    # Jobs the statistics rollup has not counted yet are counted now, in this
    # transaction: deleting a job never changes the statistics.
    fold_deleted(tx, ids)
    events = tx.conn.execute(delete(job_events).where(job_events.c.job_id.in_(ids))).rowcount
    tx.conn.execute(delete(job_files).where(job_files.c.job_id.in_(ids)))
    tokens = tx.conn.execute(delete(api_tokens).where(api_tokens.c.job_id.in_(ids))).rowcount
    # Retry decisions about them go too, unless their retry job lives on: its attempt
    # number is counted through that row, so a chain never restarts from 0.
    tx.conn.execute(
        delete(job_retries).where(
            job_retries.c.retry_of.in_(ids),
            or_(job_retries.c.job_id.is_(None), job_retries.c.job_id.in_(ids)),
        )
    )
    tx.conn.execute(delete(jobs).where(jobs.c.id.in_(ids)))
    return JobsPurged(list(ids), int(events), int(tokens), keys, size)


def _audit_count(tx: Tx, before: datetime) -> int:
    return int(
        tx.conn.execute(
            select(func.count()).select_from(audit).where(audit.c.at < before)
        ).scalar_one()
    )


def _audit_purge(tx: Tx, before: datetime, limit: int) -> int:
    oldest = (
        select(audit.c.id).where(audit.c.at < before).order_by(audit.c.at).limit(limit)
    ).scalar_subquery()
    ids = [r[0] for r in tx.conn.execute(select(audit.c.id).where(audit.c.id.in_(oldest)))]
    if not ids:
        return 0
    return int(tx.conn.execute(delete(audit).where(audit.c.id.in_(ids))).rowcount)


def _unreferenced() -> list[ColumnElement[bool]]:
    return [
        ~exists().where(jobconfigs.c.package_id == packages.c.id),
        ~exists().where(templates.c.package_id == packages.c.id),
        ~exists().where(jobs.c.package_id == packages.c.id),
    ]


def _packages_purgeable(
    tx: Tx, created_before: datetime | None, ids: list[int] | None, limit: int | None
) -> list[Package]:
    stmt = select(packages).where(*_unreferenced()).order_by(packages.c.id)
    if created_before is not None:
        stmt = stmt.where(packages.c.created_at < created_before)
    if ids is not None:
        stmt = stmt.where(packages.c.id.in_(ids))
    if limit is not None:
        stmt = stmt.limit(limit)
    return [package_from_row(r) for r in tx.conn.execute(stmt)]


def _packages_purge(tx: Tx, ids: list[int], created_before: datetime | None) -> list[Package]:
    if not ids:
        return []
    gone = _packages_purgeable(tx, created_before, ids, None)
    if not gone:
        return []
    try:
        with tx.conn.begin_nested():
            tx.conn.execute(delete(packages).where(packages.c.id.in_([p.id for p in gone])))
    except IntegrityError:
        # Something came to refer to one of them in a concurrent transaction (the
        # foreign keys said so): keep them all; the next pass looks again.
        return []
    return gone


def _jobs_existing(tx: Tx, ids: list[int]) -> set[int]:
    if not ids:
        return set()
    return {r[0] for r in tx.conn.execute(select(jobs.c.id).where(jobs.c.id.in_(ids)))}


def _packages_existing(tx: Tx, shas: list[str]) -> set[str]:
    if not shas:
        return set()
    rows = tx.conn.execute(select(packages.c.sha256).where(packages.c.sha256.in_(shas)))
    return {r[0] for r in rows}
