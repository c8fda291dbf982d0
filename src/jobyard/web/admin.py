"""The console's access-policy and audit-log pages (admins).

``/policies`` lists, grants and revokes users' access policies with names accepted
where ``jobyard policies grant`` accepts them (:mod:`jobyard.service.adminview`, made of
:mod:`jobyard.service.policies`); ``/audit`` pages through the audit log with
:func:`jobyard.service.auditlog.audit_list`, the function behind ``GET /api/v1/audit``.
Anyone else gets the API's 403 (``only admins``) before any parameter is looked at.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from starlette.responses import Response

from jobyard.core.access import ACTIONS, RESOURCES
from jobyard.core.errors import InvalidInput, JobyardError
from jobyard.service import access, adminview, auditlog, policies
from jobyard.web import session as sessions
from jobyard.web.pages import (
    address,
    ctx_of,
    error_page,
    guarded,
    new_router,
    path_id,
    signed_in,
    to_login,
    view,
)
from jobyard.web.people import NAME_MAX, done, field, is_form_error, status_of

router = new_router()

NOTICES = {"granted": "Policy granted.", "revoked": "Policy revoked."}
AUDIT_PER_PAGE = 50
#: Audit filters kept in the URL (and their bound, the API's).
AUDIT_FILTERS = {
    "actor": 200,
    "action": 64,
    "object_type": 32,
    "object_id": 200,
    "since": 40,
    "until": 40,
}
#: Object kinds offered as suggestions in the audit filter (any text is accepted).
OBJECT_KINDS = (
    "job",
    "jobconfig",
    "template",
    "schedule",
    "package",
    "macro",
    "user",
    "token",
    "policy",
)
#: Audit object kinds that have a console page of their own, by their URL prefix.
LINKED = {"job": "/jobs/", "jobconfig": "/jobconfigs/", "user": "/users/"}


# -- policies ----------------------------------------------------------------------------


async def _policies_view(
    request: Request,
    resolved: sessions.Resolved,
    *,
    error: str | None = None,
    status: int = 200,
    entered: dict[str, str] | None = None,
) -> Response:
    whose = (request.query_params.get("user") or "")[:NAME_MAX] or None
    try:
        rows, cut = await adminview.policy_listing(ctx_of(request), resolved.principal, whose)
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    values: dict[str, Any] = {
        "nav": "policies",
        "rows": rows,
        "cut": cut,
        "whose": whose,
        "actions": ACTIONS,
        "resources": RESOURCES,
        "error": error,
        "entered": entered or {"user": whose or ""},
        "notice": NOTICES.get(request.query_params.get("done") or ""),
    }
    return view(request, resolved, "policies.html", values, status=status)


@router.get("/policies")
async def policies_page(request: Request) -> Response:
    """Every user's access policies (or one user's: ``?user=``), and a grant form."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    return await _policies_view(request, resolved)


@router.post("/policies")
async def policy_grant(request: Request) -> Response:
    """Grant USER the ACTION on RESOURCE objects matching SELECTOR (names or ids)."""
    checked = await guarded(request)
    if isinstance(checked, Response):
        return checked
    resolved, form = checked
    entered: dict[str, str] = {}
    try:
        access.require_admin_route(resolved.principal)
        entered = {
            "user": field(form, "user", limit=NAME_MAX, label="the user name").strip(),
            "action": field(form, "action", limit=20, label="the action"),
            "resource": field(form, "resource", limit=20, label="the resource"),
            "selector": field(form, "selector", limit=NAME_MAX + 9, label="the selector"),
        }
        if not entered["selector"].strip():
            raise InvalidInput(
                "give a selector: a name or id, '*' (all), or template:<name or id>",
                {"field": "selector"},
            )
        user, _policy = await adminview.grant_named(
            ctx_of(request),
            resolved.principal,
            user_name=entered["user"],
            action=entered["action"],
            resource=entered["resource"],
            selector=entered["selector"],
            remote_addr=address(request),
        )
    except JobyardError as exc:
        # A name that names nothing is a mistake in the form too (only admins get here).
        if not is_form_error(exc) and status_of(exc) != 404:
            return error_page(request, resolved, exc)
        return await _policies_view(
            request, resolved, error=exc.message, status=status_of(exc), entered=entered
        )
    where = "/policies?" + urlencode({"user": user.name, "done": "granted"})
    return done(request, resolved, where)


@router.post("/policies/{user_id}/{policy_id}/revoke")
async def policy_revoke(request: Request, user_id: str, policy_id: str) -> Response:
    """Revoke one of a user's policies (``DELETE /api/v1/users/{id}/policies/{pid}``)."""
    checked = await guarded(request)
    if isinstance(checked, Response):
        return checked
    resolved, form = checked
    try:
        access.require_admin_route(resolved.principal)
        uid = path_id(user_id, "no such user")
        pid = path_id(policy_id, "no such policy")
        await policies.revoke(
            ctx_of(request), resolved.principal, uid, pid, remote_addr=address(request)
        )
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    back = form.get("user")
    whose = {"user": back[:NAME_MAX]} if isinstance(back, str) and back else {}
    return done(request, resolved, "/policies?" + urlencode({**whose, "done": "revoked"}))


# -- audit log ---------------------------------------------------------------------------


def _when(value: str | None, name: str) -> datetime | None:
    """A time of the audit filter: ISO 8601 (what ``datetime-local`` sends), UTC when it
    names no zone."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{name}: {value[:40]!r} is not a time: use YYYY-MM-DDTHH:MM (UTC)", {"field": name}
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def details_text(details: dict[str, Any] | None) -> str:
    """An entry's details as one line of JSON (empty when there are none)."""
    if not details:
        return ""
    return json.dumps(details, sort_keys=True, separators=(", ", ": "), default=str)


@router.get("/audit")
async def audit_page(request: Request) -> Response:
    """The audit log, newest first, filtered by actor, action, object and time, paged."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    q = request.query_params
    kept = {k: q[k][:limit] for k, limit in AUDIT_FILTERS.items() if q.get(k)}
    try:
        access.require_admin_route(resolved.principal)
        flt = auditlog.audit_filter(
            actor=kept.get("actor"),
            action=kept.get("action"),
            object_type=kept.get("object_type"),
            object_id=kept.get("object_id"),
            since=_when(kept.get("since"), "since"),
            until=_when(kept.get("until"), "until"),
        )
        found = await auditlog.audit_list(
            ctx_of(request),
            resolved.principal,
            flt,
            cursor=q.get("cursor") or None,
            limit=AUDIT_PER_PAGE,
        )
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    next_url = None
    if found.next_cursor is not None:
        next_url = "/audit?" + urlencode({**kept, "cursor": found.next_cursor})
    values = {
        "nav": "audit",
        "entries": found.items,
        "filters": kept,
        "kinds": OBJECT_KINDS,
        "linked": LINKED,
        "details_text": details_text,
        "next_url": next_url,
        "newest_url": "/audit?" + urlencode(kept) if kept else "/audit",
        "first_page": not q.get("cursor"),
    }
    return view(request, resolved, "audit.html", values)
