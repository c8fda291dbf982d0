"""Jobconfigs: named definitions of what to run, with their concurrency limit."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import bindparam, case, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from jobyard.core.errors import Conflict, InvalidInput, NotFound
from jobyard.core.jobs import TERMINAL, JobStatus
from jobyard.core.labels import stored_labels, validate_labels
from jobyard.core.models import DEFINITION_FIELDS, JobConfig, JobConfigSpec, Page
from jobyard.core.retention import JobconfigRemoved, JobsPurged
from jobyard.core.retries import validate_policy
from jobyard.store.schema import jobconfigs, jobs
from jobyard.store.sql.base import (
    SqlBase,
    Tx,
    check_limit,
    decode_cursor,
    encode_cursor,
    jobconfig_from_row,
    status_in,
)
from jobyard.store.sql.macros import delete_macros_of
from jobyard.store.sql.prepared import Prepared
from jobyard.store.sql.retention import delete_job_rows
from jobyard.store.sql.schedules import delete_schedules_of, lock_schedules_of
from jobyard.store.sql.templates import check_package, check_template
from jobyard.store.sql.transitions import lock_jobconfigs, promote

_SPEC_FIELDS = frozenset(f.name for f in dataclasses.fields(JobConfigSpec))
_NOT_ENDED = frozenset(JobStatus) - TERMINAL


class JobconfigsMixin(SqlBase):
    """CRUD of jobconfigs; a limit change promotes in the same transaction."""

    async def jobconfig_insert(self, spec: JobConfigSpec, *, owner: str | None = None) -> JobConfig:
        """Create; ``Conflict`` if the name is taken, ``NotFound`` for an unknown package.

        The owner (creator) is its first definer (``definition_changed_by``).
        """
        values = _validate({f: getattr(spec, f) for f in _SPEC_FIELDS})
        values["owner"] = owner
        values["definition_changed_by"] = owner
        return await self._write(_jobconfig_insert, values)

    async def jobconfig_get(self, jobconfig_id: int) -> JobConfig:
        """Return a jobconfig or raise ``NotFound``."""
        return await self._read(read_jobconfig, jobconfig_id)

    async def jobconfig_get_by_name(self, name: str) -> JobConfig:
        """Return a jobconfig by its unique name or raise ``NotFound``."""
        return await self._read(_jobconfig_get_by_name, name)

    async def jobconfig_update(
        self, jobconfig_id: int, changes: dict[str, Any], *, changed_by: str | None = None
    ) -> JobConfig:
        """Apply field changes and bump updated_at; a new ``max_concurrent`` promotes.

        When a field of ``DEFINITION_FIELDS`` really changes (compared in the same
        transaction), ``changed_by`` becomes the definer and ``definition_changed_at``
        the time. Unknown keys are ``InvalidInput``; a taken name is ``Conflict``.
        """
        unknown = sorted(set(changes) - _SPEC_FIELDS)
        if unknown:
            raise InvalidInput(
                f"unknown jobconfig fields: {', '.join(unknown)}", {"fields": unknown}
            )
        return await self._write(
            _jobconfig_update, jobconfig_id, _validate(dict(changes)), changed_by
        )

    async def jobconfig_mark_defined(self, jobconfig_id: int, *, changed_by: str | None) -> None:
        """Record ``changed_by`` as the jobconfig's definer now (its schedules' macros
        changed: they decide what its scheduled jobs run); ``NotFound``."""
        await self._write(_mark_defined, jobconfig_id, changed_by)

    async def jobconfig_delete(self, jobconfig_id: int) -> JobconfigRemoved:
        """Delete a jobconfig with its ended jobs, their events, file records and tokens.

        ``Conflict`` while any of its jobs has not ended (the caller cancels or waits).
        Returns the blobs to delete next and the packages it and its jobs used.
        """
        return await self._write(_jobconfig_delete, jobconfig_id)

    async def jobconfigs_list(self, *, cursor: str | None, limit: int) -> Page[JobConfig]:
        """Ordered by id ascending, cursor-paginated."""
        after = decode_cursor(cursor)
        check_limit(limit)
        return await self._read(_jobconfigs_list, after, limit)


def _validate(values: dict[str, Any]) -> dict[str, Any]:
    """Check and copy writable fields (mutable containers are copied, not shared)."""
    if "name" in values:
        name = values["name"]
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput("a jobconfig needs a non-empty name")
    for key in ("max_concurrent", "timeout"):
        if key in values and (not isinstance(values[key], int) or values[key] < 0):
            raise InvalidInput(f"{key} must be an integer >= 0", {key: values[key]})
    for key, kind in (("retention_max_jobs", int), ("retention_max_age_days", (int, float))):
        value = values.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, kind) or value < 0
        ):
            raise InvalidInput(f"{key} must be a number >= 0 or null", {key: value})
    validate_policy(values)
    if "labels" in values:
        values["labels"] = stored_labels(validate_labels(values["labels"]))
    if values.get("command") is not None:
        values["command"] = list(values["command"])
    if "macros" in values:
        values["macros"] = dict(values["macros"] or {})
    if "success_exit_codes" in values:
        values["success_exit_codes"] = list(values["success_exit_codes"])
    if "parameters" in values:
        values["parameters"] = sorted(set(values["parameters"] or []))
    return values


def _name_taken(name: str) -> Conflict:
    return Conflict(f"a jobconfig named {name!r} already exists", {"name": name})


def _jobconfig_insert(tx: Tx, values: dict[str, Any]) -> JobConfig:
    check_package(tx, values.get("package_id"))
    check_template(tx, values.get("template_id"))
    if values.get("retries"):
        values["retry_since"] = tx.now  # only jobs ended from now on are retried
    stmt = (
        insert(jobconfigs)
        .values(**values, created_at=tx.now, updated_at=tx.now, definition_changed_at=tx.now)
        .returning(*jobconfigs.c)
    )
    try:
        row = tx.conn.execute(stmt).one()
    except IntegrityError as exc:
        raise _name_taken(values["name"]) from exc
    return jobconfig_from_row(row)


_JOBCONFIG_BY_ID = Prepared(select(jobconfigs).where(jobconfigs.c.id == bindparam("jc_id")))
_JOBCONFIG_BY_NAME = select(jobconfigs).where(jobconfigs.c.name == bindparam("jc_name"))


def read_jobconfig(tx: Tx, jobconfig_id: int) -> JobConfig:
    """The jobconfig, or ``NotFound`` (a prebuilt statement: every jobconfig run reads it)."""
    row = _JOBCONFIG_BY_ID.first(tx.conn, {"jc_id": jobconfig_id})
    if row is None:
        raise NotFound(f"jobconfig {jobconfig_id} does not exist", {"jobconfig_id": jobconfig_id})
    return jobconfig_from_row(row)


def _jobconfig_get_by_name(tx: Tx, name: str) -> JobConfig:
    row = tx.conn.execute(_JOBCONFIG_BY_NAME, {"jc_name": name}).first()
    if row is None:
        raise NotFound(f"jobconfig {name!r} does not exist", {"name": name})
    return jobconfig_from_row(row)


def defines(current: Any, changes: dict[str, Any], fields: tuple[str, ...]) -> bool:
    """Whether ``changes`` really change one of ``fields`` of ``current``."""
    return any(k in changes and changes[k] != getattr(current, k) for k in fields)


def _jobconfig_update(
    tx: Tx, jobconfig_id: int, changes: dict[str, Any], changed_by: str | None
) -> JobConfig:
    if "package_id" in changes:
        check_package(tx, changes["package_id"])
    if "template_id" in changes:
        check_template(tx, changes["template_id"])
    values = dict(changes)
    if any(k in changes for k in DEFINITION_FIELDS):
        if tx.pg:
            lock_jobconfigs(tx, [jobconfig_id])  # compare with what nobody else changes now
        current = read_jobconfig(tx, jobconfig_id)
        if defines(current, changes, DEFINITION_FIELDS):
            values.update(definition_changed_by=changed_by, definition_changed_at=tx.now)
    if "retries" in changes:
        # Turning retries on starts the clock of what is retried (jobs that ended
        # before are left alone); changing a live policy keeps it; turning it off clears it.
        values["retry_since"] = (
            case((jobconfigs.c.retries == 0, tx.now), else_=jobconfigs.c.retry_since)
            if changes["retries"]
            else None
        )
    stmt = (
        update(jobconfigs)
        .where(jobconfigs.c.id == jobconfig_id)
        .values(**values, updated_at=tx.now)
        .returning(*jobconfigs.c)
    )
    try:
        row = tx.conn.execute(stmt).first()
    except IntegrityError as exc:
        raise _name_taken(changes.get("name", "")) from exc
    if row is None:
        raise NotFound(f"jobconfig {jobconfig_id} does not exist", {"jobconfig_id": jobconfig_id})
    if "max_concurrent" in changes:
        # The UPDATE above holds the jobconfig row lock: promotion is serialised.
        promote(tx, jobconfig_id)
    return jobconfig_from_row(row)


def mark_jobconfig_defined(tx: Tx, jobconfig_id: int, changed_by: str | None) -> bool:
    """Set the jobconfig's definer to ``changed_by`` now; False if it does not exist."""
    done = tx.conn.execute(
        update(jobconfigs)
        .where(jobconfigs.c.id == jobconfig_id)
        .values(definition_changed_by=changed_by, definition_changed_at=tx.now)
    ).rowcount
    return bool(done)


def _mark_defined(tx: Tx, jobconfig_id: int, changed_by: str | None) -> None:
    if not mark_jobconfig_defined(tx, jobconfig_id, changed_by):
        raise NotFound(f"jobconfig {jobconfig_id} does not exist", {"jobconfig_id": jobconfig_id})


def _jobconfig_delete(tx: Tx, jobconfig_id: int) -> JobconfigRemoved:
    # Schedules first: firing locks schedules, then jobconfigs (one lock order).
    lock_schedules_of(tx, jobconfig_id)
    if tx.pg:
        exists = bool(lock_jobconfigs(tx, [jobconfig_id]))
    else:
        exists = (
            tx.conn.execute(select(jobconfigs.c.id).where(jobconfigs.c.id == jobconfig_id)).first()
            is not None
        )
    if not exists:
        raise NotFound(f"jobconfig {jobconfig_id} does not exist", {"jobconfig_id": jobconfig_id})
    pending = tx.conn.execute(
        select(jobs.c.id, jobs.c.status)
        .where(jobs.c.jobconfig_id == jobconfig_id, status_in(_NOT_ENDED))
        .limit(1)
    ).first()
    if pending is not None:
        raise Conflict(
            f"jobconfig {jobconfig_id} has jobs that have not ended (job {pending[0]} is "
            f"{pending[1]}); cancel them or wait",
            {"jobconfig_id": jobconfig_id, "job_id": pending[0], "status": pending[1]},
        )
    delete_schedules_of(tx, jobconfig_id)
    delete_macros_of(tx, "jobconfig", jobconfig_id)
    its_jobs = select(jobs.c.id).where(jobs.c.jobconfig_id == jobconfig_id)
    job_ids = [r[0] for r in tx.conn.execute(its_jobs.order_by(jobs.c.id))]
    used = {
        r[0]
        for r in tx.conn.execute(
            select(jobs.c.package_id)
            .where(jobs.c.jobconfig_id == jobconfig_id, jobs.c.package_id.is_not(None))
            .distinct()
        )
    }
    own = tx.conn.execute(
        select(jobconfigs.c.package_id).where(jobconfigs.c.id == jobconfig_id)
    ).scalar()
    if own is not None:
        used.add(own)
    purged = JobsPurged([], 0, 0, [], 0)
    for start in range(0, len(job_ids), 500):
        batch = delete_job_rows(tx, job_ids[start : start + 500])
        purged = JobsPurged(
            purged.job_ids + batch.job_ids,
            purged.events + batch.events,
            purged.tokens + batch.tokens,
            purged.file_keys + batch.file_keys,
            purged.file_bytes + batch.file_bytes,
        )
    tx.conn.execute(delete(jobconfigs).where(jobconfigs.c.id == jobconfig_id))
    return JobconfigRemoved(jobs=purged, package_ids=sorted(used))


def _jobconfigs_list(tx: Tx, after: int | None, limit: int) -> Page[JobConfig]:
    stmt = select(jobconfigs).order_by(jobconfigs.c.id).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(jobconfigs.c.id > after)
    items = [jobconfig_from_row(row) for row in tx.conn.execute(stmt)]
    if len(items) > limit:
        items = items[:limit]
        return Page(items, encode_cursor(items[-1].id))
    return Page(items, None)
