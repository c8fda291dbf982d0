"""``/api/v1/worker-tokens``: the credentials of remote workers (admins only).

A worker token opens the worker routes (``/api/v1/worker/...``) and no other; its value
is answered once, at creation.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from jobyard.api.deps import Caller, Ctx, require_principal
from jobyard.api.openapi import errors
from jobyard.core.tokens import WorkerToken
from jobyard.service import worker_tokens

router = APIRouter(
    prefix="/api/v1/worker-tokens",
    tags=["workers"],
    dependencies=[Depends(require_principal)],
    responses=errors(401, 403, 422),
)


class WorkerTokenIn(BaseModel):
    """Body of ``POST /api/v1/worker-tokens``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="What the token is for (a host, a fleet).")
    pool: str | None = Field(
        default=None, description="The only pool a worker holding it may serve (null: any)."
    )


class WorkerTokenOut(BaseModel):
    """A worker token, never its value."""

    id: int
    name: str
    pool: str | None
    created_at: datetime
    created_by: str
    revoked: bool
    last_used_at: datetime | None

    @classmethod
    def of(cls, token: WorkerToken) -> WorkerTokenOut:
        """Build from the stored record."""
        return cls(
            id=token.id,
            name=token.name,
            pool=token.pool,
            created_at=token.created_at,
            created_by=token.created_by,
            revoked=token.revoked,
            last_used_at=token.last_used_at,
        )


class WorkerTokenCreated(WorkerTokenOut):
    """A new worker token with its value: shown this once, keep it."""

    token: str = Field(description="The value (jyw_...): give it to `jobyard worker`.")


@router.post("", response_model=WorkerTokenCreated, status_code=201)
async def create_worker_token(ctx: Ctx, caller: Caller, body: WorkerTokenIn) -> WorkerTokenCreated:
    """Create a worker token (admins only); its value is in this answer only."""
    created = await worker_tokens.create_worker_token(ctx, caller, name=body.name, pool=body.pool)
    out = WorkerTokenOut.of(created.token)
    return WorkerTokenCreated(**out.model_dump(), token=created.value)


class WorkerTokenList(BaseModel):
    """Every worker token, by id."""

    items: list[WorkerTokenOut]


@router.get("", response_model=WorkerTokenList)
async def list_worker_tokens(ctx: Ctx, caller: Caller) -> WorkerTokenList:
    """Every worker token, revoked ones included (admins only)."""
    tokens = await worker_tokens.list_worker_tokens(ctx, caller)
    return WorkerTokenList(items=[WorkerTokenOut.of(t) for t in tokens])


@router.delete("/{token_id}", response_model=WorkerTokenOut, responses=errors(404))
async def revoke_worker_token(ctx: Ctx, caller: Caller, token_id: int) -> WorkerTokenOut:
    """Revoke a worker token (admins only): workers using it are refused within seconds."""
    return WorkerTokenOut.of(await worker_tokens.revoke_worker_token(ctx, caller, token_id))
