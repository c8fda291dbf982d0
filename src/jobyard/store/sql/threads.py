"""The threads that run PostgreSQL transactions for the event loop (see
:class:`StoreThreads`); SQLite runs its transactions inline and has none."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """Hand a thread's outcome to its waiter (on the loop; a cancelled waiter is gone)."""
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class StoreThreads:
    """A few threads running the store's transactions for the event loop.

    What ``loop.run_in_executor`` on a ``ThreadPoolExecutor`` does, with less Python on
    the loop's side of every hand-off: one queue put and one asyncio future per call,
    where the executor adds a ``concurrent.futures.Future`` (its condition lock, its
    callbacks), the chaining of the two futures and a check of its thread count. Every
    transaction on PostgreSQL crosses here twice, and the API process's profile showed
    those hand-offs at 5-10 % of its CPU under a burst.

    Same outcome as the executor: a call whose waiter was cancelled before a thread took
    it is not run; one already running runs to its end and its result is dropped.
    """

    def __init__(self, count: int, name: str) -> None:
        self._queue: queue.SimpleQueue[
            tuple[Callable[[], Any], asyncio.Future[Any], asyncio.AbstractEventLoop] | None
        ] = queue.SimpleQueue()
        self._shut = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}_{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn()`` on one of the threads; await the answer (call on the loop)."""
        if self._shut:
            raise RuntimeError("the store's threads are shut down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, future, loop))
        return future

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, future, loop = item
            if future.cancelled():  # its caller went away before it started
                continue
            try:
                value, ok = fn(), True
            except BaseException as exc:  # handed to the waiter, as the executor does
                value, ok = exc, False
            # A closed loop raises RuntimeError: nobody waits for the answer any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, ok, value)
            del item, fn, future, value

    def shutdown(self) -> None:
        """Run what is queued, then stop every thread (blocking; idempotent)."""
        self._shut = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()
        self._threads = []
