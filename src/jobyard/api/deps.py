"""Request dependencies: the use-case context and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from jobyard.core.errors import Unauthorized
from jobyard.service.context import Context, Principal


async def get_ctx(request: Request) -> Context:
    """The context built at startup (async: a sync dependency would cost a thread hop)."""
    ctx: Context = request.app.state.ctx
    return ctx


async def require_principal(request: Request) -> Principal:
    """The caller, authenticated by :class:`~jobyard.api.auth.AuthMiddleware` at the door."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):  # only an open route could get here
        raise Unauthorized("this route needs 'Authorization: Bearer TOKEN'")
    return principal


Ctx = Annotated[Context, Depends(get_ctx)]
Caller = Annotated[Principal, Depends(require_principal)]
