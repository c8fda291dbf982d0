"""Macros of every level: list, set, delete, export, import; resolved previews.

The same five operations exist under each level's base path::

    /api/v1/macros/account
    /api/v1/templates/{template_id}/macros
    /api/v1/users/{user_id}/macros          /api/v1/me/macros
    /api/v1/jobconfigs/{jobconfig_id}/macros

``GET base`` lists, ``PUT base/{name}`` sets (``{"value", "secure"}``), ``DELETE
base/{name}`` deletes, ``GET base/export[?format=xml]`` exports, ``POST base/import``
imports a JSON or XML macro-definition file (the request body). Plus ``GET
/api/v1/jobconfigs/{id}/macros/resolved?user=NAME`` (a preview) and ``GET
/api/v1/jobs/{id}/macros`` (what a job got, with the level of each value).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from jobyard.api.deps import Caller, Ctx, require_principal
from jobyard.api.dto import json_response
from jobyard.api.macro_dto import (
    ImportResult,
    JobMacrosOut,
    MacroDefOut,
    MacroDefs,
    MacroIn,
    MacroList,
    MacroOut,
    ResolvedList,
    ResolvedOut,
)
from jobyard.api.openapi import errors
from jobyard.api.routes.access import client_address
from jobyard.core.errors import TooLarge
from jobyard.core.macros import MAX_DEFINITION_BYTES, export_xml, parse_definitions
from jobyard.service import macros
from jobyard.service.macros import ACCOUNT, Level

MAX_OBJECT_ID = 2**31 - 1
router = APIRouter(
    tags=["macros"],
    dependencies=[Depends(require_principal)],
    responses=errors(401, 403, 404, 422),
)
MacroName = Annotated[str, Path(min_length=1, max_length=128, description="Macro name.")]
LevelOf = Callable[..., Awaitable[Level]]


async def _account() -> Level:
    return ACCOUNT


async def _template(
    template_id: Annotated[int, Path(ge=1, le=MAX_OBJECT_ID, description="Template id.")],
) -> Level:
    return Level("template", template_id)


async def _user(
    user_id: Annotated[int, Path(ge=1, le=MAX_OBJECT_ID, description="User id.")],
) -> Level:
    return Level("user", user_id)


async def _me(ctx: Ctx, caller: Caller) -> Level:
    return await macros.me(ctx, caller)


async def _jobconfig(
    jobconfig_id: Annotated[int, Path(ge=1, le=MAX_OBJECT_ID, description="Jobconfig id.")],
) -> Level:
    return Level("jobconfig", jobconfig_id)


_IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": 'A macro-definition file: JSON ({"macros": [...]}) or XML <macrodefs>.',
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/MacroDefs"}},
            "application/xml": {"schema": {"type": "string"}},
        },
    }
}


async def _read_definition(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_DEFINITION_BYTES:
        raise TooLarge(f"a macro-definition file may hold {MAX_DEFINITION_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_DEFINITION_BYTES:
            raise TooLarge(f"a macro-definition file may hold {MAX_DEFINITION_BYTES} bytes")
    return bytes(body)


def _add_level(base: str, level_of: LevelOf, tag: str) -> None:
    """Register the five operations of one level under ``base``.

    ``level: Level`` is bound to ``Depends(level_of)`` below (the annotations of these
    closures are strings resolved in the module's globals, where no per-level alias is).
    """

    async def list_macros(level: Level, ctx: Ctx, caller: Caller) -> Response:
        rows = await macros.list_level(ctx, caller, level)
        return json_response(MacroList.of(rows))

    async def set_macro(
        name: MacroName, body: MacroIn, level: Level, ctx: Ctx, caller: Caller, request: Request
    ) -> Response:
        row = await macros.set_macro(
            ctx,
            caller,
            level,
            name,
            body.value,
            secure=body.secure,
            remote_addr=client_address(request),
        )
        return json_response(MacroOut.of(row))

    async def delete_macro(
        name: MacroName, level: Level, ctx: Ctx, caller: Caller, request: Request
    ) -> Response:
        await macros.delete_macro(ctx, caller, level, name, remote_addr=client_address(request))
        return Response(status_code=204)

    async def export_macros(
        level: Level,
        ctx: Ctx,
        caller: Caller,
        format: Annotated[Literal["json", "xml"], Query(description="File format.")] = "json",
    ) -> Response:
        rows = await macros.list_level(ctx, caller, level)
        if format == "xml":
            return Response(export_xml(rows), media_type="application/xml")
        defs = [
            MacroDefOut(name=m.name, value=None if m.secure else m.value, secure=m.secure)
            for m in rows
        ]
        return json_response(MacroDefs(macros=defs))

    async def import_macros(request: Request, level: Level, ctx: Ctx, caller: Caller) -> Response:
        data = await _read_definition(request)
        defs = parse_definitions(data, request.headers.get("content-type"))
        rows = await macros.import_level(
            ctx, caller, level, defs, remote_addr=client_address(request)
        )
        return json_response(ImportResult(imported=len(defs), items=[MacroOut.of(m) for m in rows]))

    for endpoint in (list_macros, set_macro, delete_macro, export_macros, import_macros):
        endpoint.__annotations__["level"] = Annotated[Level, Depends(level_of)]
    what = "your own macros" if tag == "my" else f"the {tag} macros"
    router.add_api_route(
        base, list_macros, methods=["GET"], response_model=MacroList,
        name=f"list_{tag}_macros", summary=f"List {what} (secure ones without value).",
    )  # fmt: skip
    router.add_api_route(
        f"{base}/export", export_macros, methods=["GET"], response_model=MacroDefs,
        name=f"export_{tag}_macros",
        summary=f"Export {what} as JSON or XML (secure ones without value).",
    )  # fmt: skip
    router.add_api_route(
        f"{base}/import", import_macros, methods=["POST"], response_model=ImportResult,
        name=f"import_{tag}_macros", openapi_extra=_IMPORT_BODY,
        responses=errors(413),
        summary=f"Import a JSON or XML macro-definition file into {what}.",
    )  # fmt: skip
    router.add_api_route(
        f"{base}/{{name}}", set_macro, methods=["PUT"], response_model=MacroOut,
        name=f"set_{tag}_macro", summary=f"Create or replace one of {what}.",
    )  # fmt: skip
    router.add_api_route(
        f"{base}/{{name}}", delete_macro, methods=["DELETE"], status_code=204,
        name=f"delete_{tag}_macro", summary=f"Delete one of {what}.",
    )  # fmt: skip


_add_level("/api/v1/macros/account", _account, "account")
_add_level("/api/v1/templates/{template_id}/macros", _template, "template")
_add_level("/api/v1/users/{user_id}/macros", _user, "user")
_add_level("/api/v1/me/macros", _me, "my")
_add_level("/api/v1/jobconfigs/{jobconfig_id}/macros", _jobconfig, "jobconfig")


@router.get("/api/v1/jobconfigs/{jobconfig_id}/macros/resolved", response_model=ResolvedList)
async def resolved_macros(
    jobconfig_id: Annotated[int, Path(ge=1, le=MAX_OBJECT_ID, description="Jobconfig id.")],
    ctx: Ctx,
    caller: Caller,
    user: Annotated[
        str | None,
        Query(max_length=128, description="Submitting user (default: the caller)."),
    ] = None,
) -> Response:
    """Preview the macros a job of this jobconfig would get, with levels (secure: *****)."""
    sources, resolved = await macros.preview(ctx, caller, jobconfig_id, user)
    items = [ResolvedOut.of(m) for _, m in sorted(resolved.items())]
    body = ResolvedList(
        jobconfig_id=jobconfig_id,
        template_id=sources.template_id,
        user=sources.user_name,
        items=items,
    )
    return json_response(body)


@router.get("/api/v1/jobs/{job_id}/macros", response_model=JobMacrosOut)
async def job_macros(
    job_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="Job id.")],
    ctx: Ctx,
    caller: Caller,
) -> Response:
    """The macros a job got at initialization and the level of each (secure: null)."""
    return json_response(JobMacrosOut.of(job_id, await macros.job_record(ctx, caller, job_id)))
