"""HTTP/1.1 over a plain socket, for requests no polite client sends.

An attacker streams bodies that never end, lies about their length, stops halfway or
keeps writing after the answer; :class:`RawRequest` does exactly that, and reads
whatever the server answers meanwhile.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

BOUNDARY = "jobyard-test-boundary"


@dataclass
class Answer:
    """What the server answered (status 0: it closed or reset without answering)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = self.json()["error"]
        return error


def head(
    method: str,
    path: str,
    *,
    token: str | None = None,
    length: int | None = None,
    chunked: bool = False,
    content_type: str = "application/json",
) -> bytes:
    """The request line and headers (``length`` None and not chunked: no length header)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    """One chunk of chunked transfer encoding."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def multipart_head(filename: str = "upload.bin") -> bytes:
    """The start of a multipart/form-data body with one file field ``file``."""
    return (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


MULTIPART_TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()
MULTIPART_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(data: bytes, filename: str = "upload.bin") -> bytes:
    """A whole multipart/form-data body holding ``data`` as the file ``file``."""
    return multipart_head(filename) + data + MULTIPART_TAIL


class RawRequest:
    """One connection: send a head, then body pieces, and see when the server answers."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.sent = 0

    def __enter__(self) -> RawRequest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def answered(self, wait: float = 0.0) -> bool:
        """Whether the server has answered (or closed) within ``wait`` seconds."""
        readable, _, _ = select.select([self.sock], [], [], wait)
        return bool(readable)

    def send(self, data: bytes) -> bool:
        """Send; False if the server closed the connection meanwhile."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        self.sent += len(data)
        return True

    def stream(self, pieces: Iterable[bytes], *, wait: float = 0.0) -> bool:
        """Send pieces until done, until the server answers, or until it hangs up.

        ``wait``: how long to look for an answer before each piece (a polite attacker
        that reads; 0 = blast). True if every piece was sent.
        """
        for piece in pieces:
            if self.answered(wait):
                return False
            if not self.send(piece):
                return False
        return True

    def answer(self, timeout: float = 10.0) -> Answer:
        """Read the server's answer; status 0 if it closed, or stayed silent, without one."""
        self.sock.settimeout(timeout)
        response = http.client.HTTPResponse(self.sock)  # type: ignore[arg-type]
        try:
            response.begin()
            body = response.read()
        except (
            http.client.RemoteDisconnected,
            http.client.IncompleteRead,
            ConnectionResetError,
            TimeoutError,
        ):
            return Answer(0)
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)


def zeros(total: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    """``total`` bytes of zeros in pieces."""
    block = bytes(piece)
    left = total
    while left > 0:
        yield block[: min(piece, left)]
        left -= piece


def chunked_zeros(total: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    """``total`` bytes of zeros as chunks of chunked encoding (never the last chunk)."""
    for data in zeros(total, piece):
        yield chunk(data)


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    """Poll ``predicate()`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
