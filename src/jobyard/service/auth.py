"""Tokens: stored hashed, checked on every API call; the first admin token at first start."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from jobyard.core.errors import Unauthorized
from jobyard.core.jobs import TERMINAL, JobStatus
from jobyard.core.models import ApiToken
from jobyard.core.timeutil import utcnow
from jobyard.core.tokens import TOKEN_PREFIX, hash_token
from jobyard.core.users import LISTED_KINDS, TokenIdentity, User
from jobyard.service.context import Context, Principal
from jobyard.settings import Settings

#: A verified token is trusted this long without asking the database again; a token
#: revoked on another server stops working at most this much later.
TOKEN_CACHE_SECONDS = 5.0
#: The last use of a personal or admin token is written again only when the stored one
#: is older than this.
LAST_USE_PRECISION_SECONDS = 60.0
log = logging.getLogger("jobyard.auth")


def new_token() -> str:
    """A fresh bearer token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def admin_token_path(settings: Settings) -> Path:
    """Where the first admin token is written for the quick start (mode 0600)."""
    return settings.home / "admin.token"


async def ensure_admin_token(ctx: Context) -> str | None:
    """First start: user ``admin`` and their token in ``admin.token`` (0600), returned.

    Later starts return None; they still make sure the ``admin`` user exists and owns
    the bootstrap token of a database created before users existed.
    """
    if await ctx.store.tokens_count() > 0:
        await ctx.store.users_bootstrap(None)
        return None
    token = new_token()
    path = admin_token_path(ctx.settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.chmod(path, 0o600)
    await ctx.store.users_bootstrap(hash_token(token))
    return token


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("missing Authorization header: send 'Authorization: Bearer TOKEN'")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("malformed Authorization header: expected 'Bearer TOKEN'")
    return token


async def authenticate(ctx: Context, authorization: str | None) -> Principal:
    """Resolve an ``Authorization: Bearer ...`` header to a principal, or raise 401.

    Refused, each with its own message: unknown, revoked and expired tokens, refresh
    tokens (only ``/api/v1/token/refresh`` takes them), tokens of deactivated users,
    and session tokens of jobs that have ended.
    """
    digest = hash_token(_bearer(authorization))
    cached = ctx.tokens.get(digest)
    if cached is not None:
        return cached
    found = await ctx.store.token_identity(digest)
    principal, ttl = principal_of(found)
    if ttl > 0:
        ctx.tokens.put(digest, principal, ttl)
    if found is not None:
        await _note_use(ctx, found.token)
    return principal


async def _note_use(ctx: Context, token: ApiToken) -> None:
    """Record when a personal or admin token was last used, at most once per
    :data:`LAST_USE_PRECISION_SECONDS` per token (only after a verification that was not
    served from the cache, so a busy token costs one write a minute, not one a call).

    Login and job tokens are not tracked (they live for minutes, or for one job). A
    failed write is logged and forgotten: it never fails the call it came with.
    """
    if token.kind not in LISTED_KINDS:
        return
    now = utcnow()
    last = token.last_used_at
    if last is not None and (now - last).total_seconds() < LAST_USE_PRECISION_SECONDS:
        return
    try:
        await ctx.store.token_touch(token.id, now)
    except Exception:  # the call itself is authenticated: say so and go on
        log.warning("could not record the use of token %s", token.id, exc_info=True)


def principal_of(found: TokenIdentity | None) -> tuple[Principal, float]:
    """The principal of a stored token and how long it may be cached, or 401."""
    if found is None:
        raise Unauthorized("invalid token: no such token")
    token, user = found.token, found.user
    if token.kind == "session":
        ended = found.job_status is None or JobStatus(found.job_status) in TERMINAL
        if ended or token.revoked:
            raise Unauthorized(f"session of job {token.job_id} ended: its SESSION_ID is void")
    if user is not None and not user.active:
        raise Unauthorized(f"user {user.name!r} is deactivated: their tokens are revoked")
    if token.revoked:
        raise Unauthorized(f"token {token.name!r} was revoked")
    ttl = TOKEN_CACHE_SECONDS
    if token.expires_at is not None:
        left = (token.expires_at - utcnow()).total_seconds()
        if left <= 0:
            raise Unauthorized(
                f"token {token.name!r} expired at {token.expires_at.isoformat()}"
                + ("; log in again or refresh it" if token.kind == "access" else "")
            )
        ttl = min(ttl, left)
    if token.kind == "refresh":
        raise Unauthorized(
            "a refresh token cannot call the API: exchange it at POST /api/v1/token/refresh"
        )
    if token.user_id is None:  # a bootstrap token from before users existed
        return Principal(name=token.name, role=token.role, token_kind=token.kind), ttl
    if user is None:
        raise Unauthorized(f"the user of token {token.name!r} no longer exists")
    if not user.active:
        raise Unauthorized(f"user {user.name!r} is deactivated")
    bounded_by: tuple[Principal, ...] = ()
    if token.kind == "session":
        ttl = 0.0  # checked on every call: the job may end at any moment, in any process
        bounded_by = tuple(definer_principal(name, u) for name, u in found.definers)
    principal = Principal(
        name=user.name,
        role=user.role,
        user_id=user.id,
        token_kind=token.kind,
        job_id=token.job_id,
        bounded_by=bounded_by,
    )
    return principal, ttl


def definer_principal(name: str, user: User | None) -> Principal:
    """A definer of a job as a principal bounding its SESSION_ID.

    Their rights as they are now; a deactivated or deleted definer grants nothing.
    """
    if user is None or not user.active:
        return Principal(name=name, role="user", token_kind="definer", active=False)
    return Principal(name=user.name, role=user.role, user_id=user.id, token_kind="definer")


def forget_cached_tokens(ctx: Context) -> None:
    """Drop this server's cached verifications (after revoking a token or deactivating a
    user); other servers notice within :data:`TOKEN_CACHE_SECONDS`."""
    ctx.tokens.forget()
