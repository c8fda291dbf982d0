"""The console's pages: login, logout, dashboard, jobs, jobconfigs.

Every handler resolves the session (:mod:`jobyard.web.session`), then calls one use
case with its principal. State changes (``POST``) pass :func:`_guarded` first: the
session, the same-origin check and the CSRF token. Domain errors become an error page
with the status the API would answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response, StreamingResponse

from jobyard.core.errors import (
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    InvalidInput,
    JobyardError,
    NotFound,
    Unauthorized,
)
from jobyard.core.jobs import TERMINAL, JobStatus
from jobyard.service import jobs, logs, overview
from jobyard.service.context import Context
from jobyard.service.users import TooManyAttempts, lifetimes
from jobyard.web import session as sessions
from jobyard.web.guard import (
    CSRF_FIELD,
    CSRF_HEADER,
    clear_session_cookie,
    same_origin,
    set_session_cookie,
)
from jobyard.web.paths import safe_next
from jobyard.web.render import page, static_response


class _ConsoleRoute(APIRoute):
    """A console route: a domain error that escapes its handler (a database outage while
    the session is checked, say) becomes an error page, not the API's JSON body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except JobyardError as exc:
                return _error(request, None, exc)

        return run


router = APIRouter(include_in_schema=False, route_class=_ConsoleRoute)

JOBS_PER_PAGE = 50
#: Largest value accepted for an id in a console URL (the API's bound as well).
MAX_ID = 2**63 - 1
STATUS_OF: list[tuple[type[JobyardError], int]] = [
    (InvalidInput, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Unauthorized, 401),
    (Forbidden, 403),
    (DatabaseUnavailable, 503),
]


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


def _max_age(ctx: Context) -> int:
    return int(lifetimes(ctx.settings)[1].total_seconds())


def _to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    where = f"/login?next={quote(target, safe='')}"
    if request.headers.get("hx-request") == "true":
        # A page refreshing itself (htmx polling): the whole page goes to the login,
        # instead of the login form being swapped into a part of it.
        return Response(status_code=204, headers={"HX-Redirect": where})
    return RedirectResponse(where, status_code=303)


async def _signed_in(request: Request) -> sessions.Resolved | None:
    found = sessions.Session.decode(request.cookies.get(sessions.COOKIE))
    if found is None:
        return None
    renewals: sessions.Renewals = request.app.state.console_renewals
    try:
        return await sessions.resolve(_ctx(request), found, renewals)
    except Unauthorized:
        return None


def _finish(request: Request, resolved: sessions.Resolved, response: Response) -> Response:
    """Set the rotated cookie on ``response`` when the session's tokens were refreshed."""
    if resolved.renewed:
        set_session_cookie(response, request, resolved.session, _max_age(_ctx(request)))
    return response


def _view(
    request: Request,
    resolved: sessions.Resolved,
    template: str,
    values: dict[str, Any],
    *,
    status: int = 200,
) -> Response:
    common = {"user": resolved.principal, "csrf_token": resolved.session.csrf}
    return _finish(request, resolved, page(request, template, {**common, **values}, status=status))


def _error(request: Request, resolved: sessions.Resolved | None, exc: JobyardError) -> Response:
    status = next((s for cls, s in STATUS_OF if isinstance(exc, cls)), 400)
    values = {"status": status, "message": exc.message}
    response: Response
    if resolved is None:
        response = page(request, "error.html", values, status=status)
    else:
        response = _view(request, resolved, "error.html", values, status=status)
    if isinstance(exc, DatabaseUnavailable):  # a retry will do: say when
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _refuse(request: Request, message: str) -> Response:
    return page(request, "error.html", {"status": 403, "message": message}, status=403)


async def _guarded(request: Request) -> tuple[sessions.Resolved, FormData] | Response:
    """The session of a state-changing request that came from a console page, or 403.

    Refused: another origin (``Origin``/``Sec-Fetch-Site``), no session, and a missing
    or wrong CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``).
    """
    why = same_origin(request)
    if why is not None:
        return _refuse(request, f"refused: {why}")
    resolved = await _signed_in(request)
    if resolved is None:
        return _refuse(request, "refused: you are not logged in (or your session ended)")
    form = await request.form()
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        field = form.get(CSRF_FIELD)
        sent = field if isinstance(field, str) else None
    if not sessions.csrf_matches(resolved.session, sent):
        return _refuse(request, "refused: missing or wrong CSRF token; reload the page")
    return resolved, form


# -- static files ----------------------------------------------------------------------


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    """A vendored or console static file (a closed list)."""
    return static_response(name)


# -- login, logout ---------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request) -> Response:
    """The login form (a signed-in user goes straight on)."""
    target = safe_next(request.query_params.get("next"))
    resolved = await _signed_in(request)
    if resolved is not None:
        return _finish(request, resolved, RedirectResponse(target, status_code=303))
    return page(request, "login.html", {"next": target, "name": "", "error": None})


@router.post("/login")
async def login_submit(request: Request) -> Response:
    """Check the form like ``POST /api/v1/login`` and start a session cookie."""
    why = same_origin(request)
    if why is not None:
        return _refuse(request, f"refused: {why}")
    form = await request.form()
    name, password, target = (form.get(k) for k in ("name", "password", "next"))
    name = name if isinstance(name, str) else ""
    password = password if isinstance(password, str) else ""
    target = safe_next(target if isinstance(target, str) else None)
    ctx = _ctx(request)
    values: dict[str, Any] = {"next": target, "name": name}
    try:
        started = await sessions.start(ctx, name, password, address=_address(request))
    except TooManyAttempts as exc:
        minutes = math.ceil(exc.retry_after / 60)
        wait = f"{exc.retry_after} s" if exc.retry_after < 120 else f"{minutes} min"
        values["error"] = f"Too many failed logins. Try again in {wait}."
        headers = {"Retry-After": str(exc.retry_after)}
        return page(request, "login.html", values, status=429, headers=headers)
    except Unauthorized:
        values["error"] = "Wrong user name or password."
        return page(request, "login.html", values, status=401)
    except DatabaseUnavailable as exc:
        return _error(request, None, exc)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, started, _max_age(ctx))
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Revoke the session's tokens and forget the cookie."""
    guarded = await _guarded(request)
    if isinstance(guarded, Response):
        return guarded
    resolved, _ = guarded
    await sessions.end(_ctx(request), resolved)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, request)
    return response


# -- pages -----------------------------------------------------------------------------


@router.get("/")
async def dashboard(request: Request) -> Response:
    """Counts, throughput and failures, running jobs, latest failures."""
    resolved = await _signed_in(request)
    if resolved is None:
        return _to_login(request)
    try:
        board = await overview.dashboard(_ctx(request), resolved.principal)
    except JobyardError as exc:
        return _error(request, resolved, exc)
    return _view(
        request,
        resolved,
        "dashboard.html",
        {"board": board, "nav": "dashboard", "open_limit": overview.OPEN_COUNT_LIMIT},
    )


def _int_param(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit() or not 0 < int(value) <= MAX_ID:
        raise InvalidInput(f"expected a positive whole number, got {value[:40]!r}")
    return int(value)


def _path_id(value: str, missing: str) -> int:
    """The id in a page's path; an empty one is ``NotFound(missing)``, a malformed one 422."""
    number = _int_param(value)
    if number is None:
        raise NotFound(missing)
    return number


@router.get("/jobs")
async def jobs_page(request: Request) -> Response:
    """Jobs the user may view, newest first, by status, jobconfig, user and age, paged."""
    resolved = await _signed_in(request)
    if resolved is None:
        return _to_login(request)
    q = request.query_params
    kept = {k: q[k] for k in ("status", "jobconfig", "user", "since") if q.get(k)}
    try:
        found = await overview.job_list(
            _ctx(request),
            resolved.principal,
            status=kept.get("status"),
            jobconfig_id=_int_param(kept.get("jobconfig")),
            submitted_by=kept.get("user"),
            since=kept.get("since"),
            cursor=q.get("cursor") or None,
            limit=JOBS_PER_PAGE,
        )
    except JobyardError as exc:
        return _error(request, resolved, exc)
    next_url = None
    if found.next_cursor is not None:
        next_url = "/jobs?" + urlencode({**kept, "cursor": found.next_cursor})
    values = {
        "nav": "jobs",
        "jobs": found.jobs,
        "names": found.jobconfig_names,
        "statuses": list(JobStatus.__members__),
        "ranges": {
            "1h": "last hour",
            "24h": "last 24 h",
            "7d": "last 7 days",
            "30d": "last 30 days",
        },
        "filters": kept,
        "jobconfig": _int_param(kept.get("jobconfig")),
        "newest_url": "/jobs?" + urlencode(kept) if kept else "/jobs",
        "self_url": "/jobs" + (f"?{request.url.query}" if request.url.query else ""),
        "next_url": next_url,
        "first_page": not q.get("cursor"),
    }
    return _view(request, resolved, "jobs.html", values)


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: str) -> Response:
    """One job: status timeline, end of its log, Cancel / Abort when allowed."""
    resolved = await _signed_in(request)
    if resolved is None:
        return _to_login(request)
    try:
        number = _path_id(job_id, "no such job")
        detail = await overview.job_detail(_ctx(request), resolved.principal, number)
    except JobyardError as exc:
        return _error(request, resolved, exc)
    notice = request.query_params.get("done")
    return _view(
        request,
        resolved,
        "job.html",
        {
            "nav": "jobs",
            "d": detail,
            "ended": detail.job.status in TERMINAL,
            "notice": NOTICES.get(notice or ""),
        },
    )


@router.get("/jobconfigs")
async def jobconfigs_page(request: Request) -> Response:
    """The jobconfigs the user may view, searchable, with the status of their newest job."""
    resolved = await _signed_in(request)
    if resolved is None:
        return _to_login(request)
    search = request.query_params.get("q", "")[:200]
    try:
        rows, cut = await overview.jobconfig_list(_ctx(request), resolved.principal, search=search)
    except JobyardError as exc:
        return _error(request, resolved, exc)
    values = {"nav": "jobconfigs", "rows": rows, "cut": cut, "q": search}
    return _view(request, resolved, "jobconfigs.html", values)


@router.get("/jobconfigs/{jobconfig_id}")
async def jobconfig_page(request: Request, jobconfig_id: str) -> Response:
    """One jobconfig: its settings and its newest jobs."""
    resolved = await _signed_in(request)
    if resolved is None:
        return _to_login(request)
    try:
        number = _path_id(jobconfig_id, "no such jobconfig")
        detail = await overview.jobconfig_detail(_ctx(request), resolved.principal, number)
    except JobyardError as exc:
        return _error(request, resolved, exc)
    return _view(request, resolved, "jobconfig.html", {"nav": "jobconfigs", "d": detail})


@router.get("/jobs/{job_id}/log")
async def job_log(request: Request, job_id: str) -> Response:
    """Download a job's whole log as a text file (what the API's log route streams)."""
    resolved = await _signed_in(request)
    if resolved is None:
        return _to_login(request)
    ctx = _ctx(request)
    try:
        number = _path_id(job_id, "no such job")
        _job, key = await logs.open_log(ctx, resolved.principal, number)
    except JobyardError as exc:
        return _error(request, resolved, exc)
    response = StreamingResponse(
        logs.stream_log(ctx, number, key, offset=0, follow=False),
        media_type="text/plain; charset=utf-8",
        headers={
            **DOWNLOAD_HEADERS,
            "Content-Disposition": f'attachment; filename="job-{number}.log"',
        },
    )
    return _finish(request, resolved, response)


#: A downloaded file is data, never a page: not sniffed, not cached, scripts off.
DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


#: Messages shown on a job page after an action (``?done=``); a closed list.
NOTICES = {
    "cancelled": "Job cancelled.",
    "aborted": "Abort requested: the job is stopping.",
    "rerun": "Rerun submitted: this is the new job.",
    "submitted": "Job submitted.",
}


@router.post("/jobs/{job_id}/{action}")
async def job_action(request: Request, job_id: str, action: str) -> Response:
    """Cancel, abort or rerun a job through the same use cases as the API."""
    guarded = await _guarded(request)
    if isinstance(guarded, Response):
        return guarded
    resolved, _ = guarded
    ctx, who = _ctx(request), resolved.principal
    try:
        number = _int_param(job_id)
        if number is None or action not in ("cancel", "abort", "rerun"):
            raise NotFound("no such page")
        if action == "cancel":
            await jobs.cancel(ctx, who, number, remote_addr=_address(request))
            done = "cancelled"
        elif action == "abort":
            await jobs.abort(ctx, who, number, wait_seconds=0, remote_addr=_address(request))
            done = "aborted"
        else:
            number = (await jobs.rerun(ctx, who, number, remote_addr=_address(request))).id
            done = "rerun"
    except JobyardError as exc:
        return _error(request, resolved, exc)
    response = RedirectResponse(f"/jobs/{number}?done={done}", status_code=303)
    return _finish(request, resolved, response)


#: Form fields of the Run form that carry a parameter's value: ``param:NAME``.
PARAM_PREFIX = "param:"


@router.post("/jobconfigs/{jobconfig_id}/run")
async def jobconfig_run(request: Request, jobconfig_id: str) -> Response:
    """Run a jobconfig now, with values for its declared parameters (empty: not set)."""
    guarded = await _guarded(request)
    if isinstance(guarded, Response):
        return guarded
    resolved, form = guarded
    macros = {
        key[len(PARAM_PREFIX) :]: value
        for key, value in form.multi_items()
        if key.startswith(PARAM_PREFIX) and isinstance(value, str) and value != ""
    }
    try:
        number = _path_id(jobconfig_id, "no such jobconfig")
        job = await jobs.run_jobconfig(
            _ctx(request), resolved.principal, number, macros=macros, remote_addr=_address(request)
        )
    except JobyardError as exc:
        return _error(request, resolved, exc)
    response = RedirectResponse(f"/jobs/{job.id}?done=submitted", status_code=303)
    return _finish(request, resolved, response)
