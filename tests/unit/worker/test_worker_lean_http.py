"""The acquisition long-poll's own HTTP/1.1 connection (jobyard.worker.lean_http).

Against a real HTTP/1.1 peer on loopback (an asyncio server answering canned
responses), and through ``HttpBackend`` for the mapping of its failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from jobyard.core.errors import DatabaseUnavailable
from jobyard.worker.http_backend import HttpBackend, ServerRefused
from jobyard.worker.lean_http import LeanConnection, LeanHttpError

#: Gets (request number on its connection, request head, request body), returns the raw
#: answer (None: close the connection without answering).
Answer = Callable[[int, bytes, bytes], bytes | None]


class Peer:
    """A loopback HTTP/1.1 server whose answers the test chooses."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.append(task)  # type: ignore[arg-type]
        self.connections += 1
        self.writers.append(writer)
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                served += 1
                raw = self.answer(served, head, body)
                if raw is None:
                    break
                writer.write(raw)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[tuple[Peer, str]]:
    peer = Peer(answer)
    server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield peer, f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for writer in peer.writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await asyncio.wait_for(asyncio.gather(*peer.tasks), 5)
        await server.wait_closed()


def json_answer(status: int, data: object, *, extra: str = "") -> bytes:
    body = json.dumps(data).encode()
    head = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}"
    return f"{head}content-length: {len(body)}\r\n\r\n".encode() + body


def connection(url: str) -> LeanConnection:
    conn = LeanConnection.for_url(url, {"Authorization": "Bearer t0k"})
    if conn is None:
        raise AssertionError(f"no lean connection for {url}")
    return conn


async def test_posts_json_and_reads_a_content_length_answer() -> None:
    async with serving(lambda _n, _h, body: json_answer(200, {"got": json.loads(body)})) as (
        peer,
        url,
    ):
        conn = connection(url)
        status, answer = await conn.post_json("/api/v1/worker/acquire", {"free": 3}, timeout=5)
        await conn.aclose()
    assert (status, answer) == (200, {"got": {"free": 3}})
    head = peer.requests[0][0].decode()
    assert head.startswith("POST /api/v1/worker/acquire HTTP/1.1\r\n")
    assert "Authorization: Bearer t0k\r\n" in head
    assert "Content-Type: application/json\r\n" in head


async def test_reads_a_chunked_answer() -> None:
    body = json.dumps({"assignments": [{"id": 1}, {"id": 2}]}).encode()
    chunked = b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:10], body[10:])
    )
    raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n"
    async with serving(lambda _n, _h, _b: raw) as (_peer, url):
        conn = connection(url)
        status, answer = await conn.post_json("/x", {}, timeout=5)
        await conn.aclose()
    assert (status, answer) == (200, {"assignments": [{"id": 1}, {"id": 2}]})


async def test_keeps_its_connection_alive_between_calls() -> None:
    async with serving(lambda n, _h, _b: json_answer(200, {"n": n})) as (peer, url):
        conn = connection(url)
        answers = [await conn.post_json("/x", {}, timeout=5) for _ in range(3)]
        await conn.aclose()
    assert answers == [(200, {"n": 1}), (200, {"n": 2}), (200, {"n": 3})]
    assert peer.connections == 1


async def test_replaces_a_connection_the_server_closed_while_idle() -> None:
    async with serving(lambda n, _h, _b: json_answer(200, {"n": n})) as (peer, url):
        conn = connection(url)
        assert await conn.post_json("/x", {}, timeout=5) == (200, {"n": 1})
        for writer in peer.writers:  # the server's keep-alive timeout, say
            writer.close()
        deadline = asyncio.get_running_loop().time() + 5
        while conn._reader is not None and not conn._reader.at_eof():
            assert asyncio.get_running_loop().time() < deadline, "EOF never seen"
            await asyncio.sleep(0.01)
        assert await conn.post_json("/x", {}, timeout=5) == (200, {"n": 1})
        await conn.aclose()
    assert peer.connections == 2


async def test_connection_close_answers_are_honoured() -> None:
    async with serving(
        lambda n, _h, _b: json_answer(200, {"n": n}, extra="connection: close\r\n")
    ) as (
        peer,
        url,
    ):
        conn = connection(url)
        await conn.post_json("/x", {}, timeout=5)
        await conn.post_json("/x", {}, timeout=5)
        await conn.aclose()
    assert peer.connections == 2


async def test_no_answer_is_an_error_and_the_connection_is_dropped() -> None:
    async with serving(lambda n, _h, _b: None if n == 1 else json_answer(200, {})) as (peer, url):
        conn = connection(url)
        with pytest.raises(LeanHttpError):
            await conn.post_json("/x", {}, timeout=5)
        assert conn._writer is None
        await conn.aclose()
    assert peer.connections == 1


async def test_a_silent_server_times_out() -> None:
    handlers: list[asyncio.Task[None]] = []

    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        await reader.read()  # reads the request, answers nothing until the client leaves
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(never, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        conn = connection(f"http://127.0.0.1:{port}")
        with pytest.raises(LeanHttpError):
            await conn.post_json("/x", {}, timeout=0.2)
        await conn.aclose()
    finally:
        server.close()
        await asyncio.wait_for(asyncio.gather(*handlers), 5)
        await server.wait_closed()


def test_only_where_httpx_would_connect_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert LeanConnection.for_url("http://127.0.0.1:8080", {}) is not None
    assert LeanConnection.for_url("https://jobs.example.org", {}) is not None
    assert LeanConnection.for_url("http://example.org/prefix", {}) is None  # a path prefix
    assert LeanConnection.for_url("http://user:pw@example.org", {}) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.org:3128")
    assert LeanConnection.for_url("http://127.0.0.1:8080", {}) is None


@pytest.mark.parametrize(
    ("status", "raised"), [(503, DatabaseUnavailable), (401, ServerRefused), (409, ServerRefused)]
)
async def test_backend_maps_error_answers_like_httpx_calls(
    tmp_path: Path, status: int, raised: type[Exception]
) -> None:
    error = {"error": {"code": "x", "message": "no", "details": {}}}
    async with serving(lambda _n, _h, _b: json_answer(status, error)) as (_peer, url):
        backend = HttpBackend(
            url, "t0k", pool="default", slots=1, state_dir=tmp_path / "s", cache_dir=tmp_path / "c"
        )
        try:
            with pytest.raises(raised):
                await backend._acquire("w1", "default", 1)
        finally:
            await backend.close()


async def test_backend_acquires_through_the_lean_connection(tmp_path: Path) -> None:
    async with serving(lambda _n, _h, _b: json_answer(200, {"assignments": []})) as (peer, url):
        backend = HttpBackend(
            url, "t0k", pool="gpu", slots=2, state_dir=tmp_path / "s", cache_dir=tmp_path / "c"
        )
        try:
            assert backend._link.leans[0] is not None
            assert await backend._acquire("w1", "gpu", 2) == []
        finally:
            await backend.close()
    sent = json.loads(peer.requests[0][1])
    assert sent["worker_id"] == "w1" and sent["pool"] == "gpu" and sent["free"] == 2
