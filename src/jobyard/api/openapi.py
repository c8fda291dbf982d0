"""The OpenAPI document and its error answers: what ``/docs`` and ``/redoc`` show.

Routes declare the errors they can answer with :func:`errors` (one helper for every
route file, so each status has one description and one example body)::

    @router.post("/{job_id}/cancel", responses=errors(403, 409))

:func:`install_openapi` then completes the document FastAPI generates:

- every operation gets a ``summary`` (the first sentence of its docstring when the
  route sets none) — the one-line title Swagger UI and ReDoc list;
- the ``bearerAuth`` security scheme, required by every operation but the open ones
  (:data:`jobyard.api.auth.OPEN_PATHS`), so "Authorize" in Swagger UI sends the token;
- answers routes give without declaring them: 401 on every authenticated route (the
  door refuses the token) and 503 on every route that reads the database (all but
  :data:`NO_DATABASE`);
- every error answer uses the :class:`~jobyard.api.dto.ErrorBody` envelope with an
  example, including the 422 that FastAPI would otherwise describe with its own
  ``HTTPValidationError`` shape, which jobyard never answers;
- the example bodies of :data:`jobyard.api.examples.EXAMPLES` on their schemas.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from jobyard.api.dto import ErrorBody
from jobyard.api.examples import EXAMPLES
from jobyard.service.apply.document import ApplyFileModel

#: The name of the security scheme in the document ("Authorize" in Swagger UI).
SECURITY_SCHEME = "bearerAuth"

#: Per status: the description shown and an example ``(code, message, details)``.
ERROR_EXAMPLES: dict[int, tuple[str, str, str, dict[str, Any]]] = {
    400: (
        "The request cannot be read (not JSON, an unsafe or corrupt package).",
        "bad_request",
        "request body is not valid JSON",
        {},
    ),
    401: (
        "No token, or a token that is unknown, expired or revoked.",
        "unauthorized",
        "missing Authorization header: send 'Authorization: Bearer TOKEN'",
        {},
    ),
    403: (
        "The caller may view the object but not do this to it (or the action needs an "
        "admin); the message says which right is missing.",
        "forbidden",
        "you may view jobconfig 3 but not execute it",
        {"jobconfig_id": 3, "action": "execute"},
    ),
    404: (
        "No such object, or one the caller may not view (the two answers are identical).",
        "not_found",
        "jobconfig 42 does not exist",
        {"jobconfig_id": 42},
    ),
    409: (
        "The object's state or a name already taken forbids the change; the message says "
        "what to do instead.",
        "conflict",
        "a jobconfig named 'orders-etl' already exists",
        {"name": "orders-etl"},
    ),
    413: (
        "The upload or body is larger than the server accepts (see the limits in "
        "docs/security.md).",
        "too_large",
        "upload exceeds the limit of 536870912 bytes (JOBYARD_UPLOAD_MAX_BYTES)",
        {"limit": 536870912},
    ),
    422: (
        "A field is missing or out of range; the message names the field and the rule.",
        "invalid_input",
        "timeout: Input should be greater than or equal to 0",
        {"errors": [{"loc": ["body", "timeout"], "msg": "...", "type": "greater_than_equal"}]},
    ),
    429: (
        "Too many attempts; wait before retrying.",
        "too_many_requests",
        "too many failed logins: retry after 2026-01-01T12:00:30+00:00 (in 30 s)",
        {},
    ),
    503: (
        "The database (or the blob store: code blobs_unavailable) is unreachable; retry "
        "after the Retry-After header's seconds (none when an operator must act first).",
        "database_unavailable",
        "the database is unreachable right now; retry in a few seconds",
        {"retry_after_seconds": 2},
    ),
}


def _phrases(status: int) -> set[str | None]:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return {None, "", phrase, "Validation Error", "Unprocessable Content"}


_DEFAULT_DESCRIPTIONS: dict[int, set[str | None]] = {s: _phrases(s) for s in ERROR_EXAMPLES}


def error_example(status: int) -> dict[str, Any]:
    """The example error body of ``status``."""
    _, code, message, details = ERROR_EXAMPLES.get(status, ("", "error", "error", {}))
    return {"error": {"code": code, "message": message, "details": details}}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: each status with the error envelope model,
    its description and an example body."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description = ERROR_EXAMPLES.get(status, ("Error.", "", "", {}))[0]
        out[status] = {
            "model": ErrorBody,
            "description": description,
            "content": {"application/json": {"example": error_example(status)}},
        }
    return out


def _summary(route: APIRoute) -> str:
    """The first sentence of the route's docstring (its name when it has none).

    The sentence ends at the first ``.`` or ``;`` followed by a space or the end, outside
    parentheses and code spans; ``code`` spans become `code` (Markdown).
    """
    text = (route.description or "").strip()
    first = " ".join(text.split("\n\n", 1)[0].split()).replace("``", "`")
    depth, code, end = 0, False, len(first)
    for i, char in enumerate(first):
        if char == "`":
            code = not code
        elif not code and char == "(":
            depth += 1
        elif not code and char == ")":
            depth = max(depth - 1, 0)
        elif (
            not code
            and depth == 0
            and char in ".;"
            and (i + 1 == len(first) or first[i + 1] == " ")
        ):
            end = i
            break
    # A summary is plain text in both viewers: code spans lose their backticks.
    sentence = first[:end].replace("`", "").strip()
    return sentence or route.name.replace("_", " ").capitalize()


def _error_ref() -> dict[str, Any]:
    return {"$ref": "#/components/schemas/ErrorBody"}


#: Routes that answer without the database (no 503 to document).
NO_DATABASE: frozenset[str] = frozenset({"/healthz"})


def _complete_operation(op: dict[str, Any], *, open_route: bool, database: bool) -> None:
    """Security, the door's 401 and the outage's 503, and the envelope on every error."""
    responses: dict[str, Any] = op.setdefault("responses", {})
    if open_route:
        op["security"] = []
    else:
        op["security"] = [{SECURITY_SCHEME: []}]
        responses.setdefault("401", {})
    if database:
        responses.setdefault("503", {})
    for status, answer in responses.items():
        if not status.isdigit() or int(status) < 400:
            continue
        code = int(status)
        description = ERROR_EXAMPLES.get(code, ("Error.", "", "", {}))[0]
        # FastAPI's default descriptions are the bare HTTP phrase: say when it happens.
        if answer.get("description") in _DEFAULT_DESCRIPTIONS.get(code, {None, ""}):
            answer["description"] = description
        media = answer.setdefault("content", {}).setdefault("application/json", {})
        media["schema"] = _error_ref()
        media.setdefault("example", error_example(code))


def summarize(router: APIRouter) -> APIRouter:
    """Give each route of ``router`` without a ``summary`` the first sentence of its
    docstring; call before ``include_router`` (the app copies routes when including)."""
    for route in router.routes:
        if isinstance(route, APIRoute) and not route.summary:
            route.summary = _summary(route)
    return router


def build_openapi(app: FastAPI, open_paths: frozenset[str]) -> dict[str, Any]:
    """The completed OpenAPI document of ``app`` (see the module docstring)."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    # Models a route reads by hand (not through a FastAPI body parameter) but documents
    # by reference: ErrorBody (every route declares some; keep the ref valid anyway) and
    # the apply document, whose route also takes YAML.
    for name, model in (("ErrorBody", ErrorBody), ("ApplyDocument", ApplyFileModel)):
        if name not in schemas:
            schemas[name] = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schemas[name].pop("$defs", {}))
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "A token: `admin.token` in JOBYARD_HOME, one from "
            "`POST /api/v1/login`, or a personal token (`jobyard tokens create`).",
        }
    }
    schema["security"] = [{SECURITY_SCHEME: []}]
    for path, operations in schema.get("paths", {}).items():
        for op in operations.values():
            _complete_operation(op, open_route=path in open_paths, database=path not in NO_DATABASE)
    for name, example in EXAMPLES.items():
        if name in schemas and "examples" not in schemas[name]:
            schemas[name]["examples"] = [example]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


#: The groups of routes, in the order the viewers list them (a tag not listed here
#: comes after them, without a description).
TAGS: list[dict[str, str]] = [
    {"name": "jobs", "description": "Submit, follow, stop and rerun jobs; logs and files."},
    {"name": "jobconfigs", "description": "Named definitions of what to run; run them."},
    {"name": "packages", "description": "Program bundles (see docs/packages.md)."},
    {"name": "templates", "description": "Shared package and entry point of jobconfigs."},
    {"name": "schedules", "description": "Quartz cron or interval schedules of a jobconfig."},
    {"name": "cron", "description": "Preview the fire times of a Quartz cron expression."},
    {"name": "macros", "description": "Variables of a job's environment, by level."},
    {"name": "users", "description": "Login, tokens and users."},
    {"name": "access", "description": "Access policies and the audit log (admins)."},
    {"name": "admin", "description": "Maintenance (admins)."},
    {"name": "health", "description": "Liveness and readiness, open without a token."},
]

DESCRIPTION = """Self-hosted job execution manager: packages, jobconfigs, jobs, logs.

Every route but health, login, token refresh and this description needs
`Authorization: Bearer TOKEN` (in Swagger UI: **Authorize**). A first admin token is in
`$JOBYARD_HOME/admin.token`; `POST /api/v1/login` hands out tokens for a user's
password; `jobyard tokens create` mints personal ones.

Every error answers `{"error": {"code", "message", "details"}}`; the message says what
to fix. An object the caller may not view answers exactly the 404 of a missing one.
"""


def install_openapi(app: FastAPI, open_paths: frozenset[str]) -> None:
    """Serve :func:`build_openapi`'s document (built once, on first request)."""
    if app.openapi_tags is None:
        app.openapi_tags = TAGS

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, open_paths)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
