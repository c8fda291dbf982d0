"""The store's threads (``StoreThreads``): the hand-off of a PostgreSQL transaction from
the event loop to a thread and back keeps what ``run_in_executor`` guaranteed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from jobyard.store.sql.threads import StoreThreads

_WAIT = 10.0


async def test_answers_and_errors_come_back_from_another_thread() -> None:
    threads = StoreThreads(2, "test-store")
    try:
        loop_thread = threading.get_ident()
        ran_on = await threads.run(threading.get_ident)
        assert ran_on != loop_thread

        def fail() -> None:
            raise ValueError("from the thread")

        with pytest.raises(ValueError, match="from the thread"):
            await threads.run(fail)

        # Many calls at once: each caller gets its own answer.
        def square(n: int) -> Callable[[], int]:
            return lambda: n * n

        answers = await asyncio.gather(*(threads.run(square(n)) for n in range(50)))
        assert answers == [n * n for n in range(50)]
    finally:
        threads.shutdown()


async def test_a_call_cancelled_before_a_thread_took_it_is_not_run() -> None:
    threads = StoreThreads(1, "test-store")
    started = threading.Event()
    release = threading.Event()
    ran: list[str] = []

    def blocking() -> str:
        started.set()
        release.wait(_WAIT)
        ran.append("first")
        return "first"

    try:
        first = threads.run(blocking)
        await asyncio.to_thread(started.wait, _WAIT)
        # The only thread is busy: the second call waits in the queue, and its caller
        # goes away (a cancelled request) before it starts.
        second = asyncio.ensure_future(threads.run(lambda: ran.append("second")))
        await asyncio.sleep(0)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        release.set()
        assert await first == "first"
        # A later call runs after the cancelled one would have: it was skipped.
        await threads.run(lambda: ran.append("third"))
        assert ran == ["first", "third"]
    finally:
        release.set()
        threads.shutdown()


async def test_a_caller_cancelled_while_its_call_runs_does_not_break_the_thread() -> None:
    threads = StoreThreads(1, "test-store")
    started = threading.Event()
    release = threading.Event()
    try:

        def blocking() -> int:
            started.set()
            release.wait(_WAIT)
            return 1

        running = asyncio.ensure_future(threads.run(blocking))
        await asyncio.to_thread(started.wait, _WAIT)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        release.set()
        # The result of the abandoned call is dropped; the thread serves the next one.
        assert await asyncio.wait_for(threads.run(lambda: 2), _WAIT) == 2
    finally:
        release.set()
        threads.shutdown()


async def test_shutdown_runs_what_is_queued_then_refuses_new_calls() -> None:
    threads = StoreThreads(1, "test-store")
    release = threading.Event()
    done: list[int] = []
    queued: list[asyncio.Future[object]] = [
        threads.run(lambda: release.wait(_WAIT)),
        threads.run(lambda: done.append(1)),
        threads.run(lambda: done.append(2)),
    ]
    stopping = asyncio.ensure_future(asyncio.to_thread(threads.shutdown))
    release.set()
    await asyncio.wait_for(stopping, _WAIT)
    assert done == [1, 2]
    await asyncio.gather(*queued)
    with pytest.raises(RuntimeError, match="shut down"):
        threads.run(lambda: None)
