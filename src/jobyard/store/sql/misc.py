"""Packages, job files, API tokens, workers and leader election."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from jobyard.core.errors import Conflict, InvalidInput, NotFound
from jobyard.core.models import ApiToken, Job, JobFile, Package, Page, RunContext, WorkerInfo
from jobyard.store.schema import (
    api_tokens,
    job_files,
    jobconfigs,
    jobs,
    leaders,
    packages,
    workers,
)
from jobyard.store.sql.base import (
    SqlBase,
    Tx,
    check_limit,
    decode_cursor,
    encode_cursor,
    job_file_from_row,
    package_from_row,
    token_from_row,
    worker_from_row,
)

_FILE_KINDS = frozenset({"payload", "output"})
#: In :class:`ApiToken` field order (``token_from_row`` maps positionally).
TOKEN_COLUMNS = (
    api_tokens.c.id,
    api_tokens.c.name,
    api_tokens.c.role,
    api_tokens.c.created_at,
    api_tokens.c.revoked,
    api_tokens.c.user_id,
    api_tokens.c.kind,
    api_tokens.c.expires_at,
    api_tokens.c.job_id,
)


def _upsert(tx: Tx, table: Table) -> Any:
    """The dialect's INSERT with ``ON CONFLICT`` support (same API on both engines)."""
    return pg_insert(table) if tx.pg else sqlite_insert(table)


class MiscMixin(SqlBase):
    """Everything that is not a job or a jobconfig."""

    # -- packages ------------------------------------------------------------------------

    async def package_insert(
        self,
        *,
        sha256: str,
        filename: str,
        size: int,
        kind: str,
        entrypoints: dict[str, dict[str, Any]],
    ) -> tuple[Package, bool]:
        """Insert a package, or return the existing one with that sha256 (one row per content)."""
        values = {
            "sha256": sha256,
            "filename": filename,
            "size": size,
            "kind": kind,
            "entrypoints": entrypoints,
        }
        return await self._write(_package_insert, values)

    async def package_get(self, package_id: int) -> Package:
        """Return a package or raise ``NotFound``."""
        return await self._read(_package_get, package_id)

    async def packages_list(self, *, cursor: str | None, limit: int) -> Page[Package]:
        """Newest first, cursor-paginated."""
        after = decode_cursor(cursor)
        check_limit(limit)
        return await self._read(_packages_list, after, limit)

    # -- job files -----------------------------------------------------------------------

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

    # -- tokens --------------------------------------------------------------------------

    async def token_insert(
        self,
        *,
        name: str,
        token_hash: str,
        role: str,
        user_id: int | None = None,
        kind: str = "admin",
        expires_at: datetime | None = None,
        job_id: int | None = None,
    ) -> ApiToken:
        """Store a token by its hash; ``Conflict`` if that hash is already stored."""
        values = {
            "name": name,
            "token_hash": token_hash,
            "role": role,
            "user_id": user_id,
            "kind": kind,
            "expires_at": expires_at,
            "job_id": job_id,
        }
        return await self._write(_token_insert, values)

    async def token_lookup(self, token_hash: str) -> ApiToken | None:
        """Find a non-revoked token by hash."""
        return await self._read(_token_lookup, token_hash)

    async def tokens_count(self) -> int:
        """How many tokens exist (revoked included): zero means first start."""
        return await self._read(_tokens_count)

    # -- workers and leadership ----------------------------------------------------------

    async def worker_upsert(self, info: WorkerInfo) -> None:
        """Register a worker or refresh its record (heartbeat, draining, ...)."""
        await self._write(_worker_upsert, info)

    async def workers_list(self) -> list[WorkerInfo]:
        """Every known worker, by id."""
        return await self._read(_workers_list)

    async def leader_try_acquire(self, *, name: str, holder: str, ttl_seconds: float) -> bool:
        """Take or keep the leadership ``name`` for ``ttl_seconds``; False if another holds it.

        One compare-and-set statement: insert, or take over when the row is ours or has
        expired. Safe with any number of replicas on both engines.
        """
        return await self._write(_leader_try_acquire, name, holder, ttl_seconds)


# -- transaction bodies ------------------------------------------------------------------


def _package_insert(tx: Tx, values: dict[str, Any]) -> tuple[Package, bool]:
    stmt = (
        _upsert(tx, packages)
        .values(**values, created_at=tx.now)
        .on_conflict_do_nothing(index_elements=[packages.c.sha256])
        .returning(*packages.c)
    )
    row = tx.conn.execute(stmt).first()
    if row is not None:
        return package_from_row(row), True
    existing = tx.conn.execute(select(packages).where(packages.c.sha256 == values["sha256"])).one()
    return package_from_row(existing), False


def _package_get(tx: Tx, package_id: int) -> Package:
    row = tx.conn.execute(select(packages).where(packages.c.id == package_id)).first()
    if row is None:
        raise NotFound(f"package {package_id} does not exist", {"package_id": package_id})
    return package_from_row(row)


def _packages_list(tx: Tx, after: int | None, limit: int) -> Page[Package]:
    stmt = select(packages).order_by(packages.c.id.desc()).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(packages.c.id < after)
    items = [package_from_row(row) for row in tx.conn.execute(stmt)]
    if len(items) > limit:
        items = items[:limit]
        return Page(items, encode_cursor(items[-1].id))
    return Page(items, None)


def _job_file_add(tx: Tx, file: JobFile) -> None:
    if tx.conn.execute(select(jobs.c.id).where(jobs.c.id == file.job_id)).first() is None:
        raise NotFound(f"job {file.job_id} does not exist", {"job_id": file.job_id})
    stmt = _upsert(tx, job_files).values(
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


def _token_insert(tx: Tx, values: dict[str, Any]) -> ApiToken:
    stmt = (
        api_tokens.insert()
        .values(**values, created_at=tx.now, revoked=False)
        .returning(*TOKEN_COLUMNS)
    )
    try:
        row = tx.conn.execute(stmt).one()
    except IntegrityError as exc:
        raise Conflict("a token with this hash already exists") from exc
    return token_from_row(row)


def _token_lookup(tx: Tx, token_hash: str) -> ApiToken | None:
    row = tx.conn.execute(
        select(*TOKEN_COLUMNS).where(
            api_tokens.c.token_hash == token_hash, api_tokens.c.revoked.is_(False)
        )
    ).first()
    return None if row is None else token_from_row(row)


def _tokens_count(tx: Tx) -> int:
    return int(tx.conn.execute(select(func.count()).select_from(api_tokens)).scalar_one())


def _worker_upsert(tx: Tx, info: WorkerInfo) -> None:
    values = {
        "id": info.id,
        "name": info.name,
        "pool": info.pool,
        "host": info.host,
        "pid": info.pid,
        "slots": info.slots,
        "kind": info.kind,
        "started_at": info.started_at,
        "heartbeat_at": info.heartbeat_at,
        "draining": info.draining,
        "home": info.home,
    }
    stmt = _upsert(tx, workers).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[workers.c.id],
        set_={k: getattr(stmt.excluded, k) for k in values if k != "id"},
    )
    tx.conn.execute(stmt)


def _workers_list(tx: Tx) -> list[WorkerInfo]:
    return [worker_from_row(row) for row in tx.conn.execute(select(workers).order_by(workers.c.id))]


def _leader_try_acquire(tx: Tx, name: str, holder: str, ttl_seconds: float) -> bool:
    stmt = _upsert(tx, leaders).values(
        name=name, holder=holder, expires_at=tx.now + timedelta(seconds=ttl_seconds)
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[leaders.c.name],
        set_={"holder": stmt.excluded.holder, "expires_at": stmt.excluded.expires_at},
        where=or_(leaders.c.holder == stmt.excluded.holder, leaders.c.expires_at < tx.now),
    ).returning(leaders.c.holder)
    return tx.conn.execute(stmt).first() is not None
