"""A job's program as a child process: spawn, pipe its output, watch its exit, signal it.

Why not ``asyncio.create_subprocess_exec``? On Python 3.11 its default child watcher
starts one thread per child to wait for it, and its transports and protocols cost more
Python per job than the job path can afford.

Here the spawn is a plain ``subprocess.Popen`` on the event loop's thread (the
``vfork`` path: the loop waits the 0.1-0.2 ms until the child has called ``exec``,
which costs less CPU than handing the spawn to another thread and its result back,
two cross-CPU wake-ups per job), the exit is watched through a pidfd registered with
the event loop (Linux 5.3+; elsewhere a waiting thread per child), and the pipes are
read with ``loop.add_reader`` callbacks that feed the :class:`LogWriter` directly: no
reader tasks, no stream objects. Semantics are those of ``subprocess.Popen``: an argv list,
never a shell; ``stdin`` is ``/dev/null``; the child starts a new session, so its pid
is also its process group id and the whole group can be signalled.

The exit status is collected with ``waitpid`` on our pid only, so this coexists with
asyncio's own child watchers (except the deprecated ones that reap every child).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

from jobyard.worker.logwriter import LogWriter

T = TypeVar("T")
_READ_SIZE = 65536
#: The mode mask of a job's files: the worker's own (0077) is not the job's business.
JOB_UMASK = 0o022
#: Wraps the spawn, e.g. to run it as the job's uid (see sandbox.py).
Launch = Callable[[Callable[[], "subprocess.Popen[bytes]"]], "subprocess.Popen[bytes]"]


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

        ``launch`` wraps the spawn (to run it as the job's uid).
        """
        proc, started_at = _popen(argv, cwd, env, launch)
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
