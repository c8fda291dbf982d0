"""A job's program as a child process: spawn, pipe its output, watch its exit, signal it.

Why not ``asyncio.create_subprocess_exec``? On Python 3.11 its default child watcher
starts one thread per child to wait for it, and its transports and protocols cost more
Python per job than the job path can afford.

Here the spawn is ``subprocess.Popen``'s own spawning primitive (or ``Popen`` itself on
Python versions whose primitive is not known) called on the event loop's thread (the
``vfork`` path: the loop waits the 0.1-0.2 ms until the child has called ``exec``,
which costs less CPU than handing the spawn to another thread and its result back,
two cross-CPU wake-ups per job), with pipes made here and one ``/dev/null`` kept open
for every child's stdin; the exit is watched through a pidfd registered with
the event loop (Linux 5.3+; elsewhere a waiting thread per child), and the pipes are
read by callbacks that feed the :class:`LogWriter` directly: no reader tasks, no
stream objects. Those descriptors are watched by one epoll of the worker's own, itself
registered once with the event loop (see :class:`_Readers`). Semantics are those of
``subprocess.Popen``: an argv list, never a shell; ``stdin`` is ``/dev/null``; the child
starts a new session, so its pid is also its process group id and the whole group can be
signalled.

The exit status is collected with ``waitpid`` on our pid only, so this coexists with
asyncio's own child watchers (except the deprecated ones that reap every child).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from jobyard.worker.logwriter import LogWriter

_READ_SIZE = 65536
#: The mode mask of a job's files: the worker's own (0077) is not the job's business.
JOB_UMASK = 0o022
#: ``_posixsubprocess.fork_exec``'s parameters are those of these Python versions
#: (checked in their ``subprocess.py``); any other version spawns through ``Popen``.
_FORK_EXEC_VERSIONS = ((3, 11), (3, 12), (3, 13))
_fork_exec: Callable[..., int] | None = None
if sys.version_info[:2] in _FORK_EXEC_VERSIONS:
    with contextlib.suppress(ImportError, AttributeError):
        import _posixsubprocess

        _fork_exec = _posixsubprocess.fork_exec


class Process:
    """A spawned program: its pid and, once reaped, its exit status.

    ``returncode`` is ``Popen``'s: the exit code, or minus the signal that killed it.
    """

    __slots__ = ("_lock", "_popen", "pid", "returncode")

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._lock = threading.Lock()
        self._popen = popen

    def wait(self) -> int:
        """Reap the program (blocking until it exits) and return its exit status."""
        with self._lock:
            if self.returncode is None:
                if self._popen is not None:
                    self.returncode = self._popen.wait()
                else:
                    try:
                        _, status = os.waitpid(self.pid, 0)
                    except ChildProcessError:  # reaped elsewhere: as Popen, status unknown
                        status = 0
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode


#: Wraps the spawn, e.g. to run it as the job's uid (see sandbox.py).
Launch = Callable[[Callable[[], Process]], Process]

_devnull: int | None = None
#: (PATH, program) -> the paths ``execve`` tries, as ``Popen`` builds them.
_exec_paths: dict[tuple[str | None, str], tuple[bytes, ...]] = {}


def _stdin() -> int:
    """One ``/dev/null`` descriptor, opened once, for every program's stdin."""
    global _devnull
    if _devnull is None:
        _devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    return _devnull


def _executable_list(program: str, env: Mapping[str, str]) -> tuple[bytes, ...]:
    """Where to look for ``program``: itself if it has a ``/``, else each PATH folder."""
    key = (env.get("PATH"), program)
    found = _exec_paths.get(key)
    if found is None:
        executable = os.fsencode(program)
        if os.path.dirname(executable):
            found = (executable,)
        else:
            found = tuple(
                os.path.join(os.fsencode(folder), executable) for folder in os.get_exec_path(env)
            )
        if len(_exec_paths) >= 256:
            _exec_paths.clear()
        _exec_paths[key] = found
    return found


def _spawn(
    argv: Sequence[str], cwd: str, env: Mapping[str, str], stdout: int, stderr: int
) -> Process:
    """Start ``argv`` (stdin /dev/null, stdout/stderr to the given pipe ends) in a new
    session, as ``subprocess.Popen`` would, raising the same ``OSError`` if exec fails.

    Where it can, it calls ``Popen``'s own spawning primitive directly (same ``vfork``,
    same child-side steps): ``Popen`` itself costs ~40 µs more per job in Python and
    system calls (its pipes' file objects, an ExitStack, the PATH list rebuilt each time).
    """
    if _fork_exec is None:
        popen = subprocess.Popen(
            list(argv), stdin=_stdin(), stdout=stdout, stderr=stderr, cwd=cwd,
            env=env, start_new_session=True, umask=JOB_UMASK,
        )  # fmt: skip
        return Process(popen.pid, popen)
    args = list(argv)
    sys.audit("subprocess.Popen", args[0], args, cwd, env)
    env_list = []
    for name, value in env.items():
        key = os.fsencode(name)
        if b"=" in key:
            raise ValueError("illegal environment variable name")
        env_list.append(key + b"=" + os.fsencode(value))
    executables = _executable_list(args[0], env)
    errpipe_read, errpipe_write = os.pipe()
    low = []
    while errpipe_write < 3:  # it must not land on the child's 0, 1 or 2
        low.append(errpipe_write)
        errpipe_write = os.dup(errpipe_write)
    for fd in low:
        os.close(fd)
    try:
        try:
            pid = _fork_exec(
                args, executables, True, (errpipe_write,), cwd, env_list,
                _stdin(), -1, -1, stdout, -1, stderr,
                errpipe_read, errpipe_write,
                True, True, -1, None, None, None, JOB_UMASK, None, True,
            )  # fmt: skip
        finally:
            os.close(errpipe_write)
        # The child closes its end of the error pipe by exec (close-on-exec): end of
        # file means it runs; data is why exec failed.
        failure = bytearray()
        while True:
            part = os.read(errpipe_read, 50000)
            failure += part
            if not part or len(failure) > 50000:
                break
    finally:
        os.close(errpipe_read)
    if failure:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise _exec_error(bytes(failure), args[0], cwd)
    return Process(pid)


def _exec_error(data: bytes, program: str, cwd: str) -> BaseException:
    """The exception ``Popen`` raises for the child's report of a failed exec."""
    try:
        name, hex_errno, raw = data.split(b":", 2)
        message = raw.decode()
    except ValueError:
        name, hex_errno = b"SubprocessError", b"0"
        message = f"Bad exception data from child: {data!r}"
    kind = getattr(builtins, name.decode("ascii"), subprocess.SubprocessError)
    if not (isinstance(kind, type) and issubclass(kind, BaseException)):
        kind = subprocess.SubprocessError
    if issubclass(kind, OSError) and hex_errno:
        number = int(hex_errno, 16)
        filename = cwd if message == "noexec" else program  # "noexec": chdir(cwd) failed
        if message == "noexec":
            message = ""
        if number != 0:
            message = os.strerror(number)
        return kind(number, message, filename)
    return kind(message)


class _Readers:
    """Read callbacks for the children's descriptors (pipes, pidfds) of one event loop.

    Linux: one epoll of our own, registered once with the loop; a descriptor costs one
    ``epoll.register`` and one ``unregister`` (C calls, ~1 µs each) instead of
    ``loop.add_reader``/``remove_reader`` (~4 µs of Python each, three descriptors per
    job), and ready descriptors' callbacks run from the loop's one callback for the
    epoll, in the same loop iteration. Elsewhere, plainly the loop's readers.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak: the loop's table of these objects must not keep the loop alive.
        self._loop_ref = weakref.ref(loop)
        self._callbacks: dict[int, Callable[[], object]] = {}
        self._epoll: select.epoll | None = None
        if hasattr(select, "epoll"):
            self._epoll = select.epoll()
            loop.add_reader(self._epoll.fileno(), self._ready)
            weakref.finalize(self, self._epoll.close)

    def add(self, fd: int, callback: Callable[[], object]) -> None:
        """Call ``callback()`` on the loop whenever ``fd`` is readable."""
        if self._epoll is None:
            self._loop().add_reader(fd, callback)
            return
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback

    def remove(self, fd: int) -> None:
        """Stop watching ``fd`` (before closing it)."""
        if self._epoll is None:
            self._loop().remove_reader(fd)
        elif self._callbacks.pop(fd, None) is not None:
            self._epoll.unregister(fd)

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop_ref()
        if loop is None:  # pragma: no cover - only called from the living loop
            raise RuntimeError("the event loop is gone")
        return loop

    def _ready(self) -> None:
        if self._epoll is None:  # pragma: no cover - only registered with an epoll
            return
        for fd, _events in self._epoll.poll(0):
            callback = self._callbacks.get(fd)  # None: removed by an earlier callback
            if callback is None:
                continue
            try:
                callback()
            except Exception as exc:  # as the loop does for a reader's callback
                self._loop().call_exception_handler(
                    {"message": "exception in a job's read callback", "exception": exc}
                )


_loop_readers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Readers] = (
    weakref.WeakKeyDictionary()
)


def _readers(loop: asyncio.AbstractEventLoop) -> _Readers:
    readers = _loop_readers.get(loop)
    if readers is None:
        readers = _loop_readers[loop] = _Readers(loop)
    return readers


def _popen(
    argv: Sequence[str], cwd: str | Path, env: Mapping[str, str], launch: Launch | None
) -> tuple[Process, float, int, int]:
    """The started program, when it started (``time.time()`` once exec succeeded) and the
    read ends of its stdout and stderr pipes."""
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    try:

        def spawn() -> Process:
            return _spawn(argv, os.fspath(cwd), env, out_write, err_write)

        proc = spawn() if launch is None else launch(spawn)
    except BaseException:
        os.close(out_read)
        os.close(err_read)
        raise
    finally:
        os.close(out_write)
        os.close(err_write)
    return proc, time.time(), out_read, err_read


class Child:
    """A running program whose stdout/stderr go to a :class:`LogWriter`.

    ``exited`` resolves when the main process has exited (``returncode`` is then set);
    ``closed`` resolves when both pipes reached end of file, which may be later if
    processes it started still hold them.
    """

    def __init__(
        self,
        proc: Process,
        writer: LogWriter,
        pipes: tuple[int, int],
        started_at: float | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._readers = _readers(self._loop)
        self.proc = proc
        self.pid = proc.pid
        #: When the program started (``time.time()``), taken in the spawning thread.
        self.started_at = time.time() if started_at is None else started_at
        self.writer = writer
        self.exited: asyncio.Future[None] = self._loop.create_future()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        #: Read ends of the program's stdout and stderr -> their stream names.
        self._pipes: dict[int, str] = {}
        self._pidfd: int | None = None
        #: Called (once, on the loop) when the main process has exited, before the
        #: callbacks of ``exited``: lets a waiter wake one loop iteration sooner.
        self.on_exit: Callable[[], None] | None = None
        for stream, fd in zip(("out", "err"), pipes, strict=True):
            os.set_blocking(fd, False)
            self._pipes[fd] = stream
            self._readers.add(fd, functools.partial(self._readable, fd))
        self._watch_exit()

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        cwd: str | Path,
        env: Mapping[str, str],
        writer: LogWriter,
        launch: Launch | None = None,
    ) -> Child:
        """Start ``argv`` in ``cwd`` with exactly ``env``; raises ``OSError`` if exec fails.

        ``launch`` wraps the spawn (to run it as the job's uid).
        """
        proc, started_at, out, err = _popen(argv, cwd, env, launch)
        return cls(proc, writer, (out, err), started_at)

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
        self._readers.add(self._pidfd, self._pidfd_readable)

    def _pidfd_readable(self) -> None:
        if self._pidfd is not None:
            self._readers.remove(self._pidfd)
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
            if self.on_exit is not None:
                self.on_exit()

    # -- pipes -------------------------------------------------------------------------------
    def _readable(self, fd: int) -> None:
        stream = self._pipes.get(fd)
        if stream is None:
            return
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.writer.feed(stream, data)
        else:
            self._close_pipe(fd)

    def _close_pipe(self, fd: int) -> None:
        stream = self._pipes.pop(fd)
        self._readers.remove(fd)
        os.close(fd)
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
            self._readers.remove(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
            if self.proc.returncode is None:  # released before its exit: reap it anyway
                threading.Thread(target=self.proc.wait, daemon=True).start()
