"""Users, login, token refresh, logout and personal API tokens.

``/api/v1/login`` and ``/api/v1/token/refresh`` are open paths (no bearer token);
everything else needs one. Only admins manage users; a non-admin sees only themselves
(404 for any other user, so ids cannot be probed).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from jobyard.api.deps import Caller, Ctx, require_principal
from jobyard.api.dto import CURSOR_HELP, MAX_ID
from jobyard.api.openapi import errors
from jobyard.api.routes.access import client_address
from jobyard.core.models import ApiToken
from jobyard.core.users import User
from jobyard.service import users
from jobyard.service.context import Principal

router = APIRouter(
    tags=["users"],
    responses=errors(401, 422),
)
_AUTHED = [Depends(require_principal)]
UserId = Annotated[int, Path(ge=1, le=MAX_ID, description="User id.")]
TokenId = Annotated[int, Path(ge=1, le=MAX_ID, description="Token id.")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Role = Literal["admin", "user"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_In):
    """Name and password."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    password: Password


class RefreshIn(_In):
    """A refresh token from a login or an earlier refresh."""

    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class LogoutIn(_In):
    """The refresh token to revoke along with the calling access token."""

    refresh_token: Annotated[str, StringConstraints(max_length=200)] | None = None


class TokenPairOut(BaseModel):
    """What a login or refresh hands out; ``expires_in`` is the access token's life (s)."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_expires_in: int

    @classmethod
    def of(cls, pair: users.TokenPair) -> TokenPairOut:
        """Build from the service record."""
        return cls.model_validate(pair, from_attributes=True)


class UserIn(_In):
    """A new user; without a password they can only use tokens an admin gives them."""

    name: Name
    role: Role = "user"
    password: Password | None = None


class UserPatch(_In):
    """Fields to change (a non-admin may change only their own password)."""

    role: Role | None = None
    password: Password | None = None
    active: bool | None = None


class UserOut(BaseModel):
    """A user (never their password hash)."""

    id: int
    name: str
    role: str
    active: bool
    has_password: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, u: User) -> UserOut:
        """Build from the domain record."""
        return cls.model_validate(u, from_attributes=True)


class UserPage(BaseModel):
    """A page of users."""

    items: list[UserOut]
    next_cursor: str | None


class DeactivationOut(BaseModel):
    """A deactivated user, with what the deactivation did."""

    user: UserOut
    tokens_revoked: int
    jobs_cancelled: list[int]


class MeOut(BaseModel):
    """The caller: their user record and the kind of token they called with."""

    name: str
    role: str
    user: UserOut | None
    token_kind: str
    job_id: int | None


class TokenIn(_In):
    """A personal token: a name and an optional expiry (a time, or days from now)."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    expires_at: datetime | None = None
    expires_in_days: Annotated[float, Field(gt=0, le=36_500)] | None = None


class TokenOut(BaseModel):
    """A stored token (never its value)."""

    id: int
    name: str
    kind: str
    user_id: int | None
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked: bool
    job_id: int | None
    last_used_at: datetime | None = Field(
        None,
        description="When a personal or admin token was last used, to within a minute "
        "(null: not since it was made, or another kind).",
    )

    @classmethod
    def of(cls, t: ApiToken) -> TokenOut:
        """Build from the domain record."""
        return cls.model_validate(t, from_attributes=True)


class NewTokenOut(TokenOut):
    """A token just minted: ``token`` is its value, shown this once."""

    token: str


class TokenList(BaseModel):
    """Tokens, newest first."""

    items: list[TokenOut]


def _too_many(exc: users.TooManyAttempts) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": exc.code, "message": exc.message, "details": exc.details}},
        status_code=429,
        headers={"Retry-After": str(exc.retry_after)},
    )


# -- login -------------------------------------------------------------------------------


@router.post(
    "/api/v1/login",
    response_model=TokenPairOut,
    responses=errors(429),
)
async def login(body: LoginIn, request: Request, ctx: Ctx) -> Response:
    """Log in with a name and password: a short-lived access token and a refresh token."""
    address = request.client.host if request.client else None
    try:
        pair = await users.login(ctx, body.name, body.password, address=address)
    except users.TooManyAttempts as exc:
        return _too_many(exc)
    return JSONResponse(TokenPairOut.of(pair).model_dump(), headers={"Cache-Control": "no-store"})


@router.post("/api/v1/token/refresh", response_model=TokenPairOut)
async def refresh_token(body: RefreshIn, ctx: Ctx) -> Response:
    """Exchange a refresh token for a new pair (the old refresh token stops working)."""
    pair = await users.refresh(ctx, body.refresh_token)
    return JSONResponse(TokenPairOut.of(pair).model_dump(), headers={"Cache-Control": "no-store"})


@router.post("/api/v1/logout", status_code=204, dependencies=_AUTHED)
async def logout(
    request: Request, ctx: Ctx, caller: Caller, body: LogoutIn | None = None
) -> Response:
    """Revoke the calling access token (from a login) and the given refresh token."""
    bearer = request.headers.get("authorization", "").partition(" ")[2].strip()
    await users.logout(ctx, caller, bearer, body.refresh_token if body else None)
    return Response(status_code=204)


@router.get("/api/v1/me", response_model=MeOut, dependencies=_AUTHED)
async def who_am_i(ctx: Ctx, caller: Caller) -> MeOut:
    """Who the token belongs to."""
    user = await users.me(ctx, caller)
    return _me(caller, user)


def _me(caller: Principal, user: User | None) -> MeOut:
    return MeOut(
        name=caller.name,
        role=caller.role,
        user=UserOut.of(user) if user is not None else None,
        token_kind=caller.token_kind,
        job_id=caller.job_id,
    )


# -- users -------------------------------------------------------------------------------


@router.get("/api/v1/users", response_model=UserPage, dependencies=_AUTHED)
async def list_users(
    ctx: Ctx,
    caller: Caller,
    cursor: Annotated[str | None, Query(description=CURSOR_HELP)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> UserPage:
    """Every user (admins); only yourself (others)."""
    page = await users.list_users(ctx, caller, cursor=cursor, limit=limit)
    return UserPage(items=[UserOut.of(u) for u in page.items], next_cursor=page.next_cursor)


@router.post(
    "/api/v1/users",
    status_code=201,
    response_model=UserOut,
    dependencies=_AUTHED,
    responses=errors(403, 409),
)
async def create_user(body: UserIn, ctx: Ctx, caller: Caller, request: Request) -> UserOut:
    """Create a user (admins only)."""
    user = await users.create_user(
        ctx,
        caller,
        name=body.name,
        role=body.role,
        password=body.password,
        remote_addr=client_address(request),
    )
    return UserOut.of(user)


@router.get(
    "/api/v1/users/{user_id}",
    response_model=UserOut,
    dependencies=_AUTHED,
    responses=errors(404),
)
async def get_user(user_id: UserId, ctx: Ctx, caller: Caller) -> UserOut:
    """One user (a non-admin: only themselves)."""
    return UserOut.of(await users.get_user(ctx, caller, user_id))


@router.patch(
    "/api/v1/users/{user_id}",
    response_model=UserOut,
    dependencies=_AUTHED,
    responses=errors(403, 404, 409),
)
async def patch_user(
    user_id: UserId, body: UserPatch, ctx: Ctx, caller: Caller, request: Request
) -> UserOut:
    """Change role, password or active (``"password": null`` removes the password)."""
    changes = body.model_dump(exclude_unset=True)
    return UserOut.of(
        await users.update_user(ctx, caller, user_id, changes, remote_addr=client_address(request))
    )


@router.post(
    "/api/v1/users/{user_id}/deactivate",
    response_model=DeactivationOut,
    dependencies=_AUTHED,
    responses=errors(403, 404, 409),
)
async def deactivate_user(
    user_id: UserId, ctx: Ctx, caller: Caller, request: Request
) -> DeactivationOut:
    """Deactivate: their tokens are revoked and their not-started jobs end CANCELLED."""
    done = await users.deactivate_user(ctx, caller, user_id, remote_addr=client_address(request))
    return DeactivationOut(
        user=UserOut.of(done.user),
        tokens_revoked=done.tokens_revoked,
        jobs_cancelled=done.jobs_cancelled,
    )


@router.post(
    "/api/v1/users/{user_id}/activate",
    response_model=UserOut,
    dependencies=_AUTHED,
    responses=errors(403, 404),
)
async def activate_user(user_id: UserId, ctx: Ctx, caller: Caller, request: Request) -> UserOut:
    """Reactivate a user (their old tokens stay revoked)."""
    return UserOut.of(
        await users.activate_user(ctx, caller, user_id, remote_addr=client_address(request))
    )


# -- personal tokens ---------------------------------------------------------------------


@router.get("/api/v1/tokens", response_model=TokenList, dependencies=_AUTHED)
async def list_tokens(
    ctx: Ctx,
    caller: Caller,
    user: Annotated[str | None, Query(max_length=128, description="Admins: whose.")] = None,
    all_kinds: Annotated[
        bool, Query(alias="all", description="Also login and session tokens.")
    ] = False,
) -> TokenList:
    """Your tokens (personal ones; ``?all=true`` also login and session tokens)."""
    items = await users.list_tokens(ctx, caller, user=user, all_kinds=all_kinds)
    return TokenList(items=[TokenOut.of(t) for t in items])


@router.post(
    "/api/v1/tokens",
    status_code=201,
    response_model=NewTokenOut,
    dependencies=_AUTHED,
    responses=errors(403),
)
async def create_token(body: TokenIn, ctx: Ctx, caller: Caller, request: Request) -> Response:
    """Mint a personal token; its value is in this answer only."""
    token, value = await users.create_token(
        ctx,
        caller,
        name=body.name,
        expires_at=body.expires_at,
        expires_in_days=body.expires_in_days,
        remote_addr=client_address(request),
    )
    out = NewTokenOut(**TokenOut.of(token).model_dump(), token=value)
    return JSONResponse(
        out.model_dump(mode="json"), status_code=201, headers={"Cache-Control": "no-store"}
    )


@router.delete(
    "/api/v1/tokens/{token_id}",
    status_code=204,
    dependencies=_AUTHED,
    responses=errors(404),
)
async def revoke_token(token_id: TokenId, ctx: Ctx, caller: Caller, request: Request) -> Response:
    """Revoke one of your tokens (admins: anyone's)."""
    await users.revoke_token(ctx, caller, token_id, remote_addr=client_address(request))
    return Response(status_code=204)
