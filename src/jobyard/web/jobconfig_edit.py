"""Create a jobconfig, and edit its settings, from the console.

``/jobconfigs/new`` is the form twin of ``POST /api/v1/jobconfigs`` and
``/jobconfigs/{id}/settings`` of ``PATCH /api/v1/jobconfigs/{id}``: the same use cases
(:func:`jobyard.service.jobconfigs.create`, :func:`~jobyard.service.jobconfigs.patch`)
with the signed-in principal, so the same access rules, checks and audit. A refused
form comes back as it was typed, with the error next to its field and the API's status.
The package is picked from the stored ones or uploaded with the form (the API's upload
use case), and the entry point from the package's manifest.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from jobyard.core.errors import DatabaseUnavailable, InvalidInput, JobyardError, NotFound
from jobyard.core.models import JobConfig, JobConfigSpec, Package
from jobyard.service import jobconfigs, packages
from jobyard.web import session as sessions
from jobyard.web.jobconfig_forms import (
    blank_values,
    error_field,
    parse,
    settings_changes,
    values_from,
    values_of,
)
from jobyard.web.packages import entrypoint_names, upload_package
from jobyard.web.pages import (
    address,
    ctx_of,
    error_page,
    finish,
    guarded,
    new_router,
    path_id,
    signed_in,
    to_login,
    view,
)
from jobyard.web.uploads import error_status, form_file, human_size

router = new_router()
#: Packages offered in the form's select, newest first (an older one can still be
#: chosen from its own page: "New jobconfig from this package").
PACKAGES_OFFERED = 100


async def _offered(request: Request, chosen: int | None) -> tuple[list[Package], Package | None]:
    """The packages of the select, and the chosen one (kept even when older than those)."""
    ctx = ctx_of(request)
    listed = list((await packages.list_(ctx, cursor=None, limit=PACKAGES_OFFERED)).items)
    package = next((p for p in listed if p.id == chosen), None)
    if chosen is not None and package is None:
        try:
            package = await packages.get(ctx, chosen)
            listed.append(package)
        except NotFound:
            package = None
    return listed, package


async def _form(
    request: Request,
    resolved: sessions.Resolved,
    values: dict[str, str],
    *,
    jc: JobConfig | None = None,
    exc: JobyardError | None = None,
    status: int = 200,
    notice: str | None = None,
) -> Response:
    """The jobconfig form: new (``jc`` None) or the settings of ``jc``."""
    chosen = values.get("package_id", "")
    try:
        listed, package = await _offered(request, int(chosen) if chosen.isdigit() else None)
    except JobyardError as failure:
        return error_page(request, resolved, failure)
    field = error_field(exc) if exc is not None else None
    form_values: dict[str, Any] = {
        "nav": "jobconfigs",
        "jc": jc,
        "values": values,
        "packages": listed,
        "package": package,
        "entrypoints": entrypoint_names(package),
        "error": exc.message if exc is not None else None,
        "error_field": field,
        "notice": notice,
        "max_bytes": ctx_of(request).settings.upload_max_bytes,
        "size_of": human_size,
    }
    return view(request, resolved, "jobconfig_form.html", form_values, status=status)


@router.get("/jobconfigs/new")
async def new_jobconfig(request: Request) -> Response:
    """The form of a new jobconfig (``?package_id=`` picks the package)."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    values = blank_values()
    values["package_id"] = request.query_params.get("package_id", "")[:20]
    return await _form(request, resolved, values)


@router.post("/jobconfigs/new")
async def create_jobconfig(request: Request) -> Response:
    """Create the jobconfig (uploading its package first when one is attached)."""
    checked = await guarded(request)
    if isinstance(checked, Response):
        return checked
    resolved, form = checked
    try:
        return await _create(request, resolved, form)
    finally:
        await form.close()  # the files of a multipart form are temporary files


async def _create(request: Request, resolved: sessions.Resolved, form: FormData) -> Response:
    """Create the jobconfig the form describes (or show the form again, refused)."""
    values = blank_values()
    try:
        values = values_of(form)
        upload = form_file(form, "package_file")
        if upload is not None:
            package, _created = await upload_package(request, resolved, upload)
            # The form now names the uploaded package: kept if anything else is refused.
            values["package_id"] = str(package.id)
            if values["entrypoint"] not in package.entrypoints:
                values["entrypoint"] = ""
        parsed = parse(values)
        if parsed["package_id"] is None:
            raise InvalidInput(
                "choose a package for the jobconfig to run, or upload one",
                {"field": "package_id"},
            )
        who = resolved.principal
        created = await jobconfigs.create(
            ctx_of(request),
            JobConfigSpec(**parsed),
            owner=who.name,
            principal=who,
            remote_addr=address(request),
        )
    except DatabaseUnavailable as exc:  # the error page says when to retry
        return error_page(request, resolved, exc)
    except JobyardError as exc:
        return await _form(request, resolved, values, exc=exc, status=error_status(exc))
    response = RedirectResponse(f"/jobconfigs/{created.id}", status_code=303)
    return finish(request, resolved, response)


@router.get("/jobconfigs/{jobconfig_id}/settings")
async def settings_page(request: Request, jobconfig_id: str) -> Response:
    """A jobconfig's settings form, for users who may edit it (the API's 403 or 404
    for the others)."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    try:
        number = path_id(jobconfig_id, "no such jobconfig")
        jc = await jobconfigs.get(ctx_of(request), resolved.principal, number, "edit")
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    notice = "Settings saved." if request.query_params.get("done") == "saved" else None
    return await _form(request, resolved, values_from(jc), jc=jc, notice=notice)


@router.post("/jobconfigs/{jobconfig_id}/settings")
async def save_settings(request: Request, jobconfig_id: str) -> Response:
    """Save the fields that changed, like ``PATCH /api/v1/jobconfigs/{id}``."""
    checked = await guarded(request)
    if isinstance(checked, Response):
        return checked
    resolved, form = checked
    try:
        return await _save(request, resolved, form, jobconfig_id)
    finally:
        await form.close()  # the files of a multipart form are temporary files


async def _save(
    request: Request, resolved: sessions.Resolved, form: FormData, jobconfig_id: str
) -> Response:
    """Patch what changed (or show the form again, refused)."""
    ctx, who = ctx_of(request), resolved.principal
    try:
        number = path_id(jobconfig_id, "no such jobconfig")
        current = await jobconfigs.get(ctx, who, number, "edit")
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    values = values_from(current)
    try:
        values = values_of(form)
        changes = settings_changes(current, parse(values))
        await jobconfigs.patch(ctx, who, number, changes, remote_addr=address(request))
    except JobyardError as exc:
        status = error_status(exc)
        if status in (403, 404, 503):  # lost the right meanwhile, or an outage: no form
            return error_page(request, resolved, exc)
        return await _form(request, resolved, values, jc=current, exc=exc, status=status)
    response = RedirectResponse(f"/jobconfigs/{number}/settings?done=saved", status_code=303)
    return finish(request, resolved, response)
