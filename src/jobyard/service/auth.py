"""Tokens: minted at first start, stored hashed, checked on every API call."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from jobyard.core.errors import Unauthorized
from jobyard.service.context import Context, Principal

TOKEN_PREFIX = "jy_"


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings, so a plain SHA-256 is a safe, fast verifier."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh bearer token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def admin_token_path(ctx: Context) -> Path:
    """Where the first admin token is written for the quick start (mode 0600)."""
    return ctx.settings.home / "admin.token"


async def ensure_admin_token(ctx: Context) -> str | None:
    """On first start mint the admin token, write it (0600) and return it; else None."""
    if await ctx.store.tokens_count() > 0:
        return None
    token = new_token()
    path = admin_token_path(ctx)
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
    found = await ctx.store.token_lookup(hash_token(token))
    if found is None:
        raise Unauthorized("invalid or revoked token")
    return Principal(name=found.name, role=found.role)
