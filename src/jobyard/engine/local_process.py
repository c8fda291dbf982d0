"""Local worker slots in their own process, beside the API process of ``jobyard up``.

Why: a job's life costs a few milliseconds of Python (HTTP, SQL, spawning, reporting);
in one process all of it shares one GIL. Running the slots in a child process lets the
API and the workers use two cores. The child talks to the database itself (it is the
same host and the same ``Store``), and to its parent over a socket pair carrying JSON
lines:

* parent -> child: ``{"op": "wake", "fresh": bool}`` (work was queued; fresh: this
  child is told first, see :meth:`jobyard.engine.bus.Bus.work_available`),
  ``{"op": "abort", "job": N, "reason": "..."}``, ``{"op": "stop"}`` (abort running
  jobs, report them, exit);
* child -> parent: ``{"op": "ready"}``, ``{"op": "changed", "job": N}`` (a job ended:
  wakes log followers and abort waiters at once instead of at their next poll, and the
  other servers of a PostgreSQL database, whose slots may take what the end promoted).

The child dies with its parent (``PR_SET_PDEATHSIG``): after a ``kill -9`` of the
server, its job programs are orphans exactly as with in-process slots, and the next
start ends those jobs FAILED and kills the programs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from jobyard.engine.bus import Bus
from jobyard.settings import Settings

log = logging.getLogger("jobyard.workers")

_FD_ENV = "JOBYARD_WORKER_CONTROL_FD"
_PARENT_ENV = "JOBYARD_WORKER_PARENT_PID"
_READY_TIMEOUT = 60.0


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class WorkerProcess:
    """Parent side: start, feed and stop one worker child process."""

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        *,
        slots: int,
        index: int,
        on_death: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self._settings = settings.model_copy(update={"workers": slots})
        self._bus = bus
        self._index = index
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._wake_pending = False
        self._stopping = False
        self._registered = False
        self._restarts = 0
        self._on_death = on_death
        self._restart_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Spawn the child and wait until it has opened the store and is acquiring."""
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ)
        env[_FD_ENV] = str(child_sock.fileno())
        env[_PARENT_ENV] = str(os.getpid())
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jobyard.engine.local_process",
            env=env, pass_fds=(child_sock.fileno(),), stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        child_sock.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=parent_sock)
        # Settings travel over the socket, not the environment (they may hold secrets).
        self._writer.write(self._settings.model_dump_json().encode() + b"\n")
        self._reader_task = asyncio.create_task(self._read_loop(reader))
        ready = asyncio.create_task(self._ready.wait())
        done, _ = await asyncio.wait(
            {ready, self._reader_task}, timeout=_READY_TIMEOUT,
            return_when=asyncio.FIRST_COMPLETED,
        )  # fmt: skip
        if ready not in done:
            ready.cancel()
            await self.kill()
            raise RuntimeError(f"worker process {self._index} did not start")
        if not self._registered:
            self._registered = True
            self._bus.on_work(self.wake)
            self._bus.on_abort(self.abort)

    def _send(self, message: dict[str, Any]) -> bool:
        if self._writer is None or self._writer.is_closing():
            return False
        self._writer.write(_encode(message))
        return True

    def wake(self, fresh: bool = True) -> None:
        """Forward a wake-up now; more in the same loop turn are one message."""
        if not self._wake_pending:
            self._wake_pending = True
            self._send({"op": "wake", "fresh": fresh})
            asyncio.get_running_loop().call_soon(self._wake_sent)

    def _wake_sent(self) -> None:
        self._wake_pending = False

    def abort(self, job_id: int, reason: str) -> bool:
        """Ask the child to stop ``job_id`` now (it ignores jobs it does not hold)."""
        return self._send({"op": "abort", "job": job_id, "reason": reason})

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("op") == "changed":
                self._bus.job_ended_by_worker(int(message["job"]))
            elif message.get("op") == "ready":
                self._ready.set()
        if not self._stopping:
            self._restart_task = asyncio.create_task(self._restart())

    async def _restart(self) -> None:
        """The child died on its own: end its jobs FAILED, then start a new one."""
        code = await self._proc.wait() if self._proc is not None else None
        if self._on_death is not None and self._proc is not None:
            try:
                await self._on_death(self._proc.pid)
            except Exception:
                log.exception("could not end the jobs of worker process %d", self._index)
        self._restarts += 1
        delay = min(30.0, 0.5 * 2 ** min(self._restarts, 6))
        log.error(
            "worker process %d exited unexpectedly (code %s); restarting in %.1f s",
            self._index, code, delay,
        )  # fmt: skip
        await asyncio.sleep(delay)
        if self._stopping:
            return
        self._ready = asyncio.Event()
        try:
            await self.start()
        except Exception:
            log.exception("worker process %d could not be restarted", self._index)
            if not self._stopping:
                self._restart_task = asyncio.create_task(self._restart())

    async def stop(self, grace: float) -> None:
        """Ask the child to stop its jobs and exit; kill it after ``grace`` seconds."""
        self._stopping = True
        if self._restart_task is not None:
            self._restart_task.cancel()
        if self._proc is None:
            return
        self._send({"op": "stop"})
        try:
            await asyncio.wait_for(self._proc.wait(), grace)
        except TimeoutError:
            await self.kill()
        await self._close()

    async def kill(self) -> None:
        """Kill the child at once."""
        self._stopping = True
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()
        await self._close()

    async def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._reader_task, 5)


class _ForwardingBus(Bus):
    """The child's bus: job changes also go to the parent."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        super().__init__()
        self._writer = writer

    def job_changed(self, job_id: int) -> None:
        super().job_changed(job_id)
        if not self._writer.is_closing():
            self._writer.write(_encode({"op": "changed", "job": job_id}))


def _die_with_parent(parent_pid: int) -> None:
    """Get SIGKILL when the parent dies (Linux); exit now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        os._exit(1)


async def _follow_parent(reader: asyncio.StreamReader, bus: Bus) -> bool:
    """Apply the parent's messages; True once it says "stop", False if it vanished."""
    while line := await reader.readline():
        message = json.loads(line)
        op = message.get("op")
        if op == "wake":
            bus.work_available(fresh=message.get("fresh") is True)
        elif op == "abort":
            bus.request_abort(int(message["job"]), str(message.get("reason") or "aborted"))
        elif op == "stop":
            return True
    return False


async def _child_main(fd: int) -> None:
    from jobyard.blobs.open import open_blob_store
    from jobyard.engine.local_backend import local_worker_pool
    from jobyard.store.factory import open_store

    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
    settings = Settings.model_validate_json(await reader.readline())
    store = await open_store(settings.effective_database_url, migrate=False)
    bus = _ForwardingBus(writer)
    pool = local_worker_pool(
        settings,
        store,
        open_blob_store(
            settings.blobs_url,
            folder=settings.effective_blobs_dir,
            endpoint_url=settings.s3_endpoint_url,
        ),
        bus,
    )
    run = asyncio.create_task(pool.run())
    writer.write(_encode({"op": "ready"}))
    try:
        if not await _follow_parent(reader, bus):
            # The socket closed without "stop": the parent died (kill -9). The kernel
            # closes a dying process's sockets before it sends PR_SET_PDEATHSIG, so this
            # end of file can come first. Exit now, as that SIGKILL would: the job
            # programs stay orphans for the next start to end FAILED and kill, instead of
            # being aborted halfway by a worker about to be killed.
            os._exit(1)
    finally:
        await pool.stop()
        await run
        await store.close()
        writer.close()


def main() -> None:
    """Entry point of a worker child process (``python -m jobyard.engine.local_process``)."""
    _die_with_parent(int(os.environ[_PARENT_ENV]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: parent decides
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_child_main(int(os.environ[_FD_ENV])))


if __name__ == "__main__":
    main()
