"""A remote worker's link to its servers: which one it talks to, and one call's fate.

The worker talks to one server of its list — the first — and sticks to it; when a call
fails with a transport error or 502/503/504 it moves to the next one (round the list)
and, for a call whose body can be sent again, tries it there at once. Every worker call
is answered the same by any replica (see :mod:`jobyard.service.remote_workers`), so a
call moved to another server means the same.

An error answer that retrying will not change raises :class:`ServerRefused`; no answer
from any server raises :class:`~jobyard.core.errors.DatabaseUnavailable` (try again
later), which :meth:`ServerLink.call` does with back-off for up to ``patience`` seconds.

Connections to each server: the acquisition long-poll's own lean connection (see
:mod:`jobyard.worker.lean_http`), a few more for the small calls of every job — reports,
lease renewals, heartbeats, log pieces: a call in flight has one to itself, so none
waits behind the long-poll or another call — and an httpx client for the streams
(output uploads, downloads) and wherever a lean connection cannot stand in for httpx
(a proxy in the environment, a path prefix in the server's URL).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import httpx

from jobyard.core.errors import DatabaseUnavailable
from jobyard.worker.lean_http import LeanConnection, LeanHttpError, dump_json

_log = logging.getLogger("jobyard.worker")

#: Back-off between retries of a call the server did not answer.
FIRST_PAUSE = 0.2
MAX_PAUSE = 5.0
#: Statuses that mean "the server is there but cannot answer now": retried.
RETRIED = {502, 503, 504}
#: Idle lean connections kept per server for the small calls.
IDLE_LEANS = 8


class ServerRefused(Exception):
    """The server answered with an error that retrying will not change."""

    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code = str(error.get("code", ""))
        self.message = str(error.get("message") or body)
        self.details: dict[str, Any] = dict(error.get("details") or {})
        super().__init__(f"HTTP {status}: {self.message}")


def response_body(response: httpx.Response) -> Any:
    """An httpx answer's decoded JSON, or its text when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return response.text


class ServerLink:
    """The servers a worker may talk to and the connections to them (see the module
    docstring)."""

    def __init__(
        self,
        servers: Sequence[str],
        headers: dict[str, str],
        *,
        slots: int,
        wait_seconds: float,
        patience: float,
    ) -> None:
        """``servers``: the preferred one first (duplicates dropped); ``wait_seconds``:
        the acquisition long-poll's wait (answers are awaited that much longer);
        ``patience``: how long :meth:`call` retries while no server answers."""
        #: Every server this worker may talk to, the preferred one first.
        self.servers: list[str] = []
        for url in servers:
            if url.rstrip("/") not in self.servers:
                self.servers.append(url.rstrip("/"))
        self.current = 0
        self.wait_seconds = wait_seconds
        self.patience = patience
        self.clients = [
            httpx.AsyncClient(
                base_url=url,
                headers=headers,
                timeout=httpx.Timeout(30.0, read=wait_seconds + 30.0),
                limits=httpx.Limits(max_connections=max(8, slots * 2), max_keepalive_connections=8),
            )
            for url in self.servers
        ]
        #: The acquisition long-poll's own connection to each server (None: through
        #: httpx, see :mod:`jobyard.worker.lean_http`).
        self.leans = [LeanConnection.for_url(url, headers) for url in self.servers]
        #: Idle lean connections of each server for the small calls (see :meth:`once`).
        self.idle: list[list[LeanConnection]] = [[] for _ in self.servers]

    async def aclose(self) -> None:
        """Close every connection."""
        for lean in self.leans:
            if lean is not None:
                await lean.aclose()
        for idle in self.idle:
            while idle:
                await idle.pop().aclose()
        for client in self.clients:
            await client.aclose()

    @property
    def server(self) -> str:
        """The server this worker talks to now."""
        return self.servers[self.current]

    def move_on(self, index: int, why: str) -> bool:
        """The server at ``index`` failed: move to the next one, unless another call
        moved already (calls in flight fail together when a server dies: it moves once).
        False when there is no other server."""
        if len(self.servers) < 2:
            return False
        if index == self.current:
            self.current = (index + 1) % len(self.servers)
            _log.warning(
                "server %s failed (%s); moving to %s", self.servers[index], why, self.server
            )
        return True

    async def once(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call: its JSON answer, ``ServerRefused`` for an error answer; transport
        errors and 502/503/504 raise ``DatabaseUnavailable`` (try again later) once no
        server answered — with several servers, the call moves to the next one and, when
        its body can be sent again (not a stream), is tried there at once, each server
        once at most."""
        replayable = isinstance(kwargs.get("content", b""), bytes | str)
        tries = len(self.servers) if replayable else 1
        small = _small_request(path, kwargs)
        for attempt in range(tries):
            index = self.current
            try:
                if small is not None and self.leans[index] is not None:
                    status, answer = await self._lean_call(index, method, *small)
                else:
                    response = await self.clients[index].request(method, path, **kwargs)
                    status = response.status_code
                    answer = response_body(response)
            except (httpx.TransportError, LeanHttpError) as exc:
                error = DatabaseUnavailable(f"server {self.servers[index]} unreachable: {exc!r}")
                moved = self.move_on(index, type(exc).__name__)
                if not moved or attempt + 1 == tries:
                    raise error from exc
                continue
            if status in RETRIED:
                moved = self.move_on(index, f"HTTP {status}")
                if not moved or attempt + 1 == tries:
                    raise DatabaseUnavailable(f"server {self.servers[index]} answered {status}")
                continue
            if status >= 400:
                raise ServerRefused(status, answer)
            return answer
        raise DatabaseUnavailable("no server to call")  # not reached: tries >= 1

    async def _lean_call(
        self, index: int, method: str, target: str, payload: bytes, content_type: str | None
    ) -> tuple[int, Any]:
        """One small call to the server at ``index`` on an idle lean connection of its
        own (a new one when none is idle). A kept-alive connection that gives no answer
        may have been closed by the server just as it was taken (its keep-alive
        timeout): the call is sent once more on a new connection before it counts as a
        transport error (every call made here may be sent twice)."""
        template = self.leans[index]
        if template is None:
            raise LeanHttpError(f"no lean connection to {self.servers[index]}")
        idle = self.idle[index]
        conn = idle.pop() if idle else template.twin()
        reused = conn.connected
        timeout = self.wait_seconds + 30.0
        try:
            answer = await conn.request(method, target, payload, content_type, timeout=timeout)
        except LeanHttpError:
            if not reused:
                raise
            conn = template.twin()
            answer = await conn.request(method, target, payload, content_type, timeout=timeout)
        if conn.connected and len(self.idle[index]) < IDLE_LEANS:
            self.idle[index].append(conn)
        else:
            conn.close()
        return answer

    async def call(self, what: str, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`once`, retried with back-off for up to ``patience`` seconds while the
        server cannot be reached (every call retried here is idempotent)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.patience
        pause = FIRST_PAUSE
        warned = False
        while True:
            try:
                return await self.once(method, path, **kwargs)
            except DatabaseUnavailable as exc:
                if loop.time() + pause > deadline:
                    raise
                if not warned:
                    _log.warning("%s: %s; retrying", what, exc.message)
                    warned = True
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)

    async def post_acquire(self, body: dict[str, Any]) -> Any:
        """``POST /api/v1/worker/acquire`` as :meth:`once` does it, on the current
        server's long-poll connection when there is one; a failure moves to the next
        server for the next try (the caller retries the acquisition)."""
        path = "/api/v1/worker/acquire"
        index = self.current
        lean = self.leans[index]
        if lean is None:
            return await self.once("POST", path, json=body)
        try:
            status, answer = await lean.post_json(path, body, timeout=self.wait_seconds + 60.0)
        except LeanHttpError as exc:
            self.move_on(index, type(exc).__name__)
            raise DatabaseUnavailable(f"server {self.servers[index]} unreachable: {exc}") from exc
        if status in RETRIED:
            self.move_on(index, f"HTTP {status}")
            raise DatabaseUnavailable(f"server {self.servers[index]} answered {status}")
        if status >= 400:
            raise ServerRefused(status, answer)
        return answer


def _small_request(path: str, kwargs: dict[str, Any]) -> tuple[str, bytes, str | None] | None:
    """``(request target, body, content type)`` of a call a lean connection can make
    exactly as httpx would (a JSON body, or raw bytes, and query parameters); None for
    anything else (a stream, other options)."""
    if not set(kwargs) <= {"json", "content", "params"}:
        return None
    params = kwargs.get("params")
    target = f"{path}?{urlencode(params)}" if params else path
    if "json" in kwargs:
        if "content" in kwargs:
            return None
        return target, dump_json(kwargs["json"]), "application/json"
    content = kwargs.get("content", b"")
    if not isinstance(content, bytes):
        return None
    return target, content, None
