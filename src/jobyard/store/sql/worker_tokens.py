"""Worker tokens: stored by hash in ``worker_tokens``, looked up by hash."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from jobyard.core.errors import Conflict
from jobyard.core.tokens import WorkerToken
from jobyard.store.schema import worker_tokens
from jobyard.store.sql.base import SqlBase, Tx

#: In :class:`WorkerToken` field order.
_COLUMNS = (
    worker_tokens.c.id,
    worker_tokens.c.name,
    worker_tokens.c.pool,
    worker_tokens.c.created_at,
    worker_tokens.c.created_by,
    worker_tokens.c.revoked,
    worker_tokens.c.last_used_at,
)


def _of(row: Any) -> WorkerToken:
    return WorkerToken(*row)


class WorkerTokensMixin(SqlBase):
    """The credentials of remote workers."""

    async def worker_token_insert(
        self, *, name: str, token_hash: str, pool: str | None, created_by: str
    ) -> WorkerToken:
        """Store a worker token by its hash; ``Conflict`` if that hash is stored already."""
        return await self._write(_insert, name, token_hash, pool, created_by)

    async def worker_tokens_list(self) -> list[WorkerToken]:
        """Every worker token, revoked ones included, by id."""
        return await self._read(_list)

    async def worker_token_revoke(self, token_id: int) -> WorkerToken | None:
        """Revoke a worker token (idempotent); None when there is no such token."""
        return await self._write(_revoke, token_id)

    async def worker_token_lookup(self, token_hash: str) -> WorkerToken | None:
        """The non-revoked worker token with this hash, or None."""
        return await self._read(_lookup, token_hash)

    async def worker_token_touch(self, token_id: int, at: datetime) -> None:
        """Record that a worker token was used at ``at``."""
        await self._write(_touch, token_id, at)


# -- transaction bodies ------------------------------------------------------------------


def _insert(tx: Tx, name: str, token_hash: str, pool: str | None, created_by: str) -> WorkerToken:
    stmt = (
        worker_tokens.insert()
        .values(
            name=name,
            token_hash=token_hash,
            pool=pool,
            created_by=created_by,
            created_at=tx.now,
            revoked=False,
        )
        .returning(*_COLUMNS)
    )
    try:
        return _of(tx.conn.execute(stmt).one())
    except IntegrityError as exc:
        raise Conflict("a worker token with this hash already exists") from exc


def _list(tx: Tx) -> list[WorkerToken]:
    return [_of(row) for row in tx.conn.execute(select(*_COLUMNS).order_by(worker_tokens.c.id))]


def _revoke(tx: Tx, token_id: int) -> WorkerToken | None:
    row = tx.conn.execute(
        worker_tokens.update()
        .where(worker_tokens.c.id == token_id)
        .values(revoked=True)
        .returning(*_COLUMNS)
    ).first()
    return None if row is None else _of(row)


def _lookup(tx: Tx, token_hash: str) -> WorkerToken | None:
    row = tx.conn.execute(
        select(*_COLUMNS).where(
            worker_tokens.c.token_hash == token_hash, worker_tokens.c.revoked.is_(False)
        )
    ).first()
    return None if row is None else _of(row)


def _touch(tx: Tx, token_id: int, at: datetime) -> None:
    tx.conn.execute(
        worker_tokens.update().where(worker_tokens.c.id == token_id).values(last_used_at=at)
    )
