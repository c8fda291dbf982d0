"""Request dependencies: the use-case context and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from jobyard.service.auth import authenticate
from jobyard.service.context import Context, Principal


async def get_ctx(request: Request) -> Context:
    """The context built at startup (async: a sync dependency would cost a thread hop)."""
    ctx: Context = request.app.state.ctx
    return ctx


async def require_principal(request: Request) -> Principal:
    """Every route but health requires a valid bearer token."""
    ctx: Context = request.app.state.ctx
    principal = await authenticate(ctx, request.headers.get("authorization"))
    request.state.principal = principal
    return principal


Ctx = Annotated[Context, Depends(get_ctx)]
Caller = Annotated[Principal, Depends(require_principal)]
