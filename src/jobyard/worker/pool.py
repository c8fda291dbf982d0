"""A worker: N slots of one pool, acquiring jobs and running them concurrently.

The same class serves the local slots of ``jobyard up`` and a remote ``jobyard
worker``; only the :class:`~jobyard.worker.protocol.WorkerBackend` differs.

- **Acquisition** claims as many jobs as there are free slots in one call; with no
  work it waits on ``backend.wait_for_work`` (woken by a submit, else ~1 s), and with
  every slot busy it waits for one to free up (no polling).
- **Leases** are renewed every ``heartbeat_seconds`` for every held job. A job the
  control plane marks ``abort_requested`` is aborted; a job missing from the answer
  (lease lost: the control plane ended it or gave it away) is killed and *not*
  reported. If renewals keep failing for longer than ``lease_seconds``, every held job
  is dropped the same way, because the control plane will consider it lost — unless
  they fail because the control plane's database is unreachable
  (``DatabaseUnavailable``): then nobody can sweep leases either, the control plane
  does not count that time against them, and the jobs keep running; the first renewal
  that gets through says which of them are still held.
- **Heartbeats** report the worker's health (running count, draining) on the same beat.
  Their answer may say an admin asked the worker to drain: it then claims no new jobs
  and lets the running ones finish. With ``exit_on_drain`` (a remote ``jobyard worker``)
  :meth:`run` then returns and the process exits; without it (the local slots of
  ``jobyard up``, whose worker processes the server would restart as fresh workers)
  the pool stays up, idle, heartbeating as ``draining`` until :meth:`stop`.
- :meth:`WorkerPool.abort` stops a job at once (the local control plane calls it so an
  abort does not wait for the next renewal); :meth:`WorkerPool.drain` stops acquiring
  and waits for running jobs; :meth:`WorkerPool.stop` aborts them with the reason
  ``worker shutting down`` (they end FAILED) and waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid

from jobyard.core.errors import DatabaseUnavailable
from jobyard.core.models import Job
from jobyard.worker.protocol import WorkerBackend
from jobyard.worker.runner import JobControl, RunnerOptions, run_acquired_job
from jobyard.worker.sandbox import Isolator
from jobyard.worker.workspace import Workspace

_log = logging.getLogger(__name__)

#: Reason recorded when the control plane asks (through a lease renewal) for an abort.
ABORT_REQUESTED = "abort requested"
#: Reason recorded for jobs stopped because their worker shuts down.
SHUTTING_DOWN = "worker shutting down"


def new_worker_id() -> str:
    """``host:pid:random``: unique per process start, readable in listings."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class WorkerPool:
    """Runs up to ``slots`` jobs of ``pool`` at a time; see the module docstring."""

    def __init__(
        self,
        backend: WorkerBackend,
        *,
        workspace: Workspace,
        slots: int,
        pool: str = "default",
        options: RunnerOptions | None = None,
        heartbeat_seconds: float = 3.0,
        lease_seconds: float | None = None,
        idle_wait_seconds: float = 1.0,
        worker_id: str | None = None,
        isolator: Isolator | None = None,
        exit_on_drain: bool = True,
    ) -> None:
        if slots < 1:
            raise ValueError("a worker pool needs at least one slot")
        self.backend = backend
        self.workspace = workspace
        self.slots = slots
        self.pool = pool
        self.options = options or RunnerOptions()
        self.heartbeat_seconds = heartbeat_seconds
        self.lease_seconds = lease_seconds
        self.idle_wait_seconds = idle_wait_seconds
        self.worker_id = worker_id or new_worker_id()
        self.isolator = isolator
        self.exit_on_drain = exit_on_drain
        self._controls: dict[int, JobControl] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._draining = False
        #: The control plane asked for the drain (not :meth:`drain` or :meth:`stop`).
        self._drain_requested = False
        #: Set by :meth:`drain` and :meth:`stop`: an idle drained pool may leave.
        self._leave: asyncio.Event | None = None
        self._stop_reason: str | None = None
        self._wake: asyncio.Event | None = None
        self._done: asyncio.Event | None = None
        self._last_renewal = time.monotonic()

    # -- state ----------------------------------------------------------------------------
    @property
    def running(self) -> int:
        """How many jobs this worker holds (INITIALIZING or RUNNING)."""
        return len(self._tasks)

    @property
    def occupied(self) -> int:
        """Slots in use: held jobs, but for those only reporting their end."""
        return sum(1 for control in self._controls.values() if not control.released)

    @property
    def held_job_ids(self) -> list[int]:
        """Ids of the jobs this worker holds."""
        return list(self._tasks)

    @property
    def draining(self) -> bool:
        """True once :meth:`drain` or :meth:`stop` was called, or a drain was requested."""
        return self._draining

    @property
    def drain_requested(self) -> bool:
        """True once a heartbeat's answer asked this worker to drain."""
        return self._drain_requested

    # -- main loop ------------------------------------------------------------------------
    async def run(self) -> None:
        """Acquire and run jobs until :meth:`drain` or :meth:`stop`; then return."""
        if self._done is not None:
            raise RuntimeError("WorkerPool.run() can only be called once")
        if self.isolator is not None:
            await self.isolator.start()  # a failure here leaves the pool never started
        self._wake = wake = asyncio.Event()
        self._done = asyncio.Event()
        self._leave = leave = asyncio.Event()
        self._last_renewal = time.monotonic()
        await self._heartbeat()
        beat = asyncio.create_task(self._beat_loop(), name=f"worker-beat-{self.worker_id}")
        backoff = 0.05
        try:
            while not self._draining:
                wake.clear()
                free = self.slots - self.occupied
                if free <= 0:
                    await wake.wait()
                    continue
                try:
                    jobs = await self.backend.acquire(
                        worker_id=self.worker_id,
                        pool=self.pool,
                        limit=free,
                        free_now=self._free_now,
                    )
                except Exception as exc:
                    _log.warning("worker %s: acquire failed: %s", self.worker_id, exc)
                    await self._sleep_unless_woken(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.05
                if jobs:
                    acquired_at = time.monotonic()
                    for job in jobs:
                        self._start(job, acquired_at)
                    if len(jobs) >= free:
                        continue
                # Fewer jobs than free slots: nothing else was queued for this pool when
                # the claim ran. Claiming again at once would find nothing and, on an
                # idle server, delay the start of the job just claimed; new work and
                # freed slots wake the pool.
                await self._wait_for_work()
            if self._drain_requested and not self.exit_on_drain:
                # Drained on request: finish what runs, then stay registered and idle
                # (heartbeats keep saying "draining") until told to stop.
                while self._tasks:
                    await asyncio.wait(list(self._tasks.values()))
                await self._heartbeat()
                await leave.wait()
        finally:
            await self._finish_running()
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            await self._heartbeat()
            if self.isolator is not None:
                self.isolator.close()
            self.workspace.tidy()
            self._done.set()

    def _start(self, job: Job, acquired_at: float) -> None:
        control = JobControl(on_release=self._released)
        if self._stop_reason is not None:  # acquired while stopping: end it at once
            control.abort(self._stop_reason)
        self._controls[job.id] = control
        task = asyncio.create_task(self._run_one(job, control, acquired_at), name=f"job-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(functools.partial(self._forget, job.id))

    def _free_now(self) -> int:
        return 0 if self._draining else max(self.slots - self.occupied, 0)

    def _released(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _forget(self, job_id: int, _task: asyncio.Task[None]) -> None:
        self._tasks.pop(job_id, None)
        self._controls.pop(job_id, None)
        try:
            self.backend.forget(job_id)
        except Exception:  # pragma: no cover - bookkeeping must not stop the pool
            _log.exception("worker %s: could not forget job %s", self.worker_id, job_id)
        if self._wake is not None:
            self._wake.set()

    async def _run_one(self, job: Job, control: JobControl, acquired_at: float) -> None:
        try:
            await run_acquired_job(
                job,
                self.backend,
                worker_id=self.worker_id,
                workspace=self.workspace,
                options=self.options,
                control=control,
                acquired_at=acquired_at,
                isolator=self.isolator,
            )
        except Exception:  # pragma: no cover - run_acquired_job reports its own errors
            _log.exception("worker %s: job %s crashed", self.worker_id, job.id)

    async def _wait_for_work(self) -> None:
        if self._wake is None:
            raise RuntimeError("the pool is not running")
        waiter = asyncio.ensure_future(self.backend.wait_for_work(self.idle_wait_seconds))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((waiter, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (waiter, woken):
                fut.cancel()
            await asyncio.wait((waiter, woken))
        if waiter.done() and not waiter.cancelled() and waiter.exception() is not None:
            _log.warning("worker %s: wait_for_work failed: %s", self.worker_id, waiter.exception())
            await self._sleep_unless_woken(self.idle_wait_seconds)

    async def _sleep_unless_woken(self, seconds: float) -> None:
        if self._wake is None:
            raise RuntimeError("the pool is not running")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _finish_running(self) -> None:
        """Wait for held jobs; if we are leaving abnormally, stop them first."""
        if not self._draining:  # run() was cancelled or crashed
            self._abort_all(SHUTTING_DOWN)
        while self._tasks:
            await asyncio.wait(list(self._tasks.values()))

    # -- leases and heartbeats ---------------------------------------------------------------
    async def _beat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            await self.renew_leases()
            await self._heartbeat()

    async def renew_leases(self) -> None:
        """Renew every held job's lease; apply aborts and lost leases from the answer."""
        held = list(self._controls)
        started = time.monotonic()
        if not held:
            self._last_renewal = started
            return
        try:
            answer = await self.backend.renew(worker_id=self.worker_id, job_ids=held)
        except Exception as exc:
            _log.warning("worker %s: lease renewal failed: %s", self.worker_id, exc)
            if isinstance(exc, DatabaseUnavailable):
                return  # unreachable is not lost (see the module docstring)
            if self.lease_seconds is not None and started - self._last_renewal > self.lease_seconds:
                _log.error("worker %s: leases expired; dropping %d jobs", self.worker_id, len(held))
                for job_id in held:
                    control = self._controls.get(job_id)
                    if control is not None:
                        control.lose()
            return
        self._last_renewal = started
        for job_id in held:
            control = self._controls.get(job_id)
            if control is None or control.ending:
                continue  # ended meanwhile
            if job_id not in answer:
                _log.warning("worker %s: lost the lease of job %s", self.worker_id, job_id)
                control.lose()
            elif answer[job_id]:
                control.abort(ABORT_REQUESTED)

    async def _heartbeat(self) -> None:
        try:
            requested = await self.backend.heartbeat(
                worker_id=self.worker_id, running=len(self._tasks), draining=self._draining
            )
        except Exception as exc:
            _log.warning("worker %s: heartbeat failed: %s", self.worker_id, exc)
            return
        if requested is True and not self._drain_requested:
            self._request_drain()

    def _request_drain(self) -> None:
        """A drain was requested: claim nothing more; running jobs finish (see run())."""
        _log.info(
            "worker %s: drain requested; finishing %d job(s), taking no new ones",
            self.worker_id,
            len(self._tasks),
        )
        self._drain_requested = True
        self._draining = True
        if self._wake is not None:
            self._wake.set()

    # -- control ----------------------------------------------------------------------------
    def abort(self, job_id: int, reason: str = "aborted by user") -> bool:
        """Stop a held job now (FAILED ``aborted: <reason>``); False if not held here."""
        control = self._controls.get(job_id)
        if control is None:
            return False
        control.abort(reason)
        return True

    def _abort_all(self, reason: str) -> None:
        for control in list(self._controls.values()):
            control.abort(reason)

    async def drain(self) -> None:
        """Take no new jobs, let the running ones finish, then return."""
        self._draining = True
        await self._wait_stopped()

    async def stop(self, reason: str = SHUTTING_DOWN) -> None:
        """Abort every held job (FAILED ``aborted: <reason>``), wait for them, return."""
        self._draining = True
        self._stop_reason = reason
        self._abort_all(reason)
        await self._wait_stopped()

    async def _wait_stopped(self) -> None:
        if self._leave is not None:
            self._leave.set()
        if self._wake is not None:
            self._wake.set()
        if self._done is not None:
            await self._done.wait()
        else:
            while self._tasks:
                await asyncio.wait(list(self._tasks.values()))
