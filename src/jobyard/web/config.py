"""A jobconfig's configuration tabs: macros, schedules (with a live cron preview), YAML.

Every page and action calls one function of :mod:`jobyard.service.configview` with the
signed-in principal; those call the use cases behind the REST routes, so access rules
and error messages are the API's. An action that fails shows its page again with the
error and the API's status (422, 403, 409); a jobconfig the user may not view answers
the 404 of a missing one. Secure macro values are never rendered: the service hands
over secure macros without their value, and a form that failed is refilled with a
name only.
"""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import available_timezones

from fastapi import Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from jobyard.core.errors import InvalidInput, JobyardError, NotFound
from jobyard.service import configview
from jobyard.service.apply.report import ApplyReport, report_json
from jobyard.web import session as sessions
from jobyard.web.pages import (
    STATUS_OF,
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

router = new_router()

#: Time zones offered by the schedule form's list (any IANA name is accepted).
ZONES: list[str] = sorted(available_timezones())

#: Headings and who-may-what of each macro level, by the key in the console's URLs.
LEVEL_TITLES = {
    "account": "Account macros",
    "template": "Template macros",
    "user": "Your user macros",
    "jobconfig": "Jobconfig macros",
}
LEVEL_NOTES = {
    "account": "Public: every user reads them; admins change them.",
    "template": "Of this jobconfig's template: they follow the template's permissions.",
    "user": "Private: only you (and admins) read them. Jobs you submit get them.",
    "jobconfig": "Of this jobconfig: they follow its permissions.",
}
#: Messages shown after an action (``?done=``); a closed list.
NOTICES = {
    "macro-set": "Macro saved.",
    "macro-deleted": "Macro deleted.",
    "schedule-created": "Schedule added.",
    "schedule-enabled": "Schedule enabled.",
    "schedule-disabled": "Schedule disabled.",
    "schedule-deleted": "Schedule deleted.",
}


def status_of(exc: JobyardError) -> int:
    """The HTTP status the API answers for ``exc``."""
    return next((s for cls, s in STATUS_OF if isinstance(exc, cls)), 400)


def text(form: FormData, name: str) -> str:
    """A text field of a form ("" when missing, or when a file was sent instead)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("done") or "")


# -- macros --------------------------------------------------------------------------------


async def _macros_page(
    request: Request,
    resolved: sessions.Resolved,
    jobconfig_id: str,
    *,
    error: JobyardError | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    try:
        number = path_id(jobconfig_id, "no such jobconfig")
        shown = await configview.macros_view(ctx_of(request), resolved.principal, number)
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    values: dict[str, Any] = {
        "nav": "jobconfigs",
        "tab": "macros",
        "jc": shown.jobconfig,
        "levels": shown.levels,
        "resolved": shown.resolved,
        "resolved_for": shown.resolved_for,
        "titles": LEVEL_TITLES,
        "notes": LEVEL_NOTES,
        "notice": None if error else _notice(request),
        "error": error.message if error else None,
        "form": form,
    }
    return view(
        request,
        resolved,
        "jobconfig_macros.html",
        values,
        status=status_of(error) if error else 200,
    )


@router.get("/jobconfigs/{jobconfig_id}/macros")
async def macros_page(request: Request, jobconfig_id: str) -> Response:
    """The macros of every level that applies to the jobconfig, and what a job gets."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    return await _macros_page(request, resolved, jobconfig_id)


@router.post("/jobconfigs/{jobconfig_id}/macros/{level}/{action}")
async def macro_action(request: Request, jobconfig_id: str, level: str, action: str) -> Response:
    """Set or delete a macro of one level, like ``PUT``/``DELETE .../macros/{name}``."""
    checked = await guarded(request)
    if isinstance(checked, Response):
        return checked
    resolved, form = checked
    name, value, secure = (
        text(form, "name").strip(),
        text(form, "value"),
        bool(text(form, "secure")),
    )
    ctx, who = ctx_of(request), resolved.principal
    try:
        number = path_id(jobconfig_id, "no such jobconfig")
        if level not in configview.LEVEL_KEYS or action not in ("set", "delete"):
            raise NotFound("no such page")
        if action == "set":
            await configview.set_macro(
                ctx, who, number, level, name, value, secure=secure, remote_addr=address(request)
            )
            done = "macro-set"
        else:
            await configview.delete_macro(
                ctx, who, number, level, name, remote_addr=address(request)
            )
            done = "macro-deleted"
    except NotFound as exc:
        return error_page(request, resolved, exc)
    except JobyardError as exc:
        # Shown again with the error and the name only: the value may be meant as a
        # secret (the name may be secure already, the box unticked by mistake).
        again = {"level": level, "name": name}
        return await _macros_page(request, resolved, jobconfig_id, error=exc, form=again)
    where = f"/jobconfigs/{number}/macros?done={done}#level-{level}"
    return finish(request, resolved, RedirectResponse(where, status_code=303))


# -- schedules -----------------------------------------------------------------------------

#: The schedule form's fields and their values on a fresh page.
EMPTY_SCHEDULE_FORM = {"cron": "", "every": "", "timezone": "UTC", "name": ""}


async def _schedules_page(
    request: Request,
    resolved: sessions.Resolved,
    jobconfig_id: str,
    *,
    error: JobyardError | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    try:
        number = path_id(jobconfig_id, "no such jobconfig")
        shown = await configview.schedules_view(ctx_of(request), resolved.principal, number)
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    values: dict[str, Any] = {
        "nav": "jobconfigs",
        "tab": "schedules",
        "jc": shown.jobconfig,
        "schedules": shown.schedules,
        "may_edit": shown.may_edit,
        "zones": ZONES,
        "notice": None if error else _notice(request),
        "error": error.message if error else None,
        "form": form or EMPTY_SCHEDULE_FORM,
    }
    if form and form.get("cron"):  # a refused form shows the preview of its expression
        values.update(await _preview(request, resolved, number, form["cron"], form["timezone"]))
    return view(
        request,
        resolved,
        "jobconfig_schedules.html",
        values,
        status=status_of(error) if error else 200,
    )


@router.get("/jobconfigs/{jobconfig_id}/schedules")
async def schedules_page(request: Request, jobconfig_id: str) -> Response:
    """The jobconfig's schedules, and a form to add one with a live cron preview."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    return await _schedules_page(request, resolved, jobconfig_id)


async def _preview(
    request: Request, resolved: sessions.Resolved, number: int, expr: str, zone: str
) -> dict[str, Any]:
    """The values of ``_cron_preview.html``: fire times, or the API's error message."""
    if not expr.strip():
        return {}
    try:
        times = await configview.cron_preview(
            ctx_of(request), resolved.principal, number, expr, zone
        )
    except InvalidInput as exc:  # the expression or the zone (a hidden jobconfig: NotFound)
        return {"preview_error": exc.message}
    return {"preview_times": times, "preview_zone": zone.strip() or "UTC", "preview_done": True}


@router.get("/jobconfigs/{jobconfig_id}/schedules/preview")
async def cron_preview(request: Request, jobconfig_id: str) -> Response:
    """An htmx fragment: the next fire times of the cron field as it is typed, or the
    error ``GET /api/v1/cron/next`` would answer (always 200: the fragment shows it)."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    q = request.query_params
    try:
        number = path_id(jobconfig_id, "no such jobconfig")
        values = await _preview(request, resolved, number, q.get("cron", ""), q.get("timezone", ""))
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    return view(request, resolved, "_cron_preview.html", values)


@router.post("/jobconfigs/{jobconfig_id}/schedules")
async def schedule_create(request: Request, jobconfig_id: str) -> Response:
    """Add a schedule, like ``POST /api/v1/jobconfigs/{id}/schedules``."""
    checked = await guarded(request)
    if isinstance(checked, Response):
        return checked
    resolved, form = checked
    given = {k: text(form, k) for k in EMPTY_SCHEDULE_FORM}
    try:
        number = path_id(jobconfig_id, "no such jobconfig")
        await configview.create_schedule(
            ctx_of(request),
            resolved.principal,
            number,
            cron=given["cron"],
            every=given["every"],
            timezone=given["timezone"],
            name=given["name"],
            remote_addr=address(request),
        )
    except NotFound as exc:
        return error_page(request, resolved, exc)
    except JobyardError as exc:
        return await _schedules_page(request, resolved, jobconfig_id, error=exc, form=given)
    where = f"/jobconfigs/{number}/schedules?done=schedule-created"
    return finish(request, resolved, RedirectResponse(where, status_code=303))


@router.post("/jobconfigs/{jobconfig_id}/schedules/{schedule_id}/{action}")
async def schedule_action(
    request: Request, jobconfig_id: str, schedule_id: str, action: str
) -> Response:
    """Enable, disable or delete a schedule (the API's resume, pause and delete)."""
    checked = await guarded(request)
    if isinstance(checked, Response):
        return checked
    resolved, _ = checked
    try:
        number = path_id(jobconfig_id, "no such jobconfig")
        schedule = path_id(schedule_id, "no such schedule")
        await configview.change_schedule(
            ctx_of(request), resolved.principal, number, schedule, action,
            remote_addr=address(request),
        )  # fmt: skip
    except NotFound as exc:
        return error_page(request, resolved, exc)
    except JobyardError as exc:
        return await _schedules_page(request, resolved, jobconfig_id, error=exc)
    done = {"enable": "schedule-enabled", "disable": "schedule-disabled"}.get(
        action, "schedule-deleted"
    )
    where = f"/jobconfigs/{number}/schedules?done={done}"
    return finish(request, resolved, RedirectResponse(where, status_code=303))


# -- YAML through server-side apply --------------------------------------------------------


def shown(value: Any) -> str:
    """A field value of a plan as one line of text (lists and maps as compact JSON)."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def plan_view(plan: dict[str, Any]) -> dict[str, Any]:
    """The report of ``POST /api/v1/apply`` with its values as text, for the template."""

    def changes(items: list[dict[str, Any]]) -> list[dict[str, str]]:
        return [
            {"field": c["field"], "old": shown(c["old"]), "new": shown(c["new"])} for c in items
        ]

    def item(it: dict[str, Any]) -> dict[str, Any]:
        out = {**it, "changes": changes(it.get("changes") or [])}
        if it.get("schedules") is not None:
            out["schedules"] = [
                {**s, "changes": changes(s.get("changes") or [])} for s in it["schedules"]
            ]
        return out

    return {
        **plan,
        "templates": [item(t) for t in plan.get("templates", [])],
        "jobconfigs": [item(j) for j in plan.get("jobconfigs", [])],
    }


def _changes_anything(plan: dict[str, Any]) -> bool:
    items = [*plan.get("templates", []), *plan.get("jobconfigs", [])]
    schedules = [s for it in items for s in it.get("schedules") or []]
    return any(x["action"] != "unchanged" for x in [*items, *schedules]) or any(
        p.get("state") not in ("unchanged", None) for p in plan.get("packages", [])
    )


async def _yaml_page(
    request: Request,
    resolved: sessions.Resolved,
    jobconfig_id: str,
    *,
    document: str | None = None,
    report: dict[str, Any] | None = None,
    planned: configview.Planned | None = None,
    error: JobyardError | None = None,
    notice: str | None = None,
) -> Response:
    try:
        number = path_id(jobconfig_id, "no such jobconfig")
        jc, exported = await configview.yaml_document(ctx_of(request), resolved.principal, number)
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    details = error.details if error else {}
    if report is None and isinstance(details.get("report"), dict):
        report = details["report"]  # a refused apply: the plan with the failed item
    values: dict[str, Any] = {
        "nav": "jobconfigs",
        "tab": "yaml",
        "jc": jc,
        "document": exported if document is None else document,
        "plan": plan_view(report) if report else None,
        "changes": _changes_anything(report) if report else False,
        "planned": planned,
        "error": error.message if error else None,
        "problems": details.get("problems") if isinstance(details.get("problems"), list) else None,
        "notice": notice,
    }
    return view(
        request, resolved, "jobconfig_yaml.html", values, status=status_of(error) if error else 200
    )


@router.get("/jobconfigs/{jobconfig_id}/yaml")
async def yaml_page(request: Request, jobconfig_id: str) -> Response:
    """The jobconfig as its apply document (``jobyard export``), to edit, plan and apply."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    return await _yaml_page(request, resolved, jobconfig_id)


@router.post("/jobconfigs/{jobconfig_id}/yaml")
async def yaml_submit(request: Request, jobconfig_id: str) -> Response:
    """Plan the posted document (a dry run), or apply it when it is the one planned."""
    checked = await guarded(request)
    if isinstance(checked, Response):
        return checked
    resolved, form = checked
    document, op = text(form, "document"), text(form, "op")
    ctx, who = ctx_of(request), resolved.principal
    planned: configview.Planned | None = None
    try:
        number = path_id(jobconfig_id, "no such jobconfig")
        if op == "apply":
            done: ApplyReport = await configview.apply_yaml(
                ctx,
                who,
                number,
                document,
                document_sha256=text(form, "document_sha256"),
                plan_sha256=text(form, "plan_sha256"),
                remote_addr=address(request),
            )
            # Applied: the page shows what was done and the document as it is now.
            return await _yaml_page(
                request, resolved, jobconfig_id, report=report_json(done), notice="Applied."
            )
        planned = await configview.plan_yaml(ctx, who, number, document)
    except NotFound as exc:
        return error_page(request, resolved, exc)
    except configview.PlanChanged as exc:
        # Plan it again so that the new plan can be applied after review.
        try:
            planned = await configview.plan_yaml(ctx, who, number, document)
        except JobyardError:
            planned = None
        report = report_json(planned.report) if planned else None
        return await _yaml_page(
            request, resolved, jobconfig_id, document=document, report=report,
            planned=planned, error=exc,
        )  # fmt: skip
    except JobyardError as exc:
        return await _yaml_page(request, resolved, jobconfig_id, document=document, error=exc)
    failed = planned.report.failed
    return await _yaml_page(
        request,
        resolved,
        jobconfig_id,
        document=document,
        report=report_json(planned.report),
        planned=None if failed else planned,
    )
