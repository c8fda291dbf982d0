"""The console's session: a login's token pair in an HttpOnly cookie.

The cookie ``jobyard_session`` carries ``ACCESS.REFRESH.CSRF``: the access and refresh
token of a normal login (:func:`jobyard.service.users.login`) and a random CSRF secret
made at that login. Nothing else is trusted in it:

* the access token is verified by :func:`jobyard.service.auth.authenticate`, exactly
  like a bearer token (revocation, expiry, deactivated users, the 5 s cache);
* when the access token no longer works, the refresh token is exchanged once
  (:func:`jobyard.service.users.refresh`, with its rotation) and the cookie is
  replaced: a session lives as long as its refresh token (``auth.refresh_token_days``)
  and ends when its refresh token is revoked, which ``POST /logout`` does (with the
  access token). Requests that still carry the old cookie for
  :data:`RENEWAL_GRACE_SECONDS` after the rotation (other tabs, polling, requests in
  flight) get the new pair instead of a second refresh, which would fail: one
  refresh at a time per server, its result kept that long;
* the CSRF secret is echoed by every state-changing request of the console (a hidden
  field or the ``X-CSRF-Token`` header) and compared in constant time. It is never
  sent to another site: the cookie is HttpOnly and SameSite=Strict, and pages are only
  readable by the console's own origin.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass, replace

from jobyard.core.errors import Unauthorized
from jobyard.core.tokens import hash_token
from jobyard.service import users
from jobyard.service.auth import authenticate
from jobyard.service.context import Context, Principal, TtlCache

COOKIE = "jobyard_session"
#: How long the pair a refresh handed out is given to requests with the old cookie.
RENEWAL_GRACE_SECONDS = 30.0
#: One part of the cookie: a token or the CSRF secret (URL-safe base64, ``jy_`` prefix).
_PART = re.compile(r"[A-Za-z0-9_-]{16,128}")


@dataclass(frozen=True, slots=True)
class Session:
    """The parts of a console session cookie."""

    access: str
    refresh: str
    csrf: str

    def encode(self) -> str:
        """The cookie value."""
        return f"{self.access}.{self.refresh}.{self.csrf}"

    @classmethod
    def decode(cls, value: str | None) -> Session | None:
        """The session in a cookie value, or None when it is not one."""
        if not value:
            return None
        parts = value.split(".")
        if len(parts) != 3 or not all(_PART.fullmatch(p) for p in parts):
            return None
        return cls(*parts)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A verified session: who it is, and the cookie to set when the tokens rotated."""

    principal: Principal
    session: Session
    renewed: bool


async def start(ctx: Context, name: str, password: str, *, address: str | None) -> Session:
    """Log in like ``POST /api/v1/login`` (same checks, same throttling), for a cookie.

    Raises :class:`~jobyard.core.errors.Unauthorized` or
    :class:`~jobyard.service.users.TooManyAttempts` as the API login does.
    """
    pair = await users.login(ctx, name, password, address=address)
    return Session(pair.access_token, pair.refresh_token, secrets.token_urlsafe(32))


class Renewals:
    """The refreshes of this server's sessions: one at a time, each result kept for
    :data:`RENEWAL_GRACE_SECONDS` under the digest of the refresh token it spent."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.done: TtlCache[str, Session] = TtlCache(max_entries=10_000)

    async def renew(self, ctx: Context, session: Session) -> Session:
        """The session with fresh tokens (the same answer for the same old refresh token
        within the grace); Unauthorized when its refresh token no longer works."""
        key = hash_token(session.refresh)
        async with self.lock:
            renewed = self.done.get(key)
            if renewed is None:
                pair = await users.refresh(ctx, session.refresh)
                renewed = replace(session, access=pair.access_token, refresh=pair.refresh_token)
                self.done.put(key, renewed, RENEWAL_GRACE_SECONDS)
        return renewed


async def resolve(ctx: Context, session: Session, renewals: Renewals) -> Resolved:
    """The principal of a session, refreshing its tokens once if the access token died.

    Only login sessions are accepted: a cookie holding any other kind of token (a
    personal token, a job's ``SESSION_ID``) is refused like an unknown one.
    """
    try:
        principal = await authenticate(ctx, f"Bearer {session.access}")
        renewed = False
    except Unauthorized:
        session = await renewals.renew(ctx, session)  # Unauthorized: log in again
        principal = await authenticate(ctx, f"Bearer {session.access}")
        renewed = True
    if principal.token_kind != "access":
        raise Unauthorized("not a console session: log in again")
    return Resolved(principal, session, renewed)


async def end(ctx: Context, resolved: Resolved) -> None:
    """Log out: revoke the session's access and refresh tokens (``POST /logout``)."""
    await users.logout(ctx, resolved.principal, resolved.session.access, resolved.session.refresh)


def csrf_matches(session: Session, sent: str | None) -> bool:
    """Whether ``sent`` is this session's CSRF secret (constant-time comparison)."""
    if not sent:
        return False
    return secrets.compare_digest(session.csrf.encode(), sent.encode("utf-8", "replace"))
