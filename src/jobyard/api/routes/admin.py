"""``/api/v1/admin``: server housekeeping (admins only; 403 for everyone else).

``POST /api/v1/admin/purge`` runs a retention pass now (or, with ``dry_run``, counts
what one would remove) and answers the counts.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from jobyard.api.deps import Caller, Ctx, require_principal
from jobyard.api.openapi import errors
from jobyard.api.routes.access import client_address
from jobyard.service import retention

router = APIRouter(
    prefix="/api/v1/admin",
    tags=["admin"],
    dependencies=[Depends(require_principal)],
    responses=errors(401, 403, 422),
)


class PurgeIn(BaseModel):
    """Body of ``POST /api/v1/admin/purge``."""

    model_config = ConfigDict(extra="forbid")

    dry_run: bool = Field(default=False, description="Count what would go; change nothing.")


class PurgeOut(BaseModel):
    """What a purge pass removed (``dry_run``: would remove)."""

    dry_run: bool
    jobs: int = Field(description="Ended jobs (with their rows) past their retention.")
    events: int = Field(description="Status events of those jobs.")
    tokens: int = Field(description="Session tokens of those jobs.")
    log_files: int = Field(description="Log files of those jobs.")
    files: int = Field(description="Recorded payload and output files of those jobs.")
    packages: int = Field(description="Unreferenced packages past the grace period.")
    blobs: int = Field(description="Blob files (logs, payloads, outputs, package archives).")
    bytes: int = Field(description="Bytes of those blob files.")
    audit_rows: int = Field(description="Audit rows older than retention.audit_days.")
    orphans: int = Field(description="Blob files no row referred to (not in a dry run).")


@router.post("/purge", response_model=PurgeOut)
async def purge(
    ctx: Ctx,
    caller: Caller,
    request: Request,
    body: Annotated[PurgeIn | None, Body()] = None,
) -> PurgeOut:
    """Run a retention pass now (admins only); ``{"dry_run": true}`` changes nothing."""
    body = body or PurgeIn()
    report = await retention.purge(
        ctx, caller, dry_run=body.dry_run, remote_addr=client_address(request)
    )
    return PurgeOut.model_validate(report.as_dict())
