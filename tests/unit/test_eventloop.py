"""The processes' event loop: uvloop's when it can be imported, asyncio's otherwise."""

from __future__ import annotations

import asyncio
import sys

import pytest

from jobyard.core import eventloop


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_runs_on_uvloop_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    assert eventloop.run(_loop_type()) is uvloop.Loop


def test_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert eventloop.loop_factory() is None
    loop_type = eventloop.run(_loop_type())
    assert loop_type.__module__.startswith("asyncio")


def test_returns_the_result_and_raises_the_error() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def fail() -> None:
        raise ValueError("boom")

    assert eventloop.run(answer()) == 42
    with pytest.raises(ValueError, match="boom"):
        eventloop.run(fail())
