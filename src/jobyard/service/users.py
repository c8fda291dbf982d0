"""Users, login (with throttling), token refresh and personal API tokens.

Passwords are hashed with argon2id (OWASP parameters, see :func:`_hasher`); hashing and verifying
run in a thread so a login never stalls the event loop. Tokens are stored as SHA-256
digests (see :mod:`jobyard.service.auth`); a token's value is shown once, when minted.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from jobyard.core.cursors import decode_cursor
from jobyard.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    JobyardError,
    NotFound,
    Unauthorized,
)
from jobyard.core.models import ApiToken, Page
from jobyard.core.timeutil import utcnow
from jobyard.core.tokens import hash_token
from jobyard.core.users import LISTED_KINDS, TOKEN_KINDS, Deactivation, User
from jobyard.core.validation import NAME_RE, check_name
from jobyard.service import access, auditlog
from jobyard.service.auth import forget_cached_tokens, new_token
from jobyard.service.context import Context, Principal
from jobyard.settings import Settings

#: Failed logins before backoff starts: per user name, and per client address (higher:
#: many people may share one address).
FAILURES_PER_NAME = 5
FAILURES_PER_ADDRESS = 20
#: Backoff after the threshold: 1 s, then doubling, at most 15 minutes.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 900.0
#: A failure count whose last failure is older than this starts over.
FAILURES_FORGOTTEN_AFTER = 24 * 3600.0
PASSWORD_MIN = 8
PASSWORD_MAX = 1024
WRONG_CREDENTIALS = "wrong user name or password"


class TooManyAttempts(JobyardError):
    """Login refused without checking the password: too many recent failures (HTTP 429)."""

    code = "too_many_requests"

    def __init__(self, until: datetime) -> None:
        self.retry_after = max(1, math.ceil((until - utcnow()).total_seconds()))
        super().__init__(
            f"too many failed logins: retry after {until.isoformat(timespec='seconds')} "
            f"(in {self.retry_after} s)",
            {"retry_after": self.retry_after, "retry_at": until.isoformat()},
        )


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What a login or a refresh hands out."""

    access_token: str
    refresh_token: str
    expires_in: int  # seconds of validity of the access token
    refresh_expires_in: int


# -- passwords ---------------------------------------------------------------------------


@cache
def _hasher() -> PasswordHasher:
    # argon2id with the OWASP minimum (19 MiB, 2 passes, 1 lane): a fraction of a second
    # per login even on a small machine; hashes made with other parameters still verify.
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


@cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so both cases take as long."""
    return _hasher().hash("jobyard: no such user")


def check_password(password: str) -> None:
    """A usable password: 8 to 1024 characters."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidInput(
            f"a password needs {PASSWORD_MIN} to {PASSWORD_MAX} characters", {"field": "password"}
        )


async def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (computed in a thread)."""
    check_password(password)
    return await asyncio.to_thread(_hasher().hash, password)


def _verify(stored: str | None, password: str) -> bool:
    dummy = _dummy_hash()  # computed once, outside of any measured attempt
    try:
        return bool(_hasher().verify(stored or dummy, password)) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


# -- lifetimes ---------------------------------------------------------------------------


def lifetimes(settings: Settings) -> tuple[timedelta, timedelta]:
    """(access, refresh) token lifetimes."""
    return (
        timedelta(minutes=settings.auth.access_token_minutes),
        timedelta(days=settings.auth.refresh_token_days),
    )


# -- login -------------------------------------------------------------------------------


def throttle_keys(name: str, address: str | None) -> dict[str, int]:
    """The failure counters a login attempt touches, with their thresholds."""
    keys = {f"user:{name[:200]}": FAILURES_PER_NAME}
    if address:
        keys[f"ip:{address[:64]}"] = FAILURES_PER_ADDRESS
    return keys


async def login(ctx: Context, name: str, password: str, *, address: str | None) -> TokenPair:
    """Check a name and password; hand out an access and a refresh token.

    Unknown user, wrong password, deactivated user and user without a password all
    answer the same 401 after the same amount of work. Blocked keys answer 429 before
    any password is checked.
    """
    keys = throttle_keys(name, address)
    blocked = await ctx.store.login_blocked_until(list(keys))
    if blocked is not None:
        raise TooManyAttempts(blocked)
    user = await ctx.store.user_find(name) if NAME_RE.match(name) else None
    stored = user.password_hash if user is not None and user.active else None
    if not await asyncio.to_thread(_verify, stored, password[:PASSWORD_MAX]):
        await ctx.store.login_failure_record(
            keys,
            base_seconds=BACKOFF_BASE_SECONDS,
            max_seconds=BACKOFF_MAX_SECONDS,
            forget_after_seconds=FAILURES_FORGOTTEN_AFTER,
        )
        if user is not None:  # failures against unknown names are not worth an entry
            await auditlog.record(ctx, "anonymous", "login.failure", "user", user.id, None, address)
        raise Unauthorized(WRONG_CREDENTIALS)
    if user is None:  # cannot happen: a verified hash belongs to a user found above
        raise Unauthorized(WRONG_CREDENTIALS)
    await ctx.store.login_failures_reset(list(keys))
    return await _mint_pair(ctx, user)


async def _mint_pair(ctx: Context, user: User) -> TokenPair:
    access_life, refresh_life = lifetimes(ctx.settings)
    now = utcnow()
    access, refresh = new_token(), new_token()
    for value, kind, life in ((access, "access", access_life), (refresh, "refresh", refresh_life)):
        await ctx.store.token_insert(
            name=f"login ({kind})",
            token_hash=hash_token(value),
            role=user.role,
            user_id=user.id,
            kind=kind,
            expires_at=now + life,
        )
    return TokenPair(
        access_token=access,
        refresh_token=refresh,
        expires_in=int(access_life.total_seconds()),
        refresh_expires_in=int(refresh_life.total_seconds()),
    )


async def refresh(ctx: Context, refresh_token: str) -> TokenPair:
    """Exchange a refresh token for a new pair; the old one is revoked (rotation)."""
    digest = hash_token(refresh_token)
    found = await ctx.store.token_identity(digest)
    if found is None or found.token.kind != "refresh":
        raise Unauthorized("invalid refresh token: log in again")
    if found.token.revoked:
        raise Unauthorized("this refresh token was revoked (each one works once): log in again")
    expires_at = found.token.expires_at
    if expires_at is not None and expires_at <= utcnow():
        raise Unauthorized(f"this refresh token expired at {expires_at.isoformat()}: log in again")
    if found.user is None or not found.user.active:
        raise Unauthorized("the user of this refresh token is deactivated")
    if await ctx.store.token_revoke_by_hash(digest, kind="refresh") is None:
        raise Unauthorized("this refresh token was revoked (each one works once): log in again")
    return await _mint_pair(ctx, found.user)


async def logout(ctx: Context, principal: Principal, bearer: str, refresh_token: str | None) -> int:
    """Revoke the calling login token and the given refresh token (of the same user).

    A job's SESSION_ID is refused (403): it ends with its job.
    """
    access.refuse_job_token(principal, "log out: it is revoked when its job ends")
    revoked = 0
    if principal.token_kind == "access":
        revoked += await ctx.store.token_revoke_by_hash(hash_token(bearer)) is not None
    if refresh_token:
        digest = hash_token(refresh_token)
        found = await ctx.store.token_identity(digest)
        if found is not None and found.token.user_id == principal.user_id:
            revoked += await ctx.store.token_revoke_by_hash(digest, kind="refresh") is not None
    forget_cached_tokens(ctx)
    return revoked


# -- users -------------------------------------------------------------------------------


def admin_password_path(settings: Settings) -> Path:
    """Where the first admin password is kept for the console's first sign-in (0600)."""
    return settings.home / "admin.password"


async def ensure_admin_password(ctx: Context) -> str | None:
    """First start: give user ``admin`` a generated password, kept in ``admin.password``
    (mode 0600) and returned to be shown once, so the console's login page has a way in.

    Only when ``admin`` exists without a password and no such file was written before:
    a password an admin set or removed since is never replaced.
    """
    path = admin_password_path(ctx.settings)
    admin = await ctx.store.user_find("admin")
    if admin is None or admin.has_password or path.exists():
        return None
    password = secrets.token_urlsafe(15)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    await ctx.store.user_update(admin.id, {"password_hash": await hash_password(password)})
    return password


def _require_admin(principal: Principal, what: str) -> None:
    if not principal.is_admin:
        raise Forbidden(f"only admins may {what}", {"required_role": "admin"})


async def _visible_user(ctx: Context, principal: Principal, user_id: int) -> User:
    """The user, if the caller may see them (admins: all; others: themselves), else 404.

    A job's SESSION_ID gets 403 on every user route: job tokens never manage users.
    """
    access.refuse_job_token(principal, "read or manage users")
    if not principal.is_admin and principal.user_id != user_id:
        raise NotFound(f"user {user_id} does not exist", {"user_id": user_id})
    return await ctx.store.user_get(user_id)


async def create_user(
    ctx: Context,
    principal: Principal,
    *,
    name: str,
    role: str,
    password: str | None,
    remote_addr: str | None = None,
) -> User:
    """Create a user (admins only); without a password they can use tokens only."""
    access.refuse_job_token(principal, "create users")
    _require_admin(principal, "create users")
    check_name(name, "user name")
    hashed = await hash_password(password) if password is not None else None
    user = await ctx.store.user_create(name=name, role=role, password_hash=hashed)
    details = {"name": user.name, "role": role, "has_password": password is not None}
    await auditlog.record(ctx, principal, "user.create", "user", user.id, details, remote_addr)
    return user


async def list_users(
    ctx: Context, principal: Principal, *, cursor: str | None, limit: int
) -> Page[User]:
    """Every user for admins; only themselves for others (a job token: 403)."""
    access.refuse_job_token(principal, "read or manage users")
    if principal.is_admin:
        return await ctx.store.users_list(cursor=cursor, limit=limit)
    if decode_cursor(cursor) is not None or principal.user_id is None:
        return Page([], None)
    return Page([await ctx.store.user_get(principal.user_id)], None)


async def get_user(ctx: Context, principal: Principal, user_id: int) -> User:
    """One user (admins: any; others: themselves only, 404 for the rest)."""
    return await _visible_user(ctx, principal, user_id)


async def update_user(
    ctx: Context,
    principal: Principal,
    user_id: int,
    changes: dict[str, Any],
    *,
    remote_addr: str | None = None,
) -> User:
    """Change role, password and/or active; a non-admin may only change their own password."""
    user = await _visible_user(ctx, principal, user_id)
    if not principal.is_admin and set(changes) - {"password"}:
        raise Forbidden("only admins may change a user's role or active flag")
    values: dict[str, Any] = {}
    if changes.get("role") is not None:
        values["role"] = changes["role"]
    if "password" in changes:
        password = changes["password"]
        values["password_hash"] = await hash_password(password) if password is not None else None
    if values:
        user = await ctx.store.user_update(user_id, values)
        forget_cached_tokens(ctx)  # a changed role applies at once on this server
        details = {"fields": sorted(k for k in ("role", "password") if k in changes)}
        await auditlog.record(ctx, principal, "user.update", "user", user_id, details, remote_addr)
    if changes.get("active") is False and user.active:
        user = (await deactivate_user(ctx, principal, user_id, remote_addr=remote_addr)).user
    elif changes.get("active") is True and not user.active:
        user = await activate_user(ctx, principal, user_id, remote_addr=remote_addr)
    return user


async def deactivate_user(
    ctx: Context, principal: Principal, user_id: int, *, remote_addr: str | None = None
) -> Deactivation:
    """Deactivate a user: tokens revoked, not-started jobs CANCELLED (admins only)."""
    await _visible_user(ctx, principal, user_id)
    _require_admin(principal, "deactivate users")
    if principal.user_id == user_id:
        raise Conflict("you cannot deactivate yourself")
    done = await ctx.store.user_deactivate(user_id, actor=principal.actor)
    forget_cached_tokens(ctx)
    for job_id in done.jobs_cancelled:
        ctx.bus.job_changed(job_id)
    if done.jobs_cancelled:
        ctx.bus.work_available()  # cancelled QUEUED jobs may have promoted others
    details = {"jobs_cancelled": len(done.jobs_cancelled)}
    await auditlog.record(ctx, principal, "user.deactivate", "user", user_id, details, remote_addr)
    return done


async def activate_user(
    ctx: Context, principal: Principal, user_id: int, *, remote_addr: str | None = None
) -> User:
    """Reactivate a user (admins only); they log in again or get new tokens."""
    await _visible_user(ctx, principal, user_id)
    _require_admin(principal, "activate users")
    user = await ctx.store.user_activate(user_id)
    await auditlog.record(ctx, principal, "user.activate", "user", user_id, None, remote_addr)
    return user


async def me(ctx: Context, principal: Principal) -> User | None:
    """The caller's user record (None for an unlinked bootstrap token)."""
    if principal.user_id is None:
        return None
    return await ctx.store.user_get(principal.user_id)


# -- personal tokens ---------------------------------------------------------------------


async def _owner_of_listing(ctx: Context, principal: Principal, user: str | None) -> int | None:
    if user is None or user == principal.name:
        return principal.user_id
    found = await ctx.store.user_find(user) if principal.is_admin else None
    if found is None:
        raise NotFound(f"user {user!r} does not exist", {"user": user})
    return found.id


async def list_tokens(
    ctx: Context, principal: Principal, *, user: str | None, all_kinds: bool
) -> list[ApiToken]:
    """Tokens of the caller (or, for admins, of ``user``): personal and admin ones by
    default, also login and session tokens with ``all_kinds``. Not for job tokens."""
    access.refuse_job_token(principal, "read or manage tokens")
    owner = await _owner_of_listing(ctx, principal, user)
    if owner is None:
        return []
    kinds = tuple(sorted(TOKEN_KINDS)) if all_kinds else LISTED_KINDS
    return await ctx.store.tokens_list(user_id=owner, kinds=kinds)


async def create_token(
    ctx: Context,
    principal: Principal,
    *,
    name: str,
    expires_at: datetime | None,
    expires_in_days: float | None,
    remote_addr: str | None = None,
) -> tuple[ApiToken, str]:
    """Mint a personal token of the caller; returns the record and the value (shown once)."""
    access.refuse_job_token(principal, "mint tokens (they would outlive the job)")
    if principal.user_id is None:
        raise Conflict("this bootstrap token has no user: restart the server to link it")
    if expires_at is not None and expires_in_days is not None:
        raise InvalidInput("give expires_at or expires_in_days, not both")
    if expires_in_days is not None:
        expires_at = utcnow() + timedelta(days=expires_in_days)
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)  # a time without a zone is UTC
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput("expires_at is in the past", {"field": "expires_at"})
    value = new_token()
    token = await ctx.store.token_insert(
        name=name,
        token_hash=hash_token(value),
        role=principal.role,
        user_id=principal.user_id,
        kind="personal",
        expires_at=expires_at,
    )
    details = {"name": name, "expires_at": expires_at.isoformat() if expires_at else None}
    await auditlog.record(ctx, principal, "token.create", "token", token.id, details, remote_addr)
    return token, value


async def revoke_token(
    ctx: Context, principal: Principal, token_id: int, *, remote_addr: str | None = None
) -> ApiToken:
    """Revoke a token of the caller (admins: anyone's); 404 for others' tokens."""
    access.refuse_job_token(principal, "read or manage tokens")
    token = await ctx.store.token_get(token_id)
    if not principal.is_admin and (principal.user_id is None or token.user_id != principal.user_id):
        raise NotFound(f"token {token_id} does not exist", {"token_id": token_id})
    token = await ctx.store.token_revoke(token_id)
    forget_cached_tokens(ctx)
    details = {"name": token.name, "user_id": token.user_id}
    await auditlog.record(ctx, principal, "token.revoke", "token", token_id, details, remote_addr)
    return token
