"""Lean keep-alive HTTP/1.1 connections for a worker's frequent small calls.

A job waiting for an idle worker reaches it through the answer of the long-poll in
flight (``POST /api/v1/worker/acquire``); that answer is on the path of every idle
dispatch. httpx spends ~0.25 ms of the worker's CPU between the answer's arrival and
its decoded JSON on this class of machine (connection pool, httpcore, anyio streams),
this connection ~15 µs: it speaks only what that call needs — a small body out (JSON or
bytes), a JSON answer in (``Content-Length`` or chunked) — over asyncio streams. The
other small calls of every job (reports, lease renewals, heartbeats, log pieces) go
through connections of the same kind (see :mod:`jobyard.worker.http_link`).

Used only where it behaves exactly like the httpx client it stands in for: ``http://``
and ``https://`` servers (TLS through httpx's own SSL context, so the same certificates
are trusted) with no proxy configured in the environment (httpx would go through it:
then httpx stays in charge). One request at a time on a connection (the caller keeps
as many as it has calls in flight, see :meth:`LeanConnection.twin`); a connection the
server closed while idle is replaced before the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from typing import Any
from urllib.parse import urlsplit

import httpx

from jobyard.core import wirejson

#: Environment variables that make httpx use a proxy (any case).
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")
#: What a request that got no usable answer raises (``LeanHttpError`` stands for them).
_NO_ANSWER = (OSError, EOFError, TimeoutError, ValueError, asyncio.LimitOverrunError)
#: Longest header block accepted from the server.
_MAX_HEAD = 64 * 1024


#: The wire's JSON (see :mod:`jobyard.core.wirejson`).
dump_json = wirejson.dumps
load_json = wirejson.loads


class LeanHttpError(Exception):
    """The server could not be reached, or answered something this client cannot read:
    the caller treats it like a transport error of httpx (try again later)."""


def proxied() -> bool:
    """True when the environment configures a proxy (httpx would use it)."""
    return any(os.environ.get(name) or os.environ.get(name.upper()) for name in _PROXY_VARIABLES)


class LeanConnection:
    """See the module docstring; :meth:`for_url` says whether one can serve ``url``."""

    def __init__(
        self, host: str, port: int, tls: ssl.SSLContext | None, headers: dict[str, str]
    ) -> None:
        self._host = host
        self._port = port
        self._tls = tls
        self._headers = dict(headers)
        self._head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._head += f"Host: {host}:{port}\r\n"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @classmethod
    def for_url(cls, url: str, headers: dict[str, str]) -> LeanConnection | None:
        """A connection to the server at ``url``; None where httpx must stay in charge
        (another scheme, a path prefix, a proxy in the environment)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or proxied():
            return None
        if parts.path not in ("", "/") or parts.query or parts.username:
            return None
        tls = None
        if parts.scheme == "https":
            tls = httpx.create_ssl_context()
        port = parts.port or (443 if tls is not None else 80)
        return cls(parts.hostname, port, tls, headers)

    def twin(self) -> LeanConnection:
        """Another connection to the same server, with the same headers (for a call
        that must not wait behind the one in flight on this one)."""
        return LeanConnection(self._host, self._port, self._tls, self._headers)

    @property
    def connected(self) -> bool:
        """Whether a connection is open (kept alive from an earlier request)."""
        return self._writer is not None

    async def post_json(self, path: str, body: Any, *, timeout: float) -> tuple[int, Any]:
        """``(status, decoded JSON answer or text)``; ``LeanHttpError`` when there is no
        answer (it then drops the connection)."""
        payload = dump_json(body)
        return await self.request("POST", path, payload, "application/json", timeout=timeout)

    async def request(
        self,
        method: str,
        target: str,
        payload: bytes,
        content_type: str | None,
        *,
        timeout: float,
    ) -> tuple[int, Any]:
        """:meth:`post_json` for any method, request target (path and query) and body
        (``content_type`` None: no such header, as httpx sends raw bytes)."""
        kind = f"Content-Type: {content_type}\r\n" if content_type is not None else ""
        request = (
            f"{method} {target} HTTP/1.1\r\n{self._head}{kind}"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode("latin-1") + payload
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await self._connected()
                writer.write(request)
                status, close, data = await _read_answer(reader)
        except BaseException as exc:
            self.close()
            if isinstance(exc, _NO_ANSWER):
                raise LeanHttpError(f"{type(exc).__name__}: {exc}") from exc
            raise
        if close:
            self.close()
        try:
            return status, load_json(data)
        except ValueError:
            return status, data.decode("utf-8", "replace")

    async def _connected(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = self._reader, self._writer
        if reader is None or writer is None or reader.at_eof() or writer.is_closing():
            self.close()
            reader, writer = await asyncio.open_connection(
                self._host,
                self._port,
                ssl=self._tls,
                server_hostname=self._host if self._tls is not None else None,
                limit=_MAX_HEAD,
            )
            self._reader, self._writer = reader, writer
        return reader, writer

    def close(self) -> None:
        """Drop the connection (the next request opens another)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()

    async def aclose(self) -> None:
        """Drop the connection and wait until it is closed (the worker stops)."""
        writer = self._writer
        self.close()
        if writer is not None:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """``(status, connection closes after it, body)`` of one HTTP/1.1 answer."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
            raise ValueError(f"not an HTTP/1.1 answer: {lines[0][:80]!r}")
        status = int(status_line[1])
        if status >= 200:
            break  # 1xx answers (100 Continue) precede the real one
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    close = headers.get("connection", "").lower() == "close" or status_line[0] == "HTTP/1.0"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif status in (204, 304):
        body = b""
    else:  # delimited by the end of the connection
        body = await reader.read()
        close = True
    return status, close, body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
