"""The console's Server-Sent Event streams: framing, limits and when they end.

A stream is an ordinary console request held open: it is authenticated by the session
cookie when it starts and then checked again every :data:`SESSION_CHECK_SECONDS` with
the same verification as a bearer token, so it ends soon after logout, a revoked
session or an expired access token (the browser then reconnects, which refreshes the
cookie, or falls back to polling, which goes to the login page).

Each session may hold :data:`MAX_STREAMS_PER_SESSION` streams at once (a browser keeps
only six connections per host over HTTP/1.1: streams must not starve page loads), and
the server ends every stream when it starts to stop (:meth:`Streams.close_all`, called
by the server before uvicorn waits for open connections), so a graceful stop does not
wait for browsers to go away.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from jobyard.core.errors import Unauthorized
from jobyard.core.tokens import hash_token
from jobyard.service.auth import authenticate
from jobyard.service.context import Context
from jobyard.web.session import Resolved

#: Open streams one session may hold; one more answers 429 (the page then polls).
MAX_STREAMS_PER_SESSION = 4
#: How often an open stream checks that its session still works.
SESSION_CHECK_SECONDS = 5.0
#: A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_SECONDS = 15.0
#: How long the browser waits before reconnecting a stream that broke (``retry:``).
RETRY_MS = 3000

#: Headers of every stream: never cached or buffered by a proxy.
STREAM_HEADERS = {
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
    "X-Content-Type-Options": "nosniff",
}


class TooManyStreams(Exception):
    """The session already holds :data:`MAX_STREAMS_PER_SESSION` streams."""


def frame(event: str, data: Any) -> bytes:
    """One SSE message: ``event`` with ``data`` as JSON (one line: no framing surprises)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


KEEPALIVE = b": keep-alive\n\n"
HELLO = f"retry: {RETRY_MS}\n\n".encode()


class Streams:
    """The open streams of this server, counted by session, and the stop signal."""

    def __init__(self) -> None:
        self.closing = asyncio.Event()
        self._open: dict[str, int] = {}

    def acquire(self, resolved: Resolved) -> str:
        """Count one more stream of this session; TooManyStreams when it holds enough.

        Sessions are told apart by their CSRF secret, which stays the same when the
        tokens are refreshed. Pair with :meth:`release` (:class:`EventStream` does).
        """
        key = hash_token(resolved.session.csrf)
        if self._open.get(key, 0) >= MAX_STREAMS_PER_SESSION:
            raise TooManyStreams
        self._open[key] = self._open.get(key, 0) + 1
        return key

    def release(self, key: str) -> None:
        """One stream of the session ``key`` (from :meth:`acquire`) has ended."""
        left = self._open.get(key, 0) - 1
        if left > 0:
            self._open[key] = left
        else:
            self._open.pop(key, None)

    def open_count(self) -> int:
        """How many streams are open (all sessions)."""
        return sum(self._open.values())

    def close_all(self) -> None:
        """End every stream now and refuse new ones (the server is stopping)."""
        self.closing.set()

    async def nap(self, waiter: Awaitable[Any], timeout: float) -> None:
        """Wait for ``waiter``, at most ``timeout`` seconds, or until the server stops."""
        task = asyncio.ensure_future(waiter)
        stop = asyncio.ensure_future(self.closing.wait())
        try:
            await asyncio.wait({task, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (task, stop):
                if not pending.done():
                    pending.cancel()
                    with suppress(asyncio.CancelledError):
                        await pending


class SessionWatch:
    """Whether a stream's session still works, checked at most every few seconds."""

    def __init__(self, ctx: Context, resolved: Resolved) -> None:
        self._ctx = ctx
        self._bearer = f"Bearer {resolved.session.access}"
        self._checked = time.monotonic()

    async def alive(self) -> bool:
        """False once the session's access token no longer authenticates."""
        now = time.monotonic()
        if now - self._checked < SESSION_CHECK_SECONDS:
            return True
        self._checked = now
        try:
            await authenticate(self._ctx, self._bearer)
        except Unauthorized:
            return False
        return True


class EventStream(StreamingResponse):
    """A ``text/event-stream`` answer that gives its session's stream slot back when it
    ends, however it ends (finished, client gone, server stopping)."""

    def __init__(self, body: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        super().__init__(body, media_type="text/event-stream", headers=STREAM_HEADERS)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
