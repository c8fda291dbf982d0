"""The listening socket ``jobyard up`` binds before anything starts (so port 0 works)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from jobyard.server import _bind


async def test_accepted_connections_do_not_wait_for_delayed_acks() -> None:
    """Answers leave at once: accepted sockets get TCP_NODELAY (asyncio sets it only on
    sockets whose protocol is TCP; a plain ``socket()`` made every answer wait ~40 ms)."""
    sock = _bind("127.0.0.1", 0)
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = writer.get_extra_info("socket")
        seen.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(handler, sock=sock)
    try:
        port = sock.getsockname()[1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(seen, 10) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


def test_a_busy_port_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=f"cannot listen on 127.0.0.1:{port}"):
            _bind("127.0.0.1", port)
