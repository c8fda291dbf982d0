"""``/api/v1/templates``: shared packages and entry points of jobconfigs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from jobyard.api.deps import Caller, Ctx, require_principal
from jobyard.api.dto import CURSOR_HELP, MAX_ID, JobConfigOut
from jobyard.api.openapi import errors
from jobyard.api.routes.access import client_address
from jobyard.api.template_dto import (
    CloneIn,
    CloneOut,
    ImportReport,
    TemplateExport,
    TemplateIn,
    TemplateJobConfigs,
    TemplateOut,
    TemplatePage,
    TemplatePatch,
)
from jobyard.service import template_transfer, templates

router = APIRouter(
    prefix="/api/v1/templates",
    tags=["templates"],
    dependencies=[Depends(require_principal)],
    responses=errors(401, 404, 422),
)
TemplateId = Annotated[int, Path(ge=1, le=MAX_ID, description="Template id.")]


@router.post("", status_code=201, response_model=TemplateOut, responses=errors(403, 409))
async def create_template(
    body: TemplateIn, ctx: Ctx, caller: Caller, request: Request
) -> TemplateOut:
    """Create a template (409 if the name is taken); the caller becomes its owner."""
    created = await templates.create(
        ctx, body.spec(), owner=caller.name, principal=caller, remote_addr=client_address(request)
    )
    return TemplateOut.of(created)


@router.get("", response_model=TemplatePage)
async def list_templates(
    ctx: Ctx,
    caller: Caller,
    name: Annotated[str | None, Query(max_length=255, description="Exact name.")] = None,
    cursor: Annotated[str | None, Query(description=CURSOR_HELP)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> TemplatePage:
    """List the templates the caller may view by id, or look one up by its exact name."""
    page = await templates.list_(ctx, caller, name=name, cursor=cursor, limit=limit)
    return TemplatePage(items=[TemplateOut.of(t) for t in page.items], next_cursor=page.next_cursor)


@router.post("/import", response_model=ImportReport, responses=errors(403, 409))
async def import_template(body: TemplateExport, ctx: Ctx, caller: Caller) -> ImportReport:
    """Create or update a template and its jobconfigs (and schedules) by name.

    Packages are named by sha256 and must already be uploaded here. The answer says
    what happened to each object: created, updated, unchanged (schedules: also deleted).
    """
    report = await template_transfer.import_(
        ctx, body.bundle(), owner=caller.name, principal=caller
    )
    return ImportReport.of(report)


@router.get("/{template_id}", response_model=TemplateOut)
async def get_template(template_id: TemplateId, ctx: Ctx, caller: Caller) -> TemplateOut:
    """Read one template."""
    return TemplateOut.of(await templates.get(ctx, caller, template_id))


@router.put("/{template_id}", response_model=TemplateOut, responses=errors(403, 409))
async def replace_template(
    template_id: TemplateId, body: TemplateIn, ctx: Ctx, caller: Caller, request: Request
) -> TemplateOut:
    """Replace every writable field (omitted ones take their defaults)."""
    updated = await templates.replace(
        ctx, template_id, body.spec(), principal=caller, remote_addr=client_address(request)
    )
    return TemplateOut.of(updated)


@router.patch("/{template_id}", response_model=TemplateOut, responses=errors(403, 409))
async def patch_template(
    template_id: TemplateId, body: TemplatePatch, ctx: Ctx, caller: Caller, request: Request
) -> TemplateOut:
    """Change only the given fields."""
    changes = body.model_dump(exclude_unset=True)
    updated = await templates.patch(
        ctx, caller, template_id, changes, remote_addr=client_address(request)
    )
    return TemplateOut.of(updated)


@router.delete("/{template_id}", status_code=204, responses=errors(403, 409))
async def delete_template(
    template_id: TemplateId, ctx: Ctx, caller: Caller, request: Request
) -> Response:
    """Delete a template and its macros (409 while jobconfigs name it)."""
    await templates.delete(ctx, caller, template_id, remote_addr=client_address(request))
    return Response(status_code=204)


@router.get("/{template_id}/jobconfigs", response_model=TemplateJobConfigs)
async def template_jobconfigs(
    template_id: TemplateId, ctx: Ctx, caller: Caller
) -> TemplateJobConfigs:
    """The jobconfigs that name this template (those the caller may view), by id."""
    items = await templates.jobconfigs_of(ctx, caller, template_id)
    return TemplateJobConfigs(items=[JobConfigOut.of(j) for j in items])


@router.post(
    "/{template_id}/clone",
    status_code=201,
    response_model=CloneOut,
    responses=errors(403, 409),
)
async def clone_template(
    template_id: TemplateId, body: CloneIn, ctx: Ctx, caller: Caller, request: Request
) -> CloneOut:
    """Copy a template, and with ``with_jobconfigs`` its jobconfigs (renamed
    ``<jobconfig_prefix><name>``, default prefix ``<new name>.``; schedules not copied)."""
    result = await templates.clone(
        ctx,
        caller,
        template_id,
        name=body.name,
        owner=caller.name,
        with_jobconfigs=body.with_jobconfigs,
        jobconfig_prefix=body.jobconfig_prefix,
        remote_addr=client_address(request),
    )
    return CloneOut.of(result)


@router.get("/{template_id}/export", response_model=TemplateExport)
async def export_template(template_id: TemplateId, ctx: Ctx, caller: Caller) -> TemplateExport:
    """The template, its jobconfigs and their schedules, for ``POST /templates/import``.

    Packages by sha256; no ids that would not transfer; no secure values.
    """
    return TemplateExport.model_validate(await template_transfer.export(ctx, template_id, caller))
