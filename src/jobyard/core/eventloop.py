"""The event loop a jobyard process runs on: uvloop's when it is installed, else asyncio's.

uvloop (libuv, in C) runs the loop itself, its timers, callbacks and sockets; asyncio's
own loop does all of that in Python. Under a burst the API process spent about a tenth
of its CPU in asyncio's loop and socket transports; on uvloop the API process's CPU
per job fell by about a sixth, the remote worker's and PostgreSQL's with it (the
figures are in docs/benchmarks.md). Nothing in jobyard needs one loop or the other:
job programs are spawned with ``subprocess.Popen`` and watched through pidfds and
``add_reader`` (:mod:`jobyard.worker.child`), which both loops serve alike.

uvloop comes with jobyard's dependencies on CPython for Linux and macOS; where it cannot
be imported (another platform, another interpreter) asyncio's loop is used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` if uvloop can be imported, else None (asyncio's)."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop of :func:`loop_factory`."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
