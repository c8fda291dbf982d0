"""Every error becomes ``{"error": {"code", "message", "details"}}`` with the right status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobyard.core import errors as e

log = logging.getLogger("jobyard.api")

STATUS_OF: list[tuple[type[e.JobyardError], int]] = [
    (e.UnsafePackage, 400),
    (e.InvalidInput, 422),
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.TooLarge, 413),
    (e.Unauthorized, 401),
    (e.Forbidden, 403),
    (e.DatabaseUnavailable, 503),
    (e.BlobsUnavailable, 503),
]

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    503: "unavailable",
}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The one shape of every error answer."""
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer", **(headers or {})}
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details or {}}},
        status_code=status,
        headers=headers,
    )


def unavailable_response(exc: e.DatabaseUnavailable) -> JSONResponse:
    """503 ``database_unavailable`` with ``Retry-After``: the request may simply be retried.

    Used by the exception handlers and by middleware that talks to the database before
    routing (authentication), so an outage never answers 500.
    """
    return error_response(
        503,
        exc.code,
        exc.message,
        exc.details,
        headers={"Retry-After": str(exc.retry_after)},
    )


def domain_response(exc: e.JobyardError) -> JSONResponse:
    """The answer to a domain error: its status from :data:`STATUS_OF` (else 400)."""
    if isinstance(exc, e.DatabaseUnavailable):
        return unavailable_response(exc)
    if isinstance(exc, e.BlobsUnavailable) and exc.retry_after is not None:
        headers = {"Retry-After": str(exc.retry_after)}
        return error_response(503, exc.code, exc.message, exc.details, headers=headers)
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return error_response(status, exc.code, exc.message, exc.details)
    return error_response(400, exc.code, exc.message, exc.details)


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors, validation errors and HTTP errors to the error body."""

    @app.exception_handler(e.JobyardError)
    async def _domain(_: Request, exc: e.JobyardError) -> JSONResponse:
        return domain_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": list(err.get("loc", ())),
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
            for err in exc.errors()
        ]
        if any(err["type"] == "json_invalid" for err in errors):
            return error_response(
                400, "bad_request", "request body is not valid JSON", {"errors": errors}
            )
        return error_response(422, "invalid_input", _validation_message(errors), {"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = "no such API route: see /api/v1/openapi.json"
        return error_response(exc.status_code, code, message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, e.DatabaseUnavailable):  # raised in a middleware, before routing
            return unavailable_response(exc)
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal server error; see the server log")
