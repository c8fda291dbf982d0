"""The console's package pages: upload a package, see what it holds.

``POST /packages`` is the form twin of ``POST /api/v1/packages``: the same door limits,
the same temporary copy held to ``upload_max_bytes``, the same use case
(:func:`jobyard.service.packages.upload`). Packages are shared by every user, as in the
API: any signed-in user may list, read and upload them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.responses import RedirectResponse, Response

from jobyard.core.errors import DatabaseUnavailable, InvalidInput, JobyardError
from jobyard.core.models import Package
from jobyard.service import packages
from jobyard.service.uploads import receive_upload
from jobyard.web import session as sessions
from jobyard.web.pages import (
    ctx_of,
    error_page,
    finish,
    guarded,
    int_param,
    new_router,
    path_id,
    signed_in,
    to_login,
    view,
)
from jobyard.web.uploads import error_status, form_file, human_size

router = new_router()
PACKAGES_PER_PAGE = 50
#: Messages shown on a package's page after an upload (``?done=``); a closed list.
NOTICES = {
    "created": "Package uploaded.",
    "existing": "These bytes were already stored: this is that package (nothing new stored).",
}


def entrypoint_names(package: Package | None) -> list[str]:
    """The entry points a package's manifest defines, sorted (none without a package)."""
    return sorted(package.entrypoints) if package is not None else []


async def _list_page(
    request: Request,
    resolved: sessions.Resolved,
    *,
    error: str | None = None,
    status: int = 200,
) -> Response:
    cursor = request.query_params.get("cursor") or None
    try:
        found = await packages.list_(
            ctx_of(request), cursor=cursor, limit=PACKAGES_PER_PAGE, sha256=None
        )
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    values: dict[str, Any] = {
        "nav": "jobconfigs",
        "packages": found.items,
        "next_url": f"/packages?cursor={found.next_cursor}" if found.next_cursor else None,
        "error": error,
        "max_bytes": ctx_of(request).settings.upload_max_bytes,
        "size_of": human_size,
    }
    return view(request, resolved, "packages.html", values, status=status)


@router.get("/packages")
async def packages_page(request: Request) -> Response:
    """The upload form and the packages stored, newest first."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    return await _list_page(request, resolved)


async def upload_package(
    request: Request, resolved: sessions.Resolved, upload: UploadFile
) -> tuple[Package, bool]:
    """Receive ``upload`` like the API (size limit while copying) and store it."""
    ctx = ctx_of(request)
    async with receive_upload(ctx, upload) as (tmp, _size):
        return await packages.upload(
            ctx, tmp, Path(upload.filename or "package").name, principal=resolved.principal
        )


@router.post("/packages")
async def packages_upload(request: Request) -> Response:
    """Upload a package from the form; its page shows what it holds."""
    checked = await guarded(request)
    if isinstance(checked, Response):
        return checked
    resolved, form = checked
    try:
        return await _upload_posted(request, resolved, form)
    finally:
        await form.close()  # the files of a multipart form are temporary files


async def _upload_posted(request: Request, resolved: sessions.Resolved, form: FormData) -> Response:
    """Store the posted package and answer with its page (or the form, refused)."""
    try:
        upload = form_file(form, "file")
        if upload is None:
            raise InvalidInput("choose a package file to upload", {"field": "file"})
        package, created = await upload_package(request, resolved, upload)
    except DatabaseUnavailable as exc:  # the error page says when to retry
        return error_page(request, resolved, exc)
    except JobyardError as exc:
        return await _list_page(request, resolved, error=exc.message, status=error_status(exc))
    done = "created" if created else "existing"
    response = RedirectResponse(f"/packages/{package.id}?done={done}", status_code=303)
    return finish(request, resolved, response)


@router.get("/packages/entrypoints")
async def entrypoint_field(request: Request) -> Response:
    """The entry-point field of a jobconfig form for the package chosen (an htmx
    fragment: the select follows the package select)."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    q = request.query_params
    package: Package | None = None
    error: str | None = None
    try:
        number = int_param(q.get("package_id"))
        if number is not None:
            package = await packages.get(ctx_of(request), number)
    except JobyardError as exc:
        error = exc.message
    values = {
        "entrypoints": entrypoint_names(package),
        "package": package,
        "chosen": q.get("entrypoint", ""),
        "field_error": error,
    }
    return view(request, resolved, "_entrypoint_field.html", values)


@router.get("/packages/{package_id}")
async def package_page(request: Request, package_id: str) -> Response:
    """One package: name, sha256, size, kind and its manifest's entry points."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    try:
        number = path_id(package_id, "no such package")
        package = await packages.get(ctx_of(request), number)
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    notice = NOTICES.get(request.query_params.get("done") or "")
    values = {"nav": "jobconfigs", "p": package, "notice": notice, "size_of": human_size}
    return view(request, resolved, "package.html", values)
