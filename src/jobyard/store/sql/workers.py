"""Workers' records (heartbeats) and leader election among replicas."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import case, delete, false, or_, select, update

from jobyard.core.errors import NotFound
from jobyard.core.models import WorkerInfo
from jobyard.store.schema import leaders, workers
from jobyard.store.sql.base import SqlBase, Tx, upsert, worker_from_row


class WorkersMixin(SqlBase):
    """Who runs jobs, and which replica leads a background task."""

    async def worker_upsert(self, info: WorkerInfo) -> bool:
        """Register a worker or refresh its record (heartbeat, draining, ...); True when
        an admin asked it to drain (``RETURNING``: no second statement)."""
        return await self._write(_worker_upsert, info)

    async def worker_request_drain(self, worker_id: str) -> WorkerInfo:
        """Set ``drain_requested``; ``NotFound`` when no worker has that id."""
        return await self._write(_worker_request_drain, worker_id)

    async def workers_list(self) -> list[WorkerInfo]:
        """Every known worker, by id."""
        return await self._read(_workers_list)

    async def leader_try_acquire(self, *, name: str, holder: str, ttl_seconds: float) -> bool:
        """Take or keep the leadership ``name`` for ``ttl_seconds``; False if another holds it.

        One compare-and-set statement: insert, or take over when the row is ours or has
        expired. Safe with any number of replicas on both engines.
        """
        return await self._write(_leader_try_acquire, name, holder, ttl_seconds)

    async def leaders_release(self, *, holder: str) -> int:
        """Give up every leadership ``holder`` holds, so another server takes over at its
        next attempt instead of after the TTL (a stopping server, a rolling restart)."""
        return await self._write(_leaders_release, holder)


# -- transaction bodies ------------------------------------------------------------------


def _worker_upsert(tx: Tx, info: WorkerInfo) -> bool:
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
        "version": info.version,
        "labels": dict(info.labels),
    }
    stmt = upsert(tx, workers).values(**values)
    updates = {k: getattr(stmt.excluded, k) for k in values if k != "id"}
    # A drain request holds for the run it was made for: a worker registering again
    # under the same id (a new started_at: restarted) starts without it.
    updates["drain_requested"] = case(
        (workers.c.started_at == stmt.excluded.started_at, workers.c.drain_requested),
        else_=false(),
    )
    stmt = stmt.on_conflict_do_update(index_elements=[workers.c.id], set_=updates).returning(
        workers.c.drain_requested
    )
    return bool(tx.conn.execute(stmt).scalar_one())


def _worker_request_drain(tx: Tx, worker_id: str) -> WorkerInfo:
    stmt = (
        update(workers)
        .where(workers.c.id == worker_id)
        .values(drain_requested=True)
        .returning(*workers.c)
    )
    row = tx.conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"worker {worker_id} does not exist", {"worker_id": worker_id})
    return worker_from_row(row)


def _workers_list(tx: Tx) -> list[WorkerInfo]:
    return [worker_from_row(row) for row in tx.conn.execute(select(workers).order_by(workers.c.id))]


def _leader_try_acquire(tx: Tx, name: str, holder: str, ttl_seconds: float) -> bool:
    stmt = upsert(tx, leaders).values(
        name=name, holder=holder, expires_at=tx.now + timedelta(seconds=ttl_seconds)
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[leaders.c.name],
        set_={"holder": stmt.excluded.holder, "expires_at": stmt.excluded.expires_at},
        where=or_(leaders.c.holder == stmt.excluded.holder, leaders.c.expires_at < tx.now),
    ).returning(leaders.c.holder)
    return tx.conn.execute(stmt).first() is not None


def _leaders_release(tx: Tx, holder: str) -> int:
    result = tx.conn.execute(delete(leaders).where(leaders.c.holder == holder))
    return int(result.rowcount or 0)
