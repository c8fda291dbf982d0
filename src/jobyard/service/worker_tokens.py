"""Worker tokens: created and revoked by admins, they open the worker routes only.

A worker token (``jyw_...``) lives in its own table: the lookup that authenticates API
calls never finds it, so on any other route it is just an unknown token (401). On the
worker routes only a worker token is accepted (see :func:`authenticate_worker`).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from jobyard.core.errors import Forbidden, NotFound, Unauthorized
from jobyard.core.timeutil import utcnow
from jobyard.core.tokens import WORKER_TOKEN_PREFIX, WorkerToken, hash_token
from jobyard.core.validation import check_name
from jobyard.service import auditlog
from jobyard.service.auth import LAST_USE_PRECISION_SECONDS, TOKEN_CACHE_SECONDS
from jobyard.service.context import Context, Principal

log = logging.getLogger("jobyard.auth")

#: Path prefix of the routes a worker token opens (and the only ones).
WORKER_PATH_PREFIX = "/api/v1/worker/"
#: ``Principal.token_kind`` of a caller authenticated by a worker token.
WORKER_TOKEN_KIND = "worker"


@dataclass(frozen=True, slots=True)
class CreatedWorkerToken:
    """A new worker token and its value (shown this once, never stored)."""

    token: WorkerToken
    value: str


def _require_admin(principal: Principal) -> None:
    if principal.is_job or not principal.is_admin:
        raise Forbidden(
            "worker tokens are managed by admins only: use an admin's own token",
            {"required_role": "admin"},
        )


async def create_worker_token(
    ctx: Context, principal: Principal, *, name: str, pool: str | None
) -> CreatedWorkerToken:
    """Mint a worker token (admins only); ``pool`` restricts it to that one pool."""
    _require_admin(principal)
    check_name(name, "worker token name")
    if pool is not None:
        check_name(pool, "pool")
    value = WORKER_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = await ctx.store.worker_token_insert(
        name=name, token_hash=hash_token(value), pool=pool, created_by=principal.name
    )
    await auditlog.record(
        ctx, principal, "worker_token.create", "worker_token", token.id, {"pool": pool}
    )
    return CreatedWorkerToken(token=token, value=value)


async def list_worker_tokens(ctx: Context, principal: Principal) -> list[WorkerToken]:
    """Every worker token, revoked ones included (admins only; never their values)."""
    _require_admin(principal)
    return await ctx.store.worker_tokens_list()


async def revoke_worker_token(ctx: Context, principal: Principal, token_id: int) -> WorkerToken:
    """Revoke a worker token (admins only); workers using it are refused within seconds
    (verified tokens are trusted for :data:`TOKEN_CACHE_SECONDS` per server)."""
    _require_admin(principal)
    token = await ctx.store.worker_token_revoke(token_id)
    if token is None:
        raise NotFound(f"worker token {token_id} not found")
    await auditlog.record(ctx, principal, "worker_token.revoke", "worker_token", token_id)
    return token


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    return value


def is_worker_bearer(authorization: str | None) -> bool:
    """Whether a header carries a worker token (by its prefix; not yet verified)."""
    value = _bearer(authorization)
    return value is not None and value.startswith(WORKER_TOKEN_PREFIX)


async def authenticate_worker(ctx: Context, authorization: str | None) -> WorkerToken:
    """The worker token of an ``Authorization`` header, or 401.

    Verified tokens are trusted for :data:`TOKEN_CACHE_SECONDS` without asking the
    database again (a revocation on another server takes effect at most that later).
    """
    value = _bearer(authorization)
    if value is None or not value.startswith(WORKER_TOKEN_PREFIX):
        raise Unauthorized("the worker routes need 'Authorization: Bearer <worker token>'")
    digest = hash_token(value)
    cached = ctx.worker_tokens.get(digest)
    if cached is not None:
        return cached
    token = await ctx.store.worker_token_lookup(digest)
    if token is None:
        raise Unauthorized("invalid worker token: unknown or revoked")
    ctx.worker_tokens.put(digest, token, TOKEN_CACHE_SECONDS)
    now = utcnow()
    last = token.last_used_at
    if last is None or (now - last).total_seconds() >= LAST_USE_PRECISION_SECONDS:
        try:
            await ctx.store.worker_token_touch(token.id, now)
        except Exception:  # the call is authenticated: say so and go on
            log.warning("could not record the use of worker token %s", token.id, exc_info=True)
    return token


def worker_principal(token: WorkerToken) -> Principal:
    """The caller a worker token stands for: it may call the worker routes only."""
    return Principal(name=f"worker-token:{token.name}", role="worker", token_kind=WORKER_TOKEN_KIND)


def check_pool(token: WorkerToken, pool: str) -> None:
    """403 when the token is restricted to another pool than ``pool``."""
    if token.pool is not None and token.pool != pool:
        raise Forbidden(
            f"this worker token serves pool {token.pool!r} only, not {pool!r}: start the "
            "worker with --pool " + token.pool + " or use a token for that pool",
            {"token_pool": token.pool},
        )


def refuse_non_worker(principal: Principal) -> None:
    """403 on a worker route for a caller authenticated by any other kind of token."""
    if principal.token_kind != WORKER_TOKEN_KIND:
        raise Forbidden(
            "the worker routes need a worker token (jyw_...): an admin creates one with "
            "'jobyard workers token create NAME'",
            {"required_token": "worker"},
        )
