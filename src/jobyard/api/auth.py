"""Authentication at the door: before routing and before any request body is read.

A pure ASGI middleware (no per-request task or body buffering): an anonymous client
cannot make the server receive an upload only to be told 401 afterwards.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from jobyard.api.docs import ASSETS
from jobyard.api.errors import unavailable_response
from jobyard.core.errors import DatabaseUnavailable, Unauthorized
from jobyard.service.auth import authenticate
from jobyard.service.context import Context
from jobyard.service.metrics import is_metrics_token, metrics_principal
from jobyard.service.worker_tokens import (
    WORKER_PATH_PREFIX,
    authenticate_worker,
    is_worker_bearer,
    worker_principal,
)
from jobyard.web.paths import is_console_path

#: The only routes answered without a token: health, login (it hands tokens out), and
#: the API's description (the OpenAPI document and the pages that show it).
OPEN_PATHS: frozenset[str] = frozenset(
    {
        "/healthz",
        "/readyz",
        "/api/v1/login",
        "/api/v1/token/refresh",
        "/api/v1/openapi.json",
        *ASSETS,
    }
)


#: The Prometheus endpoint: the only route the ``metrics.token`` bearer may read.
METRICS_PATH = "/metrics"


class AuthMiddleware:
    """Resolve the bearer token into ``scope["state"]["principal"]`` or answer 401.

    Console paths (:func:`jobyard.web.paths.is_console_path`) pass untouched: the
    console resolves its session cookie itself, and no other path looks at cookies.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if is_console_path(scope["path"]):
            # The console authenticates its own pages with its session cookie; bearer
            # tokens are for the API, and the API never takes the cookie.
            await self.app(scope, receive, send)
            return
        if await admit(scope["app"].state.ctx, scope, receive, send):
            await self.app(scope, receive, send)


async def admit(ctx: Context, scope: Scope, receive: Receive, send: Send) -> bool:
    """Resolve the bearer token of a request to an authenticated API path into
    ``scope["state"]`` (``principal``, and ``worker_token`` for a worker): True; or
    answer it (401, or 503 when the token cannot be checked now) and False.

    Shared by :class:`AuthMiddleware` and the job path's door (:mod:`jobyard.api.door`).
    """
    header = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            header = value.decode("latin-1")
            break
    path = scope["path"]
    if path == METRICS_PATH and is_metrics_token(ctx.settings.metrics.token, header):
        # The metrics token opens /metrics and nothing else: on every other path it
        # is just an unknown token (401).
        scope.setdefault("state", {})["principal"] = metrics_principal()
        return True
    if path.startswith(WORKER_PATH_PREFIX) and is_worker_bearer(header):
        # A worker token opens the worker routes and nothing else: elsewhere it is
        # looked up as an API token, found nowhere, and refused (401).
        try:
            token = await authenticate_worker(ctx, header)
        except Unauthorized as exc:
            await _deny(send, exc.message)
            return False
        except DatabaseUnavailable as exc:
            await unavailable_response(exc)(scope, receive, send)
            return False
        state = scope.setdefault("state", {})
        state["principal"] = worker_principal(token)
        state["worker_token"] = token
        return True
    try:
        principal = await authenticate(ctx, header)
    except Unauthorized as exc:
        await _deny(send, exc.message)
        return False
    except DatabaseUnavailable as exc:  # the token cannot be checked now: not a 500
        await unavailable_response(exc)(scope, receive, send)
        return False
    scope.setdefault("state", {})["principal"] = principal
    return True


async def _deny(send: Send, message: str) -> None:
    body = json.dumps(
        {"error": {"code": "unauthorized", "message": message, "details": {}}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
