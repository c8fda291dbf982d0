"""The console's pages: login, logout, dashboard, jobs, jobconfigs.

Shared plumbing (session, rendering, errors, the CSRF guard) is in
:mod:`jobyard.web.pages`; other groups of pages live in modules of their own.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response, StreamingResponse

from jobyard.core.errors import DatabaseUnavailable, JobyardError, NotFound, Unauthorized
from jobyard.core.jobs import TERMINAL, JobStatus
from jobyard.service import jobs, logs, overview, payload_runs
from jobyard.service.uploads import receive_upload
from jobyard.service.users import TooManyAttempts
from jobyard.web import session as sessions
from jobyard.web.guard import clear_session_cookie, same_origin, set_session_cookie
from jobyard.web.live import dashboard_extras, jobs_list_extras
from jobyard.web.pages import (
    address,
    ctx_of,
    error_page,
    finish,
    guarded,
    int_param,
    max_age,
    new_router,
    path_id,
    refuse,
    signed_in,
    to_login,
    view,
)
from jobyard.web.paths import safe_next
from jobyard.web.render import page, static_response
from jobyard.web.uploads import form_file, upload_error_page

router = new_router()
JOBS_PER_PAGE = 50


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
    resolved = await signed_in(request)
    if resolved is not None:
        return finish(request, resolved, RedirectResponse(target, status_code=303))
    return page(request, "login.html", {"next": target, "name": "", "error": None})


@router.post("/login")
async def login_submit(request: Request) -> Response:
    """Check the form like ``POST /api/v1/login`` and start a session cookie."""
    why = same_origin(request)
    if why is not None:
        return refuse(request, f"refused: {why}")
    form = await request.form()
    name, password, target = (form.get(k) for k in ("name", "password", "next"))
    name = name if isinstance(name, str) else ""
    password = password if isinstance(password, str) else ""
    target = safe_next(target if isinstance(target, str) else None)
    ctx = ctx_of(request)
    values: dict[str, Any] = {"next": target, "name": name}
    try:
        started = await sessions.start(ctx, name, password, address=address(request))
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
        return error_page(request, None, exc)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, started, max_age(ctx))
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Revoke the session's tokens and forget the cookie."""
    checked = await guarded(request)
    if isinstance(checked, Response):
        return checked
    resolved, _ = checked
    await sessions.end(ctx_of(request), resolved)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, request)
    return response


# -- pages -----------------------------------------------------------------------------


@router.get("/")
async def dashboard(request: Request) -> Response:
    """Counts, throughput and failures, running jobs, latest failures."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    try:
        board = await overview.dashboard(ctx_of(request), resolved.principal)
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    return view(
        request,
        resolved,
        "dashboard.html",
        {"board": board, "nav": "dashboard", **dashboard_extras()},
    )


@router.get("/jobs")
async def jobs_page(request: Request) -> Response:
    """Jobs the user may view, newest first, by status, jobconfig, user and age, paged."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    q = request.query_params
    kept = {k: q[k] for k in ("status", "jobconfig", "user", "since", "sort") if q.get(k)}
    try:
        found = await overview.job_list(
            ctx_of(request),
            resolved.principal,
            status=kept.get("status"),
            jobconfig_id=int_param(kept.get("jobconfig")),
            submitted_by=kept.get("user"),
            since=kept.get("since"),
            cursor=q.get("cursor") or None,
            limit=JOBS_PER_PAGE,
            sort=kept.get("sort"),
        )
    except JobyardError as exc:
        return error_page(request, resolved, exc)
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
        "jobconfig": int_param(kept.get("jobconfig")),
        "newest_url": "/jobs?" + urlencode(kept) if kept else "/jobs",
        "self_url": "/jobs" + (f"?{request.url.query}" if request.url.query else ""),
        "next_url": next_url,
        "first_page": not q.get("cursor"),
        **jobs_list_extras(kept),
    }
    return view(request, resolved, "jobs.html", values)


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: str) -> Response:
    """One job: status timeline, end of its log, Cancel / Abort when allowed."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    try:
        number = path_id(job_id, "no such job")
        detail = await overview.job_detail(ctx_of(request), resolved.principal, number)
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    notice = request.query_params.get("done")
    return view(
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
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    search = request.query_params.get("q", "")[:200]
    try:
        rows, cut = await overview.jobconfig_list(
            ctx_of(request), resolved.principal, search=search
        )
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    values = {"nav": "jobconfigs", "rows": rows, "cut": cut, "q": search}
    return view(request, resolved, "jobconfigs.html", values)


@router.get("/jobconfigs/{jobconfig_id}")
async def jobconfig_page(request: Request, jobconfig_id: str) -> Response:
    """One jobconfig: its settings and its newest jobs."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    try:
        number = path_id(jobconfig_id, "no such jobconfig")
        detail = await overview.jobconfig_detail(ctx_of(request), resolved.principal, number)
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    values = {
        "nav": "jobconfigs",
        "d": detail,
        "upload_max_bytes": ctx_of(request).settings.upload_max_bytes,
    }
    return view(request, resolved, "jobconfig.html", values)


@router.get("/jobs/{job_id}/log")
async def job_log(request: Request, job_id: str) -> Response:
    """Download a job's whole log as a text file (what the API's log route streams)."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    ctx = ctx_of(request)
    try:
        number = path_id(job_id, "no such job")
        _job, key = await logs.open_log(ctx, resolved.principal, number)
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    response = StreamingResponse(
        logs.stream_log(ctx, number, key, offset=0, follow=False),
        media_type="text/plain; charset=utf-8",
        headers={
            **DOWNLOAD_HEADERS,
            "Content-Disposition": f'attachment; filename="job-{number}.log"',
        },
    )
    return finish(request, resolved, response)


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
    checked = await guarded(request)
    if isinstance(checked, Response):
        return checked
    resolved, _ = checked
    ctx, who = ctx_of(request), resolved.principal
    try:
        number = int_param(job_id)
        if number is None or action not in ("cancel", "abort", "rerun"):
            raise NotFound("no such page")
        if action == "cancel":
            await jobs.cancel(ctx, who, number, remote_addr=address(request))
            done = "cancelled"
        elif action == "abort":
            await jobs.abort(ctx, who, number, wait_seconds=0, remote_addr=address(request))
            done = "aborted"
        else:
            number = (await jobs.rerun(ctx, who, number, remote_addr=address(request))).id
            done = "rerun"
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    response = RedirectResponse(f"/jobs/{number}?done={done}", status_code=303)
    return finish(request, resolved, response)


#: Form fields of the Run form that carry a parameter's value: ``param:NAME``.
PARAM_PREFIX = "param:"


@router.post("/jobconfigs/{jobconfig_id}/run")
async def jobconfig_run(request: Request, jobconfig_id: str) -> Response:
    """Run a jobconfig now, with values for its declared parameters (empty: not set)
    and an optional payload file (received like the API's payload uploads)."""
    checked = await guarded(request)
    if isinstance(checked, Response):
        return checked
    resolved, form = checked
    try:
        return await _run_posted(request, resolved, form, jobconfig_id)
    finally:
        await form.close()  # the files of a multipart form are temporary files


async def _run_posted(
    request: Request, resolved: sessions.Resolved, form: FormData, jobconfig_id: str
) -> Response:
    """Submit the job the Run form describes."""
    macros = {
        key[len(PARAM_PREFIX) :]: value
        for key, value in form.multi_items()
        if key.startswith(PARAM_PREFIX) and isinstance(value, str) and value != ""
    }
    ctx = ctx_of(request)
    try:
        number = path_id(jobconfig_id, "no such jobconfig")
        upload = form_file(form, "payload")
        async with contextlib.AsyncExitStack() as stack:
            payload = None
            if upload is not None:
                tmp, _size = await stack.enter_async_context(receive_upload(ctx, upload))
                payload = (Path(upload.filename or "payload").name, tmp)
            job = await payload_runs.run_jobconfig(
                ctx,
                resolved.principal,
                number,
                macros=macros,
                payload=payload,
                remote_addr=address(request),
            )
    except JobyardError as exc:
        return upload_error_page(request, resolved, exc)
    response = RedirectResponse(f"/jobs/{job.id}?done=submitted", status_code=303)
    return finish(request, resolved, response)
