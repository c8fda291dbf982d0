"""A job's program as a child process: spawn, pipe its output, watch its exit, signal it.

Why not ``asyncio.create_subprocess_exec``? Two costs on every job's path:

- the spawn (``vfork`` + ``exec``) runs on the event loop thread and blocks it for
  the whole exec, 1-2 ms per job, stalling the API and every other job meanwhile;
- on Python 3.11 the default child watcher starts one thread per child to wait for it.

Here the spawn runs in a small dedicated thread pool (``_posixsubprocess`` releases
the GIL), the exit is watched through a pidfd registered with the event loop (Linux
5.3+; elsewhere a waiting thread per child), and the pipes are read with
``loop.add_reader`` callbacks that feed the :class:`LogWriter` directly: no reader
tasks, no stream objects. Semantics are those of ``subprocess.Popen``: an argv list,
never a shell; ``stdin`` is ``/dev/null``; the child starts a new session, so its pid
is also its process group id and the whole group can be signalled.

The exit status is collected with ``waitpid`` on our pid only, so this coexists with
asyncio's own child watchers (except the deprecated ones that reap every child).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from jobyard.worker.logwriter import LogWriter

T = TypeVar("T")
_READ_SIZE = 65536
#: The mode mask of a job's files: the worker's own (0077) is not the job's business.
JOB_UMASK = 0o022
#: Runs the spawn inside the spawn thread, e.g. as the job's uid (see sandbox.py).
Launch = Callable[[Callable[[], "subprocess.Popen[bytes]"]], "subprocess.Popen[bytes]"]

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


class _SpawnThreads:
    """A few dedicated threads running calls handed over by event loops.

    Lighter than a ``ThreadPoolExecutor`` with ``run_in_executor``: one queue put hands
    a call over, one ``call_soon_threadsafe`` hands its result back (measured here at
    19-24 µs of CPU per round trip against 43-46 µs), and every job crosses twice (its
    spawn, then the kill of its uid's processes). The threads start on first use and
    do nothing else, so a credential switch inside a call never leaks into other work.
    """

    def __init__(self, count: int) -> None:
        self._count = count
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._started = False
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn`` in a spawn thread; its result (or error) lands in the future."""
        if not self._started:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, future, fn))
        return future

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            for index in range(self._count):
                threading.Thread(
                    target=self._serve, name=f"jobyard-spawn-{index}", daemon=True
                ).start()
            self._started = True

    def _serve(self) -> None:
        while True:
            loop, future, fn = self._calls.get()
            try:
                result, error = fn(), None
            except BaseException as exc:  # handed to the caller, as run_in_executor does
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


_spawn_threads = _SpawnThreads(2)


async def in_spawn_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a spawn thread: where a job's uid may borrow the thread's credentials.

    Never in the event loop's thread: a credential change resets that thread's
    parent-death signal, which ties worker processes to the server's life.
    """
    return await _spawn_threads.submit(fn)


def _popen(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str], launch: Launch | None
) -> tuple[subprocess.Popen[bytes], float]:
    """The started program and when it started (``time.time()`` once exec succeeded)."""

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            umask=JOB_UMASK,
        )

    proc = spawn() if launch is None else launch(spawn)
    return proc, time.time()


class Child:
    """A running program whose stdout/stderr go to a :class:`LogWriter`.

    ``exited`` resolves when the main process has exited (``returncode`` is then set);
    ``closed`` resolves when both pipes reached end of file, which may be later if
    processes it started still hold them.
    """

    def __init__(
        self, proc: subprocess.Popen[bytes], writer: LogWriter, started_at: float | None = None
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.proc = proc
        self.pid = proc.pid
        #: When the program started (``time.time()``), taken in the spawning thread.
        self.started_at = time.time() if started_at is None else started_at
        self.writer = writer
        self.exited: asyncio.Future[None] = self._loop.create_future()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._pipes: dict[int, tuple[str, IO[bytes]]] = {}
        self._pidfd: int | None = None
        for stream, pipe in (("out", proc.stdout), ("err", proc.stderr)):
            if pipe is None:  # pragma: no cover - both are always PIPE
                raise RuntimeError("a job's output pipe is missing")
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            self._pipes[fd] = (stream, pipe)
            self._loop.add_reader(fd, self._readable, fd)
        self._watch_exit()

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        writer: LogWriter,
        launch: Launch | None = None,
    ) -> Child:
        """Start ``argv`` in ``cwd`` with exactly ``env``; raises ``OSError`` if exec fails.

        ``launch`` wraps the spawn in the spawn thread (to run it as the job's uid).
        """
        fut = _spawn_threads.submit(functools.partial(_popen, argv, cwd, env, launch))
        try:
            proc, started_at = await asyncio.shield(fut)
        except asyncio.CancelledError:
            # The spawn may still succeed in its thread: never leave that program behind.
            fut.add_done_callback(_discard_spawned)
            raise
        return cls(proc, writer, started_at)

    @property
    def returncode(self) -> int | None:
        """Exit status as ``Popen.returncode`` (negative: killed by that signal)."""
        return self.proc.returncode

    # -- signals -----------------------------------------------------------------------------
    def signal_group(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the program's whole process group (gone already: no-op)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    # -- exit --------------------------------------------------------------------------------
    def _watch_exit(self) -> None:
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            threading.Thread(target=self._wait_in_thread, daemon=True).start()
            return
        self._loop.add_reader(self._pidfd, self._pidfd_readable)

    def _pidfd_readable(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        self.proc.wait()  # it has exited: this reaps it without blocking
        self._set_exited()

    def _wait_in_thread(self) -> None:
        self.proc.wait()
        with contextlib.suppress(RuntimeError):  # loop closed meanwhile
            self._loop.call_soon_threadsafe(self._set_exited)

    def _set_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    # -- pipes -------------------------------------------------------------------------------
    def _readable(self, fd: int) -> None:
        entry = self._pipes.get(fd)
        if entry is None:
            return
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.writer.feed(entry[0], data)
        else:
            self._close_pipe(fd)

    def _close_pipe(self, fd: int) -> None:
        stream, pipe = self._pipes.pop(fd)
        self._loop.remove_reader(fd)
        pipe.close()
        self.writer.finish_stream(stream)
        if not self._pipes and not self.closed.done():
            self.closed.set_result(None)

    def close_pipes(self) -> None:
        """Stop reading (pipes still held open by an escaped process); idempotent."""
        for fd in list(self._pipes):
            self._close_pipe(fd)

    def release(self) -> None:
        """Free every descriptor; call once the child is finished with (idempotent).

        Called before the exit (a cancelled job whose group was just killed), the
        exit status is still collected, in a thread, so no zombie is left behind.
        """
        self.close_pipes()
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
            if self.proc.returncode is None:  # released before its exit: reap it anyway
                threading.Thread(target=self.proc.wait, daemon=True).start()


def _discard_spawned(fut: asyncio.Future[tuple[subprocess.Popen[bytes], float]]) -> None:
    """Kill a program whose spawn completed after its job was cancelled."""
    if fut.cancelled() or fut.exception() is not None:
        return
    proc, _started_at = fut.result()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    threading.Thread(target=proc.wait, daemon=True).start()
