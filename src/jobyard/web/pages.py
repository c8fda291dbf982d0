"""The console's pages: login, logout, dashboard, jobs, jobconfigs.

Every handler resolves the session (:mod:`jobyard.web.session`), then calls one use
case with its principal. State changes (``POST``) pass :func:`guarded` first: the
session, the same-origin check and the CSRF token. Domain errors become an error page
with the status the API would answer.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from jobyard.core.errors import (
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    InvalidInput,
    JobyardError,
    NotFound,
    Unauthorized,
)
from jobyard.service.context import Context
from jobyard.service.users import lifetimes
from jobyard.web import session as sessions
from jobyard.web.guard import (
    CSRF_FIELD,
    CSRF_HEADER,
    same_origin,
    set_session_cookie,
)
from jobyard.web.render import page


class ConsoleRoute(APIRoute):
    """A console route: a domain error that escapes its handler (a database outage while
    the session is checked, say) becomes an error page, not the API's JSON body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except JobyardError as exc:
                return error_page(request, None, exc)

        return run


def new_router() -> APIRouter:
    """A router for a group of console pages (kept out of the OpenAPI document)."""
    return APIRouter(include_in_schema=False, route_class=ConsoleRoute)


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


def ctx_of(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def address(request: Request) -> str | None:
    return request.client.host if request.client else None


def max_age(ctx: Context) -> int:
    return int(lifetimes(ctx.settings)[1].total_seconds())


def to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    where = f"/login?next={quote(target, safe='')}"
    if request.headers.get("hx-request") == "true":
        # A page refreshing itself (htmx polling): the whole page goes to the login,
        # instead of the login form being swapped into a part of it.
        return Response(status_code=204, headers={"HX-Redirect": where})
    return RedirectResponse(where, status_code=303)


async def signed_in(request: Request) -> sessions.Resolved | None:
    found = sessions.Session.decode(request.cookies.get(sessions.COOKIE))
    if found is None:
        return None
    renewals: sessions.Renewals = request.app.state.console_renewals
    try:
        return await sessions.resolve(ctx_of(request), found, renewals)
    except Unauthorized:
        return None


def finish(request: Request, resolved: sessions.Resolved, response: Response) -> Response:
    """Set the rotated cookie on ``response`` when the session's tokens were refreshed."""
    if resolved.renewed:
        set_session_cookie(response, request, resolved.session, max_age(ctx_of(request)))
    return response


def view(
    request: Request,
    resolved: sessions.Resolved,
    template: str,
    values: dict[str, Any],
    *,
    status: int = 200,
) -> Response:
    common = {"user": resolved.principal, "csrf_token": resolved.session.csrf}
    return finish(request, resolved, page(request, template, {**common, **values}, status=status))


def error_page(request: Request, resolved: sessions.Resolved | None, exc: JobyardError) -> Response:
    status = next((s for cls, s in STATUS_OF if isinstance(exc, cls)), 400)
    values = {"status": status, "message": exc.message}
    response: Response
    if resolved is None:
        response = page(request, "error.html", values, status=status)
    else:
        response = view(request, resolved, "error.html", values, status=status)
    if isinstance(exc, DatabaseUnavailable):  # a retry will do: say when
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def refuse(request: Request, message: str) -> Response:
    return page(request, "error.html", {"status": 403, "message": message}, status=403)


async def guarded(request: Request) -> tuple[sessions.Resolved, FormData] | Response:
    """The session of a state-changing request that came from a console page, or 403.

    Refused: another origin (``Origin``/``Sec-Fetch-Site``), no session, and a missing
    or wrong CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``).
    """
    why = same_origin(request)
    if why is not None:
        return refuse(request, f"refused: {why}")
    resolved = await signed_in(request)
    if resolved is None:
        return refuse(request, "refused: you are not logged in (or your session ended)")
    form = await request.form()
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        field = form.get(CSRF_FIELD)
        sent = field if isinstance(field, str) else None
    if not sessions.csrf_matches(resolved.session, sent):
        await form.close()  # a multipart form's files are temporary files
        return refuse(request, "refused: missing or wrong CSRF token; reload the page")
    return resolved, form


def int_param(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit() or not 0 < int(value) <= MAX_ID:
        raise InvalidInput(f"expected a positive whole number, got {value[:40]!r}")
    return int(value)


def path_id(value: str, missing: str) -> int:
    """The id in a page's path; an empty one is ``NotFound(missing)``, a malformed one 422."""
    number = int_param(value)
    if number is None:
        raise NotFound(missing)
    return number
