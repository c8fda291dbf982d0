"""A bound on a request's head (request line and headers), below the ASGI layer.

uvicorn's httptools protocol keeps a request's URL and headers in memory until the
head is complete, without a size limit: a client sending one endless header line can
make the server hold hundreds of megabytes before any middleware sees the request.
:class:`HeadLimitedHttpToolsProtocol` counts the bytes that arrive while a head is
being read and answers 431 (and closes the connection) once they pass
:data:`MAX_HEAD_BYTES`, without handing the rest to the parser.
"""

from __future__ import annotations

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
        """The head is complete: what follows is the body (limited by the ASGI layer)."""
        self._in_head = False
        super().on_headers_complete()

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
