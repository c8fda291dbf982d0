"""A response's head and body leave in one write (``api/headlimit.WriteJoiner``)."""

from __future__ import annotations

import asyncio
from typing import Any

from jobyard.api.headlimit import WriteJoiner


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return f"info {name}"


def _joiner() -> tuple[WriteJoiner, _Transport]:
    transport = _Transport()
    return WriteJoiner(transport, asyncio.get_running_loop()), transport  # type: ignore[arg-type]


async def test_a_head_and_the_body_after_it_leave_as_one_write() -> None:
    joiner, transport = _joiner()
    joiner.write(b"HTTP/1.1 201 Created\r\n\r\n")
    assert transport.writes == []  # held
    joiner.write(b'{"id": 1}')
    assert transport.writes == [b'HTTP/1.1 201 Created\r\n\r\n{"id": 1}']
    await asyncio.sleep(0)
    assert transport.writes == [b'HTTP/1.1 201 Created\r\n\r\n{"id": 1}']  # nothing left


async def test_a_write_alone_leaves_at_the_end_of_the_turn_in_order() -> None:
    joiner, transport = _joiner()
    joiner.write(b"head")  # a streamed response's head: its first chunk comes later
    await asyncio.sleep(0)
    assert transport.writes == [b"head"]
    joiner.write(b"chunk 1")
    joiner.write(b"chunk 2")
    joiner.write(b"chunk 3")
    await asyncio.sleep(0)
    assert b"".join(transport.writes) == b"headchunk 1chunk 2chunk 3"
    assert transport.writes[1] == b"chunk 1chunk 2"


async def test_closing_writes_what_is_held_first() -> None:
    joiner, transport = _joiner()
    joiner.write(b"head")
    joiner.close()
    assert transport.writes == [b"head"] and transport.closed
    assert joiner.is_closing()
    await asyncio.sleep(0)
    assert transport.writes == [b"head"]


async def test_what_is_held_when_the_connection_went_away_is_dropped() -> None:
    joiner, transport = _joiner()
    joiner.write(b"head")
    transport.closed = True  # the peer hung up before the end of the turn
    await asyncio.sleep(0)
    assert transport.writes == []


async def test_other_calls_reach_the_transport() -> None:
    joiner, _ = _joiner()
    assert joiner.get_extra_info("peername") == "info peername"
