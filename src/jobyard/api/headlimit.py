"""uvicorn's httptools protocol as the server runs it: request heads bounded, and each
response written at once.

uvicorn's httptools protocol keeps a request's URL and headers in memory until the
head is complete, without a size limit: a client sending one endless header line can
make the server hold hundreds of megabytes before any middleware sees the request.
:class:`HeadLimitedHttpToolsProtocol` counts the bytes that arrive while a head is
being read and answers 431 (and closes the connection) once they pass
:data:`MAX_HEAD_BYTES`, without handing the rest to the parser. Its requests write
their responses through :class:`WriteJoiner` (head and body in one write).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: The most bytes a request line and its headers may take together (give or take one
#: read of the transport).
MAX_HEAD_BYTES = 64 * 1024


class HeadLimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing request heads above :data:`MAX_HEAD_BYTES`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # until the head of the current request is complete
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        """Count bytes received while a head is read; refuse once past the limit.

        A read may hold the end of a head and the start of its body: the parser sees it
        first, and only a head still incomplete afterwards is refused. So the parser
        holds at most the limit plus one read of the transport.
        """
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._refuse_head()

    def on_headers_complete(self) -> None:
        """The head is complete: what follows is the body (limited by the ASGI layer).

        The request's cycle writes through :class:`WriteJoiner`, so that a response's
        head and body leave in one write.
        """
        self._in_head = False
        super().on_headers_complete()
        if self.cycle is not None and not isinstance(self.cycle.transport, WriteJoiner):
            self.cycle.transport = WriteJoiner(self.transport, self.loop)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        """The next bytes on this connection are the head of the next request."""
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def _refuse_head(self) -> None:
        message = f"the request line and headers may take at most {MAX_HEAD_BYTES} bytes together"
        body = json.dumps(
            {
                "error": {
                    "code": "too_large",
                    "message": message,
                    "details": {"limit": MAX_HEAD_BYTES},
                }
            }
        ).encode()
        self.logger.warning("request head over %d bytes refused", MAX_HEAD_BYTES)
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()


class WriteJoiner:
    """The transport of one request's cycle: a write waits for the next one in the same
    turn of the event loop, and both leave as one.

    uvicorn writes a response's status line and headers, then its body, as two writes:
    two ``send`` system calls and two TCP segments (Nagle is off) for every answer, each
    of them waking the client. The head is held instead and goes out with the body
    written right after it (a plain response writes both in the same turn); whatever is
    still held at the end of the turn (a streamed response's head before its first
    chunk, a ``100 Continue``) is written then. Closing writes what is held first.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        """Hold ``data`` till the next write or the end of this turn."""
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
            return
        self._held = bytes(data)
        self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is held, if anything."""
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
