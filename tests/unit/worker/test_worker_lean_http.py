"""The worker's lean HTTP/1.1 connections (jobyard.worker.lean_http): the acquisition
long-poll's and those of the small calls (reports, renewals, heartbeats, log pieces).

Against real HTTP/1.1 peers on loopback (asyncio servers answering canned responses),
and through ``HttpBackend`` for the mapping of their failures and the move to another
server.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from jobyard.core.errors import DatabaseUnavailable
from jobyard.core.jobs import JobStatus
from jobyard.worker import http_backend
from jobyard.worker.http_backend import HttpBackend, ServerRefused
from jobyard.worker.lean_http import LeanConnection, LeanHttpError, dump_json, load_json

#: Gets (request number on its connection, request head, request body), returns the raw
#: answer (None: close the connection without answering), or an awaitable of it.
Answer = Callable[[int, bytes, bytes], bytes | Awaitable[bytes | None] | None]


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
                if inspect.isawaitable(raw):
                    raw = await raw
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


def backend_for(url: str, tmp_path: Path, *fallbacks: str) -> HttpBackend:
    return HttpBackend(
        url,
        "t0k",
        pool="default",
        slots=2,
        state_dir=tmp_path / "s",
        cache_dir=tmp_path / "c",
        fallbacks=fallbacks,
        patience=0.0,
    )


def dead_url() -> str:
    """A loopback URL nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def by_path(head: bytes) -> str:
    return head.split(b" ", 2)[1].decode()


def worker_calls(n: int, head: bytes, body: bytes) -> bytes | None:
    """Answers of the worker routes the small calls use."""
    path = by_path(head)
    if path == "/api/v1/worker/reports":
        reports = json.loads(body)["reports"]
        return json_answer(200, {"results": [dict(r, moved=True) for r in reports]})
    if path == "/api/v1/worker/renew":
        return json_answer(200, {"leases": {str(i): True for i in json.loads(body)["job_ids"]}})
    if path.startswith("/api/v1/worker/jobs/1/log?"):
        return json_answer(200, {"size": len(body)})
    return json_answer(404, {"error": {"code": "not_found", "message": path, "details": {}}})


def sent_by_lean(head: bytes) -> bool:
    """httpx sends these headers on every request; the lean connections do not."""
    return b"accept-encoding:" not in head.lower()


async def test_a_report_moves_to_the_second_server_on_a_lean_connection(tmp_path: Path) -> None:
    async with serving(worker_calls) as (peer, url):
        backend = backend_for(dead_url(), tmp_path, url)
        try:
            await backend.end(
                1, worker_id="w1", status=JobStatus.FINISHED, exit_code=0, reason=None
            )
            assert backend.server == url
            assert backend._link.idle[1], "the connection is kept for the next call"
        finally:
            await backend.close()
    ((head, body),) = peer.requests
    assert by_path(head) == "/api/v1/worker/reports" and sent_by_lean(head)
    assert json.loads(body)["reports"][0]["kind"] == "end"
    assert b"Content-Type: application/json\r\n" in head


async def test_a_renewal_moves_on_after_503_and_unavailable_everywhere_is_retried(
    tmp_path: Path,
) -> None:
    busy = {"error": {"code": "database_unavailable", "message": "later", "details": {}}}
    async with (
        serving(lambda _n, _h, _b: json_answer(503, busy)) as (_first, first),
        serving(worker_calls) as (second_peer, second),
    ):
        backend = backend_for(first, tmp_path, second)
        try:
            assert await backend.renew(worker_id="w1", job_ids=[7]) == {7: True}
            assert backend.server == second
        finally:
            await backend.close()
        alone = backend_for(first, tmp_path)
        try:
            with pytest.raises(DatabaseUnavailable):
                await alone.renew(worker_id="w1", job_ids=[7])
        finally:
            await alone.close()
    assert sent_by_lean(second_peer.requests[0][0])


async def test_a_report_does_not_wait_behind_the_long_poll(tmp_path: Path) -> None:
    polled, release = asyncio.Event(), asyncio.Event()

    async def answer(n: int, head: bytes, body: bytes) -> bytes | None:
        if by_path(head) == "/api/v1/worker/acquire":
            polled.set()
            await release.wait()
            return json_answer(200, {"assignments": []})
        return worker_calls(n, head, body)

    async with serving(answer) as (peer, url):
        backend = backend_for(url, tmp_path)
        try:
            polling = asyncio.ensure_future(backend._acquire("w1", "default", 1))
            await asyncio.wait_for(polled.wait(), 5)
            await asyncio.wait_for(
                backend.end(1, worker_id="w1", status=JobStatus.FAILED, exit_code=1, reason="x"),
                5,
            )
            assert not polling.done()
            release.set()
            assert await polling == []
        finally:
            await backend.close()
    assert peer.connections == 2


async def test_a_log_piece_goes_as_raw_bytes_with_its_offset(tmp_path: Path) -> None:
    async with serving(worker_calls) as (peer, url):
        backend = backend_for(url, tmp_path)
        try:
            backend._worker_id = "w1"
            path = Path(backend.log_path(1))
            path.parent.mkdir(parents=True)
            path.write_bytes(b"hello\n")
            await backend.log_closed(1)
        finally:
            await backend.close()
    ((head, body),) = [r for r in peer.requests if b"/log?" in r[0]]
    assert by_path(head) == "/api/v1/worker/jobs/1/log?worker_id=w1&offset=0"
    assert body == b"hello\n" and sent_by_lean(head) and b"content-type" not in head.lower()


async def test_a_kept_connection_closed_by_the_server_is_replaced_not_failed(
    tmp_path: Path,
) -> None:
    # The second request on a connection finds it closed (a keep-alive timeout racing
    # the request): the call goes again on a new connection, with no move and no error.
    async with serving(lambda n, h, b: None if n == 2 else worker_calls(n, h, b)) as (
        peer,
        url,
    ):
        backend = backend_for(url, tmp_path)
        try:
            assert await backend.renew(worker_id="w1", job_ids=[1]) == {1: True}
            assert await backend.renew(worker_id="w1", job_ids=[2]) == {2: True}
        finally:
            await backend.close()
    assert peer.connections == 2 and len(peer.requests) == 3


async def test_with_a_proxy_configured_the_small_calls_stay_on_httpx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # httpx goes direct; lean stands aside
    async with serving(worker_calls) as (peer, url):
        backend = backend_for(url, tmp_path)
        try:
            assert await backend.renew(worker_id="w1", job_ids=[3]) == {3: True}
        finally:
            await backend.close()
    assert not sent_by_lean(peer.requests[0][0])


def test_json_is_compact_utf8_and_what_orjson_refuses_goes_through_json() -> None:
    assert dump_json({"a": [1, None], "é": "x"}) == '{"a":[1,null],"é":"x"}'.encode()
    # orjson refuses these; the json module took them before and still does.
    assert dump_json({"reason": "bad \udcff name"}) == b'{"reason":"bad \\udcff name"}'
    assert dump_json({1: 2**70}) == b'{"1":1180591620717411303424}'
    with pytest.raises(TypeError):
        dump_json({"when": object()})
    assert load_json(b'{"a":"\\udcff","b":NaN}')["a"] == "\udcff"
    assert load_json(b"\xef\xbb\xbf[1]") == [1]
    with pytest.raises(ValueError):
        load_json(b"{not json")


async def test_an_answer_neither_json_module_reads_comes_back_as_text() -> None:
    raw = b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 9\r\n\r\n<html>no!"
    async with serving(lambda _n, _h, _b: raw) as (_peer, url):
        conn = connection(url)
        assert await conn.post_json("/x", {}, timeout=5) == (502, "<html>no!")
        await conn.aclose()


async def test_a_log_is_first_looked_at_one_period_after_it_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_backend, "LOG_POLL_SECONDS", 0.05)
    async with serving(worker_calls) as (peer, url):
        backend = backend_for(url, tmp_path)
        try:
            backend._worker_id = "w1"
            path = Path(backend.log_path(1))
            tail = backend._tails[1]
            assert tail.task is None and tail.timer is not None, "no task for a short job"
            path.parent.mkdir(parents=True)
            path.write_bytes(b"early\n")
            # Sent by the follower, and its answer read, before the log is closed (closing
            # while the piece's answer is on its way cancels the follower, and the piece
            # is sent again from the last offset the server confirmed).
            for _ in range(100):
                if tail.sent:
                    break
                await asyncio.sleep(0.02)
            assert tail.task is not None
            await backend.log_closed(1)
            assert tail.timer is None and tail.task is None
        finally:
            await backend.close()
    ((_head, body),) = peer.requests
    assert body == b"early\n"


async def test_a_log_closed_before_its_first_look_starts_no_follower(tmp_path: Path) -> None:
    async with serving(worker_calls) as (peer, url):
        backend = backend_for(url, tmp_path)
        try:
            backend._worker_id = "w1"
            backend.log_path(1)
            backend.log_path(2)
            tails = backend._tails[1], backend._tails[2]
            await backend.log_closed(1)  # nothing written: nothing sent
            backend.forget(2)
            await asyncio.sleep(http_backend.LOG_POLL_SECONDS + 0.1)
            assert all(t.timer is None and t.task is None for t in tails)
        finally:
            await backend.close()
    assert peer.requests == []


async def test_the_running_answer_is_a_future_with_the_reports_outcome(tmp_path: Path) -> None:
    async with serving(worker_calls) as (_peer, url):
        backend = backend_for(url, tmp_path)
        try:
            running = backend.set_running(1, worker_id="w1", pid=7)
            assert isinstance(running, asyncio.Future)  # awaited without a task
            assert await asyncio.wait_for(running, 5) is True
        finally:
            await backend.close()
    backend = backend_for(dead_url(), tmp_path)
    try:
        with pytest.raises(DatabaseUnavailable):
            await asyncio.wait_for(backend.set_running(2, worker_id="w1", pid=8), 5)
    finally:
        await backend.close()
