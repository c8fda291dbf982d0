"""API tokens: stored by hash, looked up by hash (users and logins: ``users.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from jobyard.core.errors import Conflict
from jobyard.core.models import ApiToken
from jobyard.store.schema import api_tokens
from jobyard.store.sql.base import SqlBase, Tx, token_from_row

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
    api_tokens.c.last_used_at,
)


class TokensMixin(SqlBase):
    """Bearer tokens of users, of jobs (SESSION_ID) and the bootstrap admin token."""

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

    async def token_touch(self, token_id: int, at: datetime) -> None:
        """Record that a token was used at ``at`` (a token that is gone: nothing)."""
        await self._write(_token_touch, token_id, at)

    async def tokens_count(self) -> int:
        """How many tokens exist (revoked included): zero means first start."""
        return await self._read(_tokens_count)


# -- transaction bodies ------------------------------------------------------------------


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


def _token_touch(tx: Tx, token_id: int, at: datetime) -> None:
    tx.conn.execute(api_tokens.update().where(api_tokens.c.id == token_id).values(last_used_at=at))


def _tokens_count(tx: Tx) -> int:
    return int(tx.conn.execute(select(func.count()).select_from(api_tokens)).scalar_one())
