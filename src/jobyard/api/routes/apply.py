"""``/api/v1/apply`` and ``/api/v1/export``: configuration as code on the server.

The same document as ``jobyard apply`` (YAML or JSON), packages by the sha256 of a
package already pushed. Planning and writing live in :mod:`jobyard.service.apply`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from jobyard.api.deps import Caller, Ctx, require_principal
from jobyard.api.dto import ErrorBody
from jobyard.api.errors import error_response
from jobyard.api.routes.access import client_address
from jobyard.core.errors import InvalidInput
from jobyard.service.apply.document import (
    ApplyFile,
    SpecError,
    document_schema,
    parse_apply_data,
    parse_apply_text,
)
from jobyard.service.apply.export import export
from jobyard.service.apply.exportform import dump_yaml
from jobyard.service.apply.report import report_json
from jobyard.service.apply.run import apply_document, document_error

router = APIRouter(
    prefix="/api/v1",
    tags=["apply"],
    dependencies=[Depends(require_principal)],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)

#: Media types read as YAML (JSON is YAML too, but a JSON body is decoded as JSON).
YAML_TYPES = frozenset(
    {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"}
)
_SOURCE = "<request body>"


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


async def _document(request: Request) -> ApplyFile:
    """The body as a validated document; its problems answer 422 with each one's path
    (and line, for YAML), a body of another media type 415."""
    media = _media_type(request.headers.get("content-type"))
    body = await request.body()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the document is not UTF-8 text") from None
    try:
        if media == "application/json":
            try:
                data: Any = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidInput(
                    f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                    {"line": exc.lineno},
                ) from None
            return parse_apply_data(data, source=_SOURCE)
        if media in YAML_TYPES or media == "":
            return parse_apply_text(text, source=_SOURCE)
    except SpecError as exc:
        raise document_error(exc) from None
    raise _Unsupported(media)


class _Unsupported(Exception):
    def __init__(self, media: str) -> None:
        super().__init__(media)
        self.media = media


@router.get("/apply", summary="The JSON Schema of apply documents")
async def apply_schema() -> JSONResponse:
    """The JSON Schema of the document ``POST /api/v1/apply`` takes (as JSON; the same
    keys in YAML). Clients also use it to learn that this server applies documents."""
    return JSONResponse(document_schema())


@router.post(
    "/apply",
    summary="Apply a configuration document (or plan it with dry_run)",
    responses={
        415: {"model": ErrorBody},
        422: {
            "model": ErrorBody,
            "description": "invalid_document (details.problems: message, line, where) or "
            "apply_refused (details.report: the plan, nothing applied)",
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/yaml": {
                    "schema": {"type": "string"},
                    "example": "packages:\n  etl: {sha256: 0123…}\njobconfigs:\n"
                    "  - name: nightly-etl\n    package: etl\n    entrypoint: main\n",
                },
                "application/json": {"schema": {"$ref": "#/components/schemas/ApplyDocument"}},
            },
        }
    },
)
async def apply(
    ctx: Ctx,
    caller: Caller,
    request: Request,
    dry_run: Annotated[bool, Query(description="Answer the plan; change nothing.")] = False,
) -> Response:
    """Bring the document's templates, jobconfigs and schedules to their declared state,
    all or nothing; answers the report (the plan, with ``dry_run=true``).

    The body is the document of ``jobyard apply`` as YAML (``application/yaml``) or JSON;
    a package is given by the sha256 of a package already pushed. A document that cannot
    be planned answers 422 ``invalid_document`` naming each problem's path and line; a
    write refused midway puts back every write and answers 422 ``apply_refused`` with the
    report. Objects the caller may not view are not seen; those it may not edit fail.
    """
    try:
        document = await _document(request)
    except _Unsupported as exc:
        return error_response(
            415,
            "unsupported_media_type",
            f"send the document as application/yaml or application/json, not {exc.media!r}",
        )
    report = await apply_document(
        ctx, caller, document, dry_run=dry_run, remote_addr=client_address(request)
    )
    return JSONResponse(report_json(report))


@router.get(
    "/export",
    summary="The configuration document of the jobconfigs you may view",
    responses={
        200: {
            "content": {"application/yaml": {"schema": {"type": "string"}}},
            "description": "The document (YAML unless JSON is asked for).",
        },
        404: {"model": ErrorBody},
    },
)
async def export_document(
    ctx: Ctx,
    caller: Caller,
    request: Request,
    name: Annotated[
        list[str] | None, Query(description="Jobconfig names (repeat; default: all).")
    ] = None,
    format: Annotated[
        Literal["yaml", "json"] | None,
        Query(description="yaml or json (default: by Accept, else yaml)."),
    ] = None,
) -> Response:
    """The document that ``POST /api/v1/apply`` (or ``jobyard apply``) reads back as a
    no-op: jobconfigs with their schedules, the templates they name, packages by name
    and sha256. A named jobconfig that is missing or not viewable answers 404."""
    document = await export(ctx, caller, list(name or []))
    accept = request.headers.get("accept", "")
    as_json = format == "json" or (format is None and _prefers_json(accept))
    if as_json:
        return JSONResponse(document)
    return Response(dump_yaml(document), media_type="application/yaml")


def _prefers_json(accept: str) -> bool:
    """JSON when ``Accept`` names it before any YAML type (``*/*`` alone: YAML)."""
    for part in accept.split(","):
        media = _media_type(part)
        if media == "application/json":
            return True
        if media in YAML_TYPES:
            return False
    return False
