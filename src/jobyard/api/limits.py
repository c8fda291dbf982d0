"""Request-body limits at the door, enforced before and while the body is read.

A pure ASGI middleware (like :mod:`jobyard.api.auth`, and inside it: authenticated
routes are refused with 401 before this counts anything). Every request body has a
limit chosen by its route:

* ``POST /api/v1/login``, ``POST /api/v1/token/refresh`` and the console's ``POST /login``
  (open to anyone):
  :data:`OPEN_BODY_MAX_BYTES`;
* uploads (:data:`UPLOAD_ROUTES`: package upload, payload attach):
  ``upload_max_bytes`` plus :data:`MULTIPART_ALLOWANCE` for the multipart envelope
  (the file itself is held to ``upload_max_bytes`` exactly by
  :func:`jobyard.service.uploads.receive_upload`), and at most ``upload_max_concurrent``
  uploads of one user in flight on this server (429 with ``Retry-After`` beyond,
  before a byte of the body is read);
* everything else (JSON bodies, macro-definition files, the console's other forms):
  ``max_json_bytes``.

Console paths (:func:`jobyard.web.paths.is_console_path`) are answered with an HTML
page (:func:`jobyard.web.uploads.refusal_page`), the API with its JSON error.

A ``Content-Length`` above the limit is answered 413 at once, without reading the
body. Otherwise bytes are counted as they arrive, so a missing or lying length and
chunked encoding stop at the limit too: the application's own read fails, whatever it
would have answered is dropped, and the client gets the 413. Every 413 closes the
connection, so the rest of the body is never read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobyard.settings import Settings
from jobyard.web.paths import is_console_path
from jobyard.web.uploads import refusal_page, upload_owner

#: Body limit of the open routes (a name of 200 and a password of 1024 characters,
#: even written as JSON ``\\uXXXX`` escapes, fit).
OPEN_BODY_MAX_BYTES = 16 * 1024
OPEN_BODY_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {("POST", "/api/v1/login"), ("POST", "/api/v1/token/refresh"), ("POST", "/login")}
)
#: Routes that receive files (multipart), matched on method and path: the API's, and
#: the console forms that carry a package or a payload.
UPLOAD_ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("POST", re.compile(r"/api/v1/packages")),
    ("POST", re.compile(r"/api/v1/jobs/[^/]+/payload")),
    ("POST", re.compile(r"/packages")),
    ("POST", re.compile(r"/jobconfigs/new")),
    ("POST", re.compile(r"/jobconfigs/[^/]+/run")),
)
#: Routes of remote workers that carry files (a log piece, an output file, raw bytes):
#: held to ``upload_max_bytes``, without the per-user concurrency cap (one worker sends
#: the outputs of many jobs at once).
WORKER_FILE_ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("PUT", re.compile(r"/api/v1/worker/jobs/[0-9]+/outputs/[^/]+")),
    ("POST", re.compile(r"/api/v1/worker/jobs/[0-9]+/log")),
)
#: Room for the multipart envelope (boundaries, part headers, a name field).
MULTIPART_ALLOWANCE = 64 * 1024
#: What a refused concurrent upload is told to wait, in seconds.
UPLOAD_RETRY_AFTER_SECONDS = 5


class BodyTooLarge(Exception):
    """Raised into the application's body read once the count passes the limit."""


def is_upload(method: str, path: str) -> bool:
    """Whether this request is an upload (its own size limit and concurrency cap)."""
    return any(method == m and pattern.fullmatch(path) for m, pattern in UPLOAD_ROUTES)


class BodyLimitMiddleware:
    """Answer 413 for bodies over their route's limit, and 429 for too many uploads."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._uploads: dict[str, int] = {}  # user name -> uploads in flight here

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if is_upload(method, path):
            await self._upload(scope, receive, send)
            return
        # A console form is answered with a page (a browser shows it), the API with JSON.
        console = is_console_path(path)
        if (method, path) in OPEN_BODY_ROUTES:
            limit = OPEN_BODY_MAX_BYTES
            message = f"the body of {method} {path} may hold at most {limit} bytes"
        elif path.startswith("/api/v1/worker/") and any(
            method == m and p.fullmatch(path) for m, p in WORKER_FILE_ROUTES
        ):
            limit = self.settings.upload_max_bytes
            message = f"a file may hold at most {limit} bytes (JOBYARD_UPLOAD_MAX_BYTES)"
        elif console:
            limit = self.settings.max_json_bytes
            message = (
                f"this form may send at most {limit} bytes (JOBYARD_MAX_JSON_BYTES): "
                "shorten what you typed, or ask an administrator to raise the limit"
            )
        else:
            await _limited(self.app, scope, receive, send, *json_limit(self.settings))
            return
        refusal = Refusal(message, limit, page_for=path if console else None)
        await _limited(self.app, scope, receive, send, limit, refusal)

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        console = is_console_path(path)
        if console:  # not authenticated yet: counted per session cookie
            user = upload_owner(dict(scope["headers"]).get(b"cookie"))
        else:
            user = str(getattr(scope.get("state", {}).get("principal"), "name", ""))
        cap = self.settings.upload_max_concurrent
        if self._uploads.get(user, 0) >= cap:
            await _answer(
                send,
                429,
                "too_many_requests",
                f"you already have {cap} upload(s) in progress on this server "
                f"(JOBYARD_UPLOAD_MAX_CONCURRENT): retry when one has finished",
                {"limit": cap, "retry_after": UPLOAD_RETRY_AFTER_SECONDS},
                [(b"retry-after", str(UPLOAD_RETRY_AFTER_SECONDS).encode())],
                page_for=path if console else None,
            )
            return
        self._uploads[user] = self._uploads.get(user, 0) + 1
        try:
            limit = self.settings.upload_max_bytes
            refusal = Refusal(
                f"upload exceeds the limit of {limit} bytes (JOBYARD_UPLOAD_MAX_BYTES)",
                limit,
                page_for=path if console else None,
            )
            await _limited(self.app, scope, receive, send, limit + MULTIPART_ALLOWANCE, refusal)
        finally:
            left = self._uploads[user] - 1
            if left:
                self._uploads[user] = left
            else:
                del self._uploads[user]


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


@dataclass(frozen=True, slots=True)
class Refusal:
    """What a 413 says: the message and the limit the caller sees."""

    message: str
    limit: int
    #: The console path refused, whose answer is a page rather than JSON.
    page_for: str | None = None

    async def send(self, send: Send) -> None:
        await _answer(
            send,
            413,
            "too_large",
            self.message,
            {"limit": self.limit},
            [(b"connection", b"close")],  # the rest of the body is never read
            page_for=self.page_for,
        )


def json_limit(settings: Settings) -> tuple[int, Refusal]:
    """The limit of an API request body that is none of the above (JSON bodies), and
    its 413."""
    limit = settings.max_json_bytes
    message = f"a request body may hold at most {limit} bytes (JOBYARD_MAX_JSON_BYTES)"
    return limit, Refusal(message, limit)


async def read_within(
    scope: Scope, receive: Receive, send: Send, limit: int, refusal: Refusal
) -> bytes | None:
    """The whole body of a request, read at once and held to ``limit`` as
    :class:`BodyLimitMiddleware` holds an application's reads: None when refused (the
    413 is sent). A client that disconnects leaves what it sent (the read stops there).
    """
    declared = _declared_length(scope)
    if declared is not None and declared > limit:
        await refusal.send(send)
        return None
    chunks = []
    received = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            await refusal.send(send)
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _limited(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, limit: int, refusal: Refusal
) -> None:
    """Run ``app`` with a body of at most ``limit`` bytes; answer ``refusal`` past it."""
    declared = _declared_length(scope)
    if declared is not None and declared > limit:
        await refusal.send(send)
        return
    received = 0
    refused = False
    started = False

    async def counting_receive() -> Message:
        nonlocal received, refused
        if refused:
            return {"type": "http.disconnect"}
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                refused = True
                raise BodyTooLarge(f"request body over {limit} bytes")
        return message

    async def guarded_send(message: Message) -> None:
        nonlocal started
        if refused and not started:
            return  # the application's answer to a cut-off body: replaced by the 413
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, counting_receive, guarded_send)
    except Exception:
        if not refused or started:
            raise
    if refused and not started:
        await refusal.send(send)


async def _answer(
    send: Send,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any],
    headers: list[tuple[bytes, bytes]],
    *,
    page_for: str | None = None,
) -> None:
    """Send an error answer: the API's JSON, or a console page for ``page_for``."""
    if page_for is not None:
        body, kind = refusal_page(page_for, status, message)
    else:
        body = json.dumps(
            {"error": {"code": code, "message": message, "details": details}}
        ).encode()
        kind = [(b"content-type", b"application/json")]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*kind, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
