"""``/api/v1/jobconfigs/{id}/schedules``: when a jobconfig runs by itself."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response

from jobyard.api.deps import Caller, Ctx, require_principal
from jobyard.api.dto import MAX_ID
from jobyard.api.openapi import errors
from jobyard.api.routes.access import client_address
from jobyard.api.schedule_dto import ScheduleIn, ScheduleList, ScheduleOut, SchedulePatch
from jobyard.service import schedules

router = APIRouter(
    prefix="/api/v1/jobconfigs/{jobconfig_id}/schedules",
    tags=["schedules"],
    dependencies=[Depends(require_principal)],
    responses=errors(401, 404, 422),
)
JobConfigId = Annotated[int, Path(ge=1, le=MAX_ID, description="Jobconfig id.")]
ScheduleId = Annotated[int, Path(ge=1, le=MAX_ID, description="Schedule id.")]
_CONFLICT: dict[int | str, dict[str, Any]] = errors(403, 409)


@router.get("", response_model=ScheduleList)
async def list_schedules(jobconfig_id: JobConfigId, ctx: Ctx, caller: Caller) -> ScheduleList:
    """The jobconfig's schedules, with their next fire times."""
    found = await schedules.list_(ctx, caller, jobconfig_id)
    return ScheduleList(items=[ScheduleOut.of(s) for s in found])


@router.post("", status_code=201, response_model=ScheduleOut, responses=_CONFLICT)
async def create_schedule(
    jobconfig_id: JobConfigId, body: ScheduleIn, ctx: Ctx, caller: Caller, request: Request
) -> ScheduleOut:
    """Add a cron or interval schedule (422 says what to fix; 409 if the name is taken)."""
    created = await schedules.create(
        ctx, jobconfig_id, body.spec(), principal=caller, remote_addr=client_address(request)
    )
    return ScheduleOut.of(created)


@router.get("/{schedule_id}", response_model=ScheduleOut)
async def get_schedule(
    jobconfig_id: JobConfigId, schedule_id: ScheduleId, ctx: Ctx, caller: Caller
) -> ScheduleOut:
    """Read one schedule."""
    return ScheduleOut.of(await schedules.get(ctx, caller, jobconfig_id, schedule_id))


@router.put("/{schedule_id}", response_model=ScheduleOut, responses=_CONFLICT)
async def replace_schedule(
    jobconfig_id: JobConfigId,
    schedule_id: ScheduleId,
    body: ScheduleIn,
    ctx: Ctx,
    caller: Caller,
    request: Request,
) -> ScheduleOut:
    """Replace every writable field; the next fire time is computed from now."""
    updated = await schedules.replace_(
        ctx,
        jobconfig_id,
        schedule_id,
        body.spec(),
        principal=caller,
        remote_addr=client_address(request),
    )
    return ScheduleOut.of(updated)


@router.patch("/{schedule_id}", response_model=ScheduleOut, responses=_CONFLICT)
async def patch_schedule(
    jobconfig_id: JobConfigId,
    schedule_id: ScheduleId,
    body: SchedulePatch,
    ctx: Ctx,
    caller: Caller,
    request: Request,
) -> ScheduleOut:
    """Change only the given fields (``{"paused": true}`` pauses)."""
    changed = await schedules.patch(
        ctx, caller, jobconfig_id, schedule_id, body.changes(), remote_addr=client_address(request)
    )
    return ScheduleOut.of(changed)


@router.delete("/{schedule_id}", status_code=204, responses=errors(403))
async def delete_schedule(
    jobconfig_id: JobConfigId, schedule_id: ScheduleId, ctx: Ctx, caller: Caller, request: Request
) -> Response:
    """Delete a schedule (its jobs stay)."""
    await schedules.delete(
        ctx, jobconfig_id, schedule_id, principal=caller, remote_addr=client_address(request)
    )
    return Response(status_code=204)


@router.post("/{schedule_id}/pause", response_model=ScheduleOut, responses=_CONFLICT)
async def pause_schedule(
    jobconfig_id: JobConfigId, schedule_id: ScheduleId, ctx: Ctx, caller: Caller, request: Request
) -> ScheduleOut:
    """Stop firing until resumed (idempotent)."""
    changed = await schedules.set_paused(
        ctx, caller, jobconfig_id, schedule_id, True, remote_addr=client_address(request)
    )
    return ScheduleOut.of(changed)


@router.post("/{schedule_id}/resume", response_model=ScheduleOut, responses=_CONFLICT)
async def resume_schedule(
    jobconfig_id: JobConfigId, schedule_id: ScheduleId, ctx: Ctx, caller: Caller, request: Request
) -> ScheduleOut:
    """Fire again from the next fire time after now (no catch-up for the pause)."""
    changed = await schedules.set_paused(
        ctx, caller, jobconfig_id, schedule_id, False, remote_addr=client_address(request)
    )
    return ScheduleOut.of(changed)
