"""The console's users, own-account and personal-token pages.

``/users`` (admins manage users; anyone else sees what ``GET /api/v1/users`` shows them:
themselves), ``/users/{id}``, ``/me`` and ``/tokens``. Every page and action calls the
use case of the API route for the same thing (:mod:`jobyard.service.users`, or
:mod:`jobyard.service.adminview` which is made of them), so refusals are the API's:
403 where the API answers 403, and the 404 of a missing user for a user the caller may
not see. A new token's value is shown once, in the answer to the ``POST`` that made it:
never in a URL, a redirect or any later page.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from jobyard.core.errors import InvalidInput, JobyardError, NotFound
from jobyard.core.timeutil import utcnow
from jobyard.service import adminview, users
from jobyard.web import session as sessions
from jobyard.web.pages import (
    STATUS_OF,
    address,
    ctx_of,
    error_page,
    finish,
    guarded,
    new_router,
    path_id,
    signed_in,
    to_login,
    view,
)

router = new_router()

#: Messages shown after an action (``?done=``); a closed list, so a link cannot make a
#: page say anything else.
NOTICES = {
    "created": "User created.",
    "role": "Role changed.",
    "password": "Password changed.",
    "deactivated": "User deactivated: their tokens are revoked and their jobs that had "
    "not started are cancelled.",
    "activated": "User reactivated: they log in again (their old tokens stay revoked).",
    "revoked": "Token revoked.",
}
ROLES = ("user", "admin")
NAME_MAX = 128
PASSWORD_MAX = users.PASSWORD_MAX
TOKEN_NAME_MAX = 200
#: The API's bound on ``expires_in_days``.
DAYS_MAX = 36_500


def field(form: FormData, key: str, *, limit: int, label: str) -> str:
    """A text field of ``form`` ("" when absent); 422 saying so when it is too long."""
    value = form.get(key)
    text = value if isinstance(value, str) else ""
    if len(text) > limit:
        raise InvalidInput(f"{label} is too long: at most {limit} characters", {"field": key})
    return text


def notice_of(request: Request) -> str | None:
    """The success message a redirect asked for (``?done=``), from the closed list."""
    return NOTICES.get(request.query_params.get("done") or "")


def new_password(form: FormData) -> str:
    """The new password of a form (``password`` and its repetition ``password2``)."""
    password = field(form, "password", limit=PASSWORD_MAX, label="the password")
    again = field(form, "password2", limit=PASSWORD_MAX, label="the repeated password")
    if password != again:
        raise InvalidInput(
            "the two passwords differ: type the same one twice", {"field": "password2"}
        )
    users.check_password(password)
    return password


def status_of(exc: JobyardError) -> int:
    """The HTTP status the API answers ``exc`` with (as the error pages do)."""
    return next((s for cls, s in STATUS_OF if isinstance(exc, cls)), 400)


def is_form_error(exc: JobyardError) -> bool:
    """Whether ``exc`` is about what the form said (422, 409): the form is shown again
    with the message; any other error is an error page."""
    return status_of(exc) in (409, 422)


def done(request: Request, resolved: sessions.Resolved, where: str) -> Response:
    """The 303 that shows ``where`` after a successful action."""
    return finish(request, resolved, RedirectResponse(where, status_code=303))


# -- users -----------------------------------------------------------------------------


async def _users_view(
    request: Request,
    resolved: sessions.Resolved,
    *,
    error: str | None = None,
    status: int = 200,
    entered: dict[str, str] | None = None,
) -> Response:
    cursor = request.query_params.get("cursor") or None
    try:
        found = await users.list_users(
            ctx_of(request), resolved.principal, cursor=cursor, limit=adminview.USERS_SHOWN
        )
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    values: dict[str, Any] = {
        "nav": "users",
        "rows": found.items,
        "next_url": "/users?" + urlencode({"cursor": found.next_cursor})
        if found.next_cursor
        else None,
        "roles": ROLES,
        "error": error,
        "entered": entered or {},
        "notice": notice_of(request),
    }
    return view(request, resolved, "users.html", values, status=status)


@router.get("/users")
async def users_page(request: Request) -> Response:
    """Users (admins: all, with a create form; others: themselves, as the API)."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    return await _users_view(request, resolved)


@router.post("/users")
async def user_create(request: Request) -> Response:
    """Create a user like ``POST /api/v1/users`` (an empty password: none)."""
    checked = await guarded(request)
    if isinstance(checked, Response):
        return checked
    resolved, form = checked
    name = ""
    role = ""
    try:
        name = field(form, "name", limit=NAME_MAX, label="the user name").strip()
        role = field(form, "role", limit=20, label="the role")
        if role not in ROLES:
            raise InvalidInput(f"role must be one of: {', '.join(ROLES)}", {"field": "role"})
        password = new_password(form) if form.get("password") else None
        user = await users.create_user(
            ctx_of(request),
            resolved.principal,
            name=name,
            role=role,
            password=password,
            remote_addr=address(request),
        )
    except JobyardError as exc:
        if not is_form_error(exc):
            return error_page(request, resolved, exc)
        status = status_of(exc)
        entered = {"name": name, "role": role}
        return await _users_view(
            request, resolved, error=exc.message, status=status, entered=entered
        )
    return done(request, resolved, f"/users/{user.id}?done=created")


async def _user_view(
    request: Request,
    resolved: sessions.Resolved,
    user_id: str,
    *,
    error: str | None = None,
    status: int = 200,
) -> Response:
    try:
        number = path_id(user_id, "no such user")
        detail = await adminview.user_detail(ctx_of(request), resolved.principal, number)
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    values = {
        "nav": "users",
        "d": detail,
        "roles": ROLES,
        "error": error,
        "notice": notice_of(request),
        "now": utcnow(),
        "myself": detail.user.id == resolved.principal.user_id,
    }
    return view(request, resolved, "user.html", values, status=status)


@router.get("/users/{user_id}")
async def user_page(request: Request, user_id: str) -> Response:
    """One user: role, password, active; for admins their policies and tokens."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    return await _user_view(request, resolved, user_id)


#: The actions of ``POST /users/{id}/{action}``.
USER_ACTIONS = ("role", "password", "deactivate", "activate")


@router.post("/users/{user_id}/{action}")
async def user_action(request: Request, user_id: str, action: str) -> Response:
    """Change a user's role or password, deactivate or reactivate them (the API's rules)."""
    checked = await guarded(request)
    if isinstance(checked, Response):
        return checked
    resolved, form = checked
    ctx, who, addr = ctx_of(request), resolved.principal, address(request)
    try:
        number = path_id(user_id, "no such user")
        if action not in USER_ACTIONS:
            raise NotFound("no such page")
        if action == "role":
            role = field(form, "role", limit=20, label="the role")
            if role not in ROLES:
                raise InvalidInput(f"role must be one of: {', '.join(ROLES)}", {"field": "role"})
            await users.update_user(ctx, who, number, {"role": role}, remote_addr=addr)
            notice = "role"
        elif action == "password":
            changes = {"password": new_password(form)}
            await users.update_user(ctx, who, number, changes, remote_addr=addr)
            notice = "password"
        elif action == "deactivate":
            await users.deactivate_user(ctx, who, number, remote_addr=addr)
            notice = "deactivated"
        else:
            await users.activate_user(ctx, who, number, remote_addr=addr)
            notice = "activated"
    except JobyardError as exc:
        if not is_form_error(exc):
            return error_page(request, resolved, exc)
        return await _user_view(
            request, resolved, user_id, error=exc.message, status=status_of(exc)
        )
    return done(request, resolved, f"/users/{number}?done={notice}")


# -- the signed-in user ------------------------------------------------------------------


async def _me_view(
    request: Request, resolved: sessions.Resolved, *, error: str | None = None, status: int = 200
) -> Response:
    try:
        user = await users.me(ctx_of(request), resolved.principal)
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    values = {"nav": "me", "me": user, "error": error, "notice": notice_of(request)}
    return view(request, resolved, "me.html", values, status=status)


@router.get("/me")
async def me_page(request: Request) -> Response:
    """The signed-in user: name, role, and a form to change their own password."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    return await _me_view(request, resolved)


@router.post("/me/password")
async def me_password(request: Request) -> Response:
    """Change one's own password (what ``PATCH /api/v1/users/{own id}`` allows anyone)."""
    checked = await guarded(request)
    if isinstance(checked, Response):
        return checked
    resolved, form = checked
    who = resolved.principal
    try:
        if who.user_id is None:
            raise NotFound("this session has no user record")
        changes = {"password": new_password(form)}
        await users.update_user(
            ctx_of(request), who, who.user_id, changes, remote_addr=address(request)
        )
    except JobyardError as exc:
        if not is_form_error(exc):
            return error_page(request, resolved, exc)
        status = status_of(exc)
        return await _me_view(request, resolved, error=exc.message, status=status)
    return done(request, resolved, "/me?done=password")


# -- personal tokens ---------------------------------------------------------------------


async def _tokens_view(
    request: Request,
    resolved: sessions.Resolved,
    *,
    error: str | None = None,
    status: int = 200,
    minted: tuple[Any, str] | None = None,
) -> Response:
    q = request.query_params
    whose = (q.get("user") or "")[:NAME_MAX] or None
    all_kinds = q.get("all") == "1"
    try:
        items = await users.list_tokens(
            ctx_of(request), resolved.principal, user=whose, all_kinds=all_kinds
        )
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    values = {
        "nav": "tokens",
        "tokens": items,
        "whose": whose,
        "all_kinds": all_kinds,
        "now": utcnow(),
        "error": error,
        "notice": notice_of(request),
        "minted": minted,
    }
    return view(request, resolved, "tokens.html", values, status=status)


@router.get("/tokens")
async def tokens_page(request: Request) -> Response:
    """The user's personal tokens (admins: anyone's with ``?user=``), and a create form."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    return await _tokens_view(request, resolved)


def _days(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not 0 < days <= DAYS_MAX:
        raise InvalidInput(
            f"expires in: a number of days above 0 and at most {DAYS_MAX}, or empty for never",
            {"field": "expires_in_days"},
        )
    return days


@router.post("/tokens")
async def token_create(request: Request) -> Response:
    """Mint a personal token; its value is in this answer only (``no-store``)."""
    checked = await guarded(request)
    if isinstance(checked, Response):
        return checked
    resolved, form = checked
    try:
        name = field(form, "name", limit=TOKEN_NAME_MAX, label="the token name").strip()
        if not name:
            raise InvalidInput("give the token a name (what it is for)", {"field": "name"})
        days = _days(field(form, "expires_in_days", limit=40, label="expires in"))
        minted = await users.create_token(
            ctx_of(request),
            resolved.principal,
            name=name,
            expires_at=None,
            expires_in_days=days,
            remote_addr=address(request),
        )
    except JobyardError as exc:
        if not is_form_error(exc):
            return error_page(request, resolved, exc)
        status = status_of(exc)
        return await _tokens_view(request, resolved, error=exc.message, status=status)
    return await _tokens_view(request, resolved, status=201, minted=minted)


@router.post("/tokens/{token_id}/revoke")
async def token_revoke(request: Request, token_id: str) -> Response:
    """Revoke a token of the user's (admins: anyone's), like ``DELETE /api/v1/tokens/{id}``."""
    checked = await guarded(request)
    if isinstance(checked, Response):
        return checked
    resolved, form = checked
    try:
        number = path_id(token_id, "no such token")
        await users.revoke_token(
            ctx_of(request), resolved.principal, number, remote_addr=address(request)
        )
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    back = form.get("user")
    whose = {"user": back[:NAME_MAX]} if isinstance(back, str) and back else {}
    return done(request, resolved, "/tokens?" + urlencode({"done": "revoked", **whose}))
