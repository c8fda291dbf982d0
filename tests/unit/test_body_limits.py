"""The body-limit middleware at the ASGI level: what the application may receive.

The real server is attacked in ``tests/security/test_door.py``; here the middleware
wraps a small application that records what it was given, so the exact bytes that get
through, and when the application is not even called, are visible.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from jobyard.api.app import create_app
from jobyard.api.limits import (
    MULTIPART_ALLOWANCE,
    OPEN_BODY_MAX_BYTES,
    BodyLimitMiddleware,
    is_upload,
)
from jobyard.runtime import Runtime
from jobyard.service.context import Principal
from jobyard.settings import Settings

SETTINGS = Settings(workers=0, max_json_bytes=1000, upload_max_bytes=5000)


class Recorder:
    """An application that reads the whole body, then answers 200 (or 400 on errors)."""

    def __init__(self) -> None:
        self.calls = 0
        self.received = 0
        self.errors: list[Exception] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        try:
            while True:
                message = await receive()
                self.received += len(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            status = 200
        except Exception as exc:  # what a framework does with a failed body read
            self.errors.append(exc)
            status = 400
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})


async def call(
    app: Any,
    path: str,
    pieces: list[bytes],
    *,
    method: str = "POST",
    length: int | None = None,
    user: str | None = None,
) -> tuple[int, dict[str, str], bytes, int]:
    """Run one request; (status, headers, body, body messages the app pulled)."""
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    scope: dict[str, Any] = {"type": "http", "method": method, "path": path, "headers": headers}
    if user is not None:
        scope["state"] = {"principal": Principal(name=user, role="user", user_id=1)}
    queue = [
        {"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
        for i, p in enumerate(pieces)
    ]
    pulled = 0

    async def receive() -> Message:
        nonlocal pulled
        if not queue:
            await asyncio.Event().wait()  # the client sends nothing more
        pulled += 1
        return queue.pop(0)

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    head = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    return start["status"], head, body, pulled


async def test_a_declared_length_over_the_limit_is_refused_without_calling_the_app() -> None:
    app = Recorder()
    status, headers, body, pulled = await call(
        BodyLimitMiddleware(app, SETTINGS), "/api/v1/jobconfigs", [b"x"], length=1001
    )
    assert (status, app.calls, pulled) == (413, 0, 0)
    assert headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error == {
        "code": "too_large",
        "message": "a request body may hold at most 1000 bytes (JOBYARD_MAX_JSON_BYTES)",
        "details": {"limit": 1000},
    }


async def test_a_body_without_length_stops_at_the_limit() -> None:
    """The app's read fails once the count passes the limit; its answer is replaced."""
    app = Recorder()
    pieces = [b"x" * 300] * 10  # 3000 bytes, no Content-Length
    status, _, body, pulled = await call(
        BodyLimitMiddleware(app, SETTINGS), "/api/v1/jobconfigs", pieces
    )
    assert status == 413 and b"app" not in body
    assert pulled == 4  # 1200 bytes: the fourth piece crossed 1000, nothing more was read
    assert app.received == 900 and len(app.errors) == 1


async def test_a_body_within_the_limit_passes_untouched() -> None:
    app = Recorder()
    status, _, body, _ = await call(
        BodyLimitMiddleware(app, SETTINGS), "/api/v1/jobconfigs", [b"x" * 500] * 2, length=1000
    )
    assert (status, body, app.received) == (200, b"app", 1000)


async def test_open_routes_have_their_own_small_limit() -> None:
    big = Settings(workers=0, max_json_bytes=10**9)
    for path in ("/api/v1/login", "/api/v1/token/refresh"):
        app = Recorder()
        status, _, body, _ = await call(
            BodyLimitMiddleware(app, big), path, [b"x"], length=OPEN_BODY_MAX_BYTES + 1
        )
        assert status == 413 and app.calls == 0
        assert f"{OPEN_BODY_MAX_BYTES} bytes" in json.loads(body)["error"]["message"]


async def test_uploads_have_their_limit_plus_the_envelope() -> None:
    app = Recorder()
    limit = 5000 + MULTIPART_ALLOWANCE
    middleware = BodyLimitMiddleware(app, SETTINGS)
    ok = await call(middleware, "/api/v1/packages", [b"x" * limit], length=limit, user="u")
    assert ok[0] == 200
    status, _, body, _ = await call(middleware, "/api/v1/jobs/7/payload", [b"x" * (limit + 1)])
    assert status == 413
    error = json.loads(body)["error"]
    assert error["message"] == "upload exceeds the limit of 5000 bytes (JOBYARD_UPLOAD_MAX_BYTES)"
    assert error["details"] == {"limit": 5000}


async def test_a_third_upload_of_one_user_is_refused_before_its_body() -> None:
    gate, both_in = asyncio.Event(), asyncio.Event()

    class Slow(Recorder):
        entered = 0

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            self.entered += 1
            if self.entered == 2:
                both_in.set()
            await gate.wait()
            await super().__call__(scope, receive, send)

    app = Slow()
    middleware = BodyLimitMiddleware(app, SETTINGS)
    first = asyncio.create_task(call(middleware, "/api/v1/packages", [b"a"], user="mallory"))
    second = asyncio.create_task(call(middleware, "/api/v1/packages", [b"b"], user="mallory"))
    await asyncio.wait_for(both_in.wait(), 5)  # both are in flight, held in the app
    status, headers, body, pulled = await call(
        middleware, "/api/v1/packages", [b"c"], user="mallory"
    )
    assert (status, pulled) == (429, 0)
    assert headers["retry-after"] == "5"
    assert json.loads(body)["error"]["code"] == "too_many_requests"
    # Another user is not held back.
    other = asyncio.create_task(call(middleware, "/api/v1/packages", [b"d"], user="bob"))
    gate.set()
    assert [r[0] for r in await asyncio.gather(first, second, other)] == [200, 200, 200]
    # The slots are free again.
    assert (await call(middleware, "/api/v1/packages", [b"e"], user="mallory"))[0] == 200


def test_every_multipart_route_is_an_upload_route() -> None:
    """A new route receiving files must get the upload limit, not the JSON one."""
    document = create_app(Runtime(Settings(workers=0))).openapi()
    multipart = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "multipart/form-data" in content:
                multipart.append((method.upper(), re.sub(r"\{[^}]+\}", "1", path)))
    assert multipart, "no upload route found"
    assert [(m, p) for m, p in multipart if not is_upload(m, p)] == []
    assert not is_upload("POST", "/api/v1/jobconfigs")
    assert not is_upload("GET", "/api/v1/packages")
    assert not is_upload("POST", "/api/v1/packages/extra")
