"""A job's files (payload in, output out) and the run context a worker reads with them."""

from __future__ import annotations

from sqlalchemy import bindparam, select

from jobyard.core.errors import InvalidInput, NotFound
from jobyard.core.models import Job, JobFile, RunContext
from jobyard.store.schema import job_files, jobconfigs, jobs, packages
from jobyard.store.sql.base import SqlBase, Tx, job_file_from_row, package_from_row, upsert

_FILE_KINDS = frozenset({"payload", "output"})


class JobFilesMixin(SqlBase):
    """Payload and output files of jobs."""

    async def job_file_add(self, file: JobFile) -> None:
        """Record a payload or output file (replacing one of the same kind and name)."""
        if file.kind not in _FILE_KINDS:
            raise InvalidInput(f"file kind must be payload or output, not {file.kind!r}")
        await self._write(_job_file_add, file)

    async def job_run_context(self, job: Job) -> RunContext:
        """Package, current jobconfig macros and payload files of a job, in one read."""
        return await self._read(_job_run_context, job.package_id, job.jobconfig_id, job.id)

    async def job_files_list(self, job_id: int, kind: str) -> list[JobFile]:
        """Files of a job of one kind, by name; ``NotFound`` for an unknown job."""
        return await self._read(_job_files_list, job_id, kind)


# -- transaction bodies ------------------------------------------------------------------


def _job_file_add(tx: Tx, file: JobFile) -> None:
    if tx.conn.execute(select(jobs.c.id).where(jobs.c.id == file.job_id)).first() is None:
        raise NotFound(f"job {file.job_id} does not exist", {"job_id": file.job_id})
    stmt = upsert(tx, job_files).values(
        job_id=file.job_id,
        kind=file.kind,
        name=file.name,
        size=file.size,
        blob_key=file.blob_key,
        created_at=file.created_at,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[job_files.c.job_id, job_files.c.kind, job_files.c.name],
        set_={
            "size": stmt.excluded.size,
            "blob_key": stmt.excluded.blob_key,
            "created_at": stmt.excluded.created_at,
        },
    )
    tx.conn.execute(stmt)


_PACKAGE_BY_ID = select(packages).where(packages.c.id == bindparam("package_id"))
_JOBCONFIG_MACROS = select(jobconfigs.c.macros).where(jobconfigs.c.id == bindparam("jc_id"))
_PAYLOAD_OF_JOB = (
    select(job_files)
    .where(job_files.c.job_id == bindparam("job_id"), job_files.c.kind == "payload")
    .order_by(job_files.c.name)
)


def _job_run_context(
    tx: Tx, package_id: int | None, jobconfig_id: int | None, job_id: int
) -> RunContext:
    package = None
    if package_id is not None:
        row = tx.conn.execute(_PACKAGE_BY_ID, {"package_id": package_id}).first()
        package = package_from_row(row) if row is not None else None
    macros = None
    if jobconfig_id is not None:
        macros = tx.conn.execute(_JOBCONFIG_MACROS, {"jc_id": jobconfig_id}).scalar()
    payload = [job_file_from_row(r) for r in tx.conn.execute(_PAYLOAD_OF_JOB, {"job_id": job_id})]
    return RunContext(package=package, jobconfig_macros=macros, payload=payload)


def _job_files_list(tx: Tx, job_id: int, kind: str) -> list[JobFile]:
    rows = tx.conn.execute(
        select(job_files)
        .where(job_files.c.job_id == job_id, job_files.c.kind == kind)
        .order_by(job_files.c.name)
    ).all()
    if not rows and tx.conn.execute(select(jobs.c.id).where(jobs.c.id == job_id)).first() is None:
        raise NotFound(f"job {job_id} does not exist", {"job_id": job_id})
    return [job_file_from_row(row) for row in rows]
