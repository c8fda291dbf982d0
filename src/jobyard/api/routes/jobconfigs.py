"""``/api/v1/jobconfigs``: definitions of what to run, and running them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response

from jobyard.api.deps import Caller, Ctx, require_principal
from jobyard.api.dto import (
    CURSOR_HELP,
    MAX_ID,
    JobConfigIn,
    JobConfigOut,
    JobConfigPage,
    JobConfigPatch,
    JobConfigSaved,
    JobOut,
    NoticeOut,
    RunIn,
    json_response,
)
from jobyard.api.openapi import errors
from jobyard.api.routes.access import client_address
from jobyard.core.models import JobConfigSpec
from jobyard.service import jobconfigs, jobs, pools

router = APIRouter(
    prefix="/api/v1/jobconfigs",
    tags=["jobconfigs"],
    dependencies=[Depends(require_principal)],
    responses=errors(401, 404, 422),
)
JobConfigId = Annotated[int, Path(ge=1, le=MAX_ID, description="Jobconfig id.")]


def _spec(body: JobConfigIn) -> JobConfigSpec:
    values = body.model_dump()
    retention = values.pop("retention") or {}
    return JobConfigSpec(
        **values,
        retention_max_age_days=retention.get("max_age_days"),
        retention_max_jobs=retention.get("max_jobs"),
    )


def _saved(saved: pools.Saved) -> JobConfigSaved:
    out = JobConfigSaved.of(saved.jobconfig)
    out.warnings = [NoticeOut.of(n) for n in saved.warnings]
    return out


def _patch_changes(body: JobConfigPatch) -> dict[str, Any]:
    """The PATCH body as spec fields: ``retention`` spreads over its two columns."""
    changes = body.model_dump(exclude_unset=True)
    if "retention" in changes:
        retention = changes.pop("retention")
        if retention is None:
            changes.update(retention_max_age_days=None, retention_max_jobs=None)
        else:
            changes.update({f"retention_{k}": v for k, v in retention.items()})
    return changes


@router.post("", status_code=201, response_model=JobConfigSaved, responses=errors(403, 409))
async def create_jobconfig(
    body: JobConfigIn, ctx: Ctx, caller: Caller, request: Request
) -> JobConfigSaved:
    """Create a jobconfig (409 if the name is taken); the caller becomes its owner.

    ``warnings`` says when no live worker serves its pool (its jobs would wait QUEUED).
    """
    write = jobconfigs.create(
        ctx,
        _spec(body),
        owner=caller.name,
        principal=caller,
        remote_addr=client_address(request),
    )
    return _saved(await pools.noting_pools(ctx, write))


@router.get("", response_model=JobConfigPage)
async def list_jobconfigs(
    ctx: Ctx,
    caller: Caller,
    name: Annotated[str | None, Query(max_length=255, description="Exact name.")] = None,
    cursor: Annotated[str | None, Query(description=CURSOR_HELP)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JobConfigPage:
    """List the jobconfigs the caller may view by id, or look one up by its exact name."""
    page = await jobconfigs.list_(ctx, caller, name=name, cursor=cursor, limit=limit)
    return JobConfigPage(
        items=[JobConfigOut.of(j) for j in page.items], next_cursor=page.next_cursor
    )


@router.get("/{jobconfig_id}", response_model=JobConfigOut)
async def get_jobconfig(jobconfig_id: JobConfigId, ctx: Ctx, caller: Caller) -> JobConfigOut:
    """Read one jobconfig."""
    return JobConfigOut.of(await jobconfigs.get(ctx, caller, jobconfig_id))


@router.put("/{jobconfig_id}", response_model=JobConfigSaved, responses=errors(403, 409))
async def replace_jobconfig(
    jobconfig_id: JobConfigId, body: JobConfigIn, ctx: Ctx, caller: Caller, request: Request
) -> JobConfigSaved:
    """Replace every writable field (omitted ones take their defaults); ``warnings`` as
    for create."""
    write = jobconfigs.replace(
        ctx, jobconfig_id, _spec(body), principal=caller, remote_addr=client_address(request)
    )
    return _saved(await pools.noting_pools(ctx, write))


@router.patch("/{jobconfig_id}", response_model=JobConfigSaved, responses=errors(403, 409))
async def patch_jobconfig(
    jobconfig_id: JobConfigId, body: JobConfigPatch, ctx: Ctx, caller: Caller, request: Request
) -> JobConfigSaved:
    """Change only the given fields; ``warnings`` as for create."""
    changes = _patch_changes(body)
    write = jobconfigs.patch(
        ctx, caller, jobconfig_id, changes, remote_addr=client_address(request)
    )
    return _saved(await pools.noting_pools(ctx, write))


@router.delete("/{jobconfig_id}", status_code=204, responses=errors(403, 409))
async def delete_jobconfig(
    jobconfig_id: JobConfigId, ctx: Ctx, caller: Caller, request: Request
) -> Response:
    """Delete a jobconfig whose jobs have all ended (409 otherwise)."""
    await jobconfigs.delete(ctx, caller, jobconfig_id, remote_addr=client_address(request))
    return Response(status_code=204)


@router.post(
    "/by-name/{name}/run",
    status_code=201,
    response_model=JobOut,
    summary="Run a jobconfig given by name",
    responses=errors(403, 404, 409),
)
async def run_jobconfig_by_name(
    name: Annotated[str, Path(min_length=1, max_length=128, description="Jobconfig name.")],
    ctx: Ctx,
    caller: Caller,
    request: Request,
    body: Annotated[RunIn | None, Body()] = None,
) -> Response:
    """Submit a job of the jobconfig with this name (no id lookup first); as
    ``POST /jobconfigs/{id}/run``. A missing name, or one the caller may not view: 404.

    A separate ``by-name`` segment, since a name may be all digits (``2024``) and
    ``/jobconfigs/{id}`` reads digits as an id.
    """
    body = body or RunIn()
    job = await jobs.run_jobconfig_named(
        ctx,
        caller,
        name,
        macros=body.macros,
        hold=body.hold,
        remote_addr=client_address(request),
    )
    return json_response(JobOut.of(job), 201)


@router.post(
    "/{jobconfig_id}/run",
    status_code=201,
    response_model=JobOut,
    responses=errors(403, 409),
)
async def run_jobconfig(
    jobconfig_id: JobConfigId,
    ctx: Ctx,
    caller: Caller,
    request: Request,
    body: Annotated[RunIn | None, Body()] = None,
) -> Response:
    """Submit a job of this jobconfig, with optional per-job macros (or on hold)."""
    body = body or RunIn()
    job = await jobs.run_jobconfig(
        ctx,
        caller,
        jobconfig_id,
        macros=body.macros,
        hold=body.hold,
        remote_addr=client_address(request),
    )
    return json_response(JobOut.of(job), 201)
