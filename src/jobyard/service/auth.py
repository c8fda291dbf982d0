"""Tokens: minted at first start, stored hashed, checked on every API call."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path

from jobyard.core.errors import Unauthorized
from jobyard.service.context import Context, Principal
from jobyard.settings import Settings

TOKEN_PREFIX = "jy_"
#: A verified token is trusted this long without asking the database again; a token
#: revoked on another server stops working at most this much later.
TOKEN_CACHE_SECONDS = 5.0
_CACHE_MAX = 10_000
_CACHE: dict[str, tuple[Principal, float]] = {}


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings, so a plain SHA-256 is a safe, fast verifier."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh bearer token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def admin_token_path(settings: Settings) -> Path:
    """Where the first admin token is written for the quick start (mode 0600)."""
    return settings.home / "admin.token"


async def ensure_admin_token(ctx: Context) -> str | None:
    """On first start mint the admin token, write it (0600) and return it; else None."""
    if await ctx.store.tokens_count() > 0:
        return None
    token = new_token()
    path = admin_token_path(ctx.settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.chmod(path, 0o600)
    await ctx.store.token_insert(name="admin", token_hash=hash_token(token), role="admin")
    return token


async def authenticate(ctx: Context, authorization: str | None) -> Principal:
    """Resolve an ``Authorization: Bearer ...`` header to a principal, or raise 401."""
    if not authorization:
        raise Unauthorized("missing Authorization header: send 'Authorization: Bearer TOKEN'")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("malformed Authorization header: expected 'Bearer TOKEN'")
    digest = hash_token(token)
    now = time.monotonic()
    cached = _CACHE.get(digest)
    if cached is not None and cached[1] > now:
        return cached[0]
    found = await ctx.store.token_lookup(digest)
    if found is None:
        _CACHE.pop(digest, None)
        raise Unauthorized("invalid or revoked token")
    principal = Principal(name=found.name, role=found.role)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[digest] = (principal, now + TOKEN_CACHE_SECONDS)
    return principal


def forget_cached_tokens() -> None:
    """Drop cached verifications (call after revoking a token)."""
    _CACHE.clear()
