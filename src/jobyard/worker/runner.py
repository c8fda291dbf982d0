"""Run one acquired job: prepare its workspace, run its program, report its end.

The life of a job on a worker (SPEC §2-3)::

    acquired (INITIALIZING)
      -> a sandbox (see :mod:`jobyard.worker.sandbox`: the job's uid, its namespaces)
      -> backend.prepare (when given a bare job), job folders, package, payload, env
      -> open the log; spawn the program (in a thread, see :mod:`jobyard.worker.child`:
         own session and process group, argv without a shell, stdin = /dev/null)
      -> backend.set_running(pid), not awaited       (RUNNING; False => not ours: kill)
      -> wait for: exit | abort | timeout | lost lease
      -> SIGKILL the whole group and every process the sandbox holds (stragglers),
         drain the pipes into the log
      -> backend.store_output for each file of LOCAL_JOB_OUT_DIR (checked, see
         :mod:`jobyard.worker.outputs`; refusals are noted in the log)
      -> delete the job folders, free the sandbox, free the slot
      -> backend.log_closed -> backend.end

The program is spawned *before* ``set_running`` so that ``started_at`` is recorded
when it really runs; if the job was aborted meanwhile it is stopped right after.

End statuses:

- FINISHED: exit code in ``success_exit_codes``;
- ERROR: ``exit code N`` or ``killed by signal SIGxxx`` (a signal not sent by us);
- FAILED: ``aborted: <reason>``, ``timeout after N minutes`` (the timeout counts from
  acquisition, so it bounds INITIALIZING + RUNNING), ``initialization failed: <why>``
  (any error before the program runs: unknown entry point, unsafe package, payload
  download...), ``cannot start program: <why>`` (exec failed), ``worker error: <why>``
  (an unexpected error of the runner after the start).

Stopping (abort, timeout) sends SIGTERM to the program's processes, waits
``abort_grace_seconds``, then sends SIGKILL to the group. Whatever way the program
ends, once its main process has exited the group gets SIGKILL too, and the sandbox
kills whatever else the job started (every process of its uid; the rest of its pid
namespace): background processes (``daemon &``, ``setsid``, double forks) do not
outlive the job. Without a sandbox (isolation ``none``) a process that left the group
with ``setsid`` escapes; if it still holds the output pipes they are closed after
``pipe_close_timeout`` seconds so the job can end.

If the lease is lost (the control plane gave the job away) the program is killed and
nothing is reported: the job is no longer ours. Every other path reports exactly one
end status, including unexpected errors; cancellation of the task kills the program
and still tries to report FAILED.

The child's environment is *clean*: only ``PATH``, ``HOME``, ``LANG``, ``LC_ALL``,
``TZ`` of the worker (never ``JOBYARD_*`` or other server secrets), then
``PYTHONUNBUFFERED=1`` (so Python programs' logs are live; a macro may override it),
then what the sandbox sets (a private ``HOME`` and ``TMPDIR``), then the job's macros,
then the execution macros, which nothing can override.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from jobyard.core.errors import InvalidInput, JobyardError
from jobyard.core.jobs import JobStatus
from jobyard.core.models import Job
from jobyard.worker.child import Child
from jobyard.worker.jobcontrol import JobControl as JobControl  # re-exported: the pool's handle
from jobyard.worker.jobcontrol import TaskCut
from jobyard.worker.logwriter import LogWriter
from jobyard.worker.outputs import collect_outputs
from jobyard.worker.protocol import Assignment, WorkerBackend
from jobyard.worker.sandbox import IsolationPlan, Isolator, JobSandbox
from jobyard.worker.workspace import JobDirs, Workspace

_log = logging.getLogger(__name__)
T = TypeVar("T")

PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
_DEFAULT_ENV = {"PATH": os.defpath, "LANG": "C.UTF-8"}


def inherited_env(names: tuple[str, ...] = PASSTHROUGH_ENV) -> dict[str, str]:
    """The few variables of this process a job inherits, with sane defaults."""
    env = {name: os.environ[name] for name in names if name in os.environ}
    for name, value in _DEFAULT_ENV.items():
        env.setdefault(name, value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """Tunables of the runner (from :class:`~jobyard.settings.Settings`)."""

    abort_grace_seconds: float = 10.0
    pipe_close_timeout: float = 5.0
    base_env: Mapping[str, str] = field(default_factory=inherited_env)
    #: JOBYARD_API_URL of the jobs: where their SESSION_ID works.
    api_url: str = ""

    @classmethod
    def from_settings(cls, settings: Any) -> RunnerOptions:
        """Options taken from a ``Settings`` object."""
        return cls(
            abort_grace_seconds=settings.abort_grace_seconds, api_url=settings.effective_api_url
        )


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How a run ended; ``reported`` is False when the lease was lost (nothing sent)."""

    status: JobStatus | None
    exit_code: int | None
    reason: str | None
    reported: bool


class _Stopped(Exception):
    """Raised inside a run when an abort, a timeout or a lost lease interrupts it."""


#: Jobs of a runner given no isolator run as the worker's own user (unit tests).
_UNCONFINED = Isolator(IsolationPlan("none", "no isolator given"))


async def run_job(
    assignment: Assignment,
    backend: WorkerBackend,
    *,
    worker_id: str,
    workspace: Workspace,
    options: RunnerOptions | None = None,
    control: JobControl | None = None,
    acquired_at: float | None = None,
    isolator: Isolator | None = None,
) -> JobOutcome:
    """Run a prepared job to its end and report it. Never raises (but on cancellation).

    ``acquired_at`` is the ``time.monotonic()`` of the acquisition: the timeout counts
    from there. ``control`` lets the caller abort the job or drop it. ``isolator``
    makes its sandbox (none: the job runs as the worker's user).
    """
    sandbox = (isolator or _UNCONFINED).open_job()
    run = _JobRun(
        assignment.job, backend, worker_id, workspace, options, control, acquired_at, sandbox
    )
    return await run.execute(assignment)


async def run_acquired_job(
    job: Job,
    backend: WorkerBackend,
    *,
    worker_id: str,
    workspace: Workspace,
    options: RunnerOptions | None = None,
    control: JobControl | None = None,
    acquired_at: float | None = None,
    isolator: Isolator | None = None,
) -> JobOutcome:
    """Like :func:`run_job` for a job just acquired: ``backend.prepare`` is part of it.

    A ``JobyardError`` from ``prepare`` (unknown entry point, inactive user...) ends
    the job FAILED ``initialization failed: <message>``.
    """
    sandbox = (isolator or _UNCONFINED).open_job()
    run = _JobRun(job, backend, worker_id, workspace, options, control, acquired_at, sandbox)
    return await run.execute(None)


class _JobRun:
    """State of one run; see the module docstring for the sequence."""

    def __init__(
        self,
        job: Job,
        backend: WorkerBackend,
        worker_id: str,
        workspace: Workspace,
        options: RunnerOptions | None,
        control: JobControl | None,
        acquired_at: float | None,
        sandbox: JobSandbox,
    ) -> None:
        self.job = job
        self.backend = backend
        self.worker_id = worker_id
        self.workspace = workspace
        self.options = options or RunnerOptions()
        self.control = control or JobControl()
        self.acquired_at = time.monotonic() if acquired_at is None else acquired_at
        self.timeout = job.timeout * 60.0 if job.timeout > 0 else None
        self.assignment: Assignment | None = None
        self.writer: LogWriter | None = None
        self.dirs: JobDirs | None = None
        self.env: dict[str, str] = {}
        self.child: Child | None = None
        self.outcome: JobOutcome | None = None
        self.sandbox = sandbox
        self._group_killed = False

    # -- the sequence ----------------------------------------------------------------------
    async def execute(self, assignment: Assignment | None) -> JobOutcome:
        if assignment is not None:
            self._apply_timeout(assignment)
        try:
            try:
                await self._interruptible(self._initialize(assignment))
            except _Stopped:
                return await self._finish_stopped(None)
            except Exception as exc:
                return await self._finish(
                    JobStatus.FAILED, None, f"initialization failed: {_describe(exc)}"
                )
            if self.control.requested or self._remaining() == 0:
                return await self._finish_stopped(None)
            try:
                child = await self._spawn()
            except (OSError, ValueError, subprocess.SubprocessError) as exc:
                return await self._finish(
                    JobStatus.FAILED, None, f"cannot start program: {self._spawn_error(exc)}"
                )
            # RUNNING is recorded while the program runs: the backend may write it with
            # other reports (even with this job's end); if the job is not ours any more
            # the answer stops it like a lost lease.
            started_at = datetime.fromtimestamp(child.started_at, UTC)
            running = asyncio.ensure_future(
                self.backend.set_running(
                    self.job.id, worker_id=self.worker_id, pid=child.pid, started_at=started_at
                )
            )
            running.add_done_callback(self._running_answered)
            return await self._supervise()
        except asyncio.CancelledError:
            if self.child is not None:  # the rest of the job's processes: in _finish
                self.child.signal_group(signal.SIGKILL)
                self.child.release()
            if self.outcome is None:
                try:
                    await asyncio.shield(
                        self._finish(JobStatus.FAILED, None, "aborted: worker task cancelled")
                    )
                except BaseException:  # best effort while being cancelled
                    _log.warning("job %s: could not report its end", self.job.id)
            raise
        except Exception as exc:
            _log.exception("job %s: unexpected runner error", self.job.id)
            await self._reap()
            return await self._finish(JobStatus.FAILED, None, f"worker error: {_describe(exc)}")

    def _running_answered(self, answer: asyncio.Future[bool]) -> None:
        if answer.cancelled():
            return
        error = answer.exception()
        if error is not None:
            _log.warning("job %s: cannot record RUNNING: %s", self.job.id, error)
            self.control.lose()  # nobody can tell whether the job is still ours
        elif not answer.result():
            self.control.lose()

    async def _interruptible(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` until done, abort/lost, or the deadline; raise _Stopped if cut.

        ``coro`` runs in this task, not one of its own: an abort or the deadline cancels
        this task while it awaits ``coro`` (the way ``asyncio.timeout`` works), and the
        cancellation is taken back once it has arrived. Preparation that waits on nothing
        (no package, no payload) then costs no task and no loop iteration to start it and
        to hear of its end. If ``coro`` finishes anyway while being cut, its result is kept.
        """
        deadline = self._remaining()
        if self.control.requested or deadline == 0:
            coro.close()
            raise _Stopped
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - always awaited from a task
            raise RuntimeError("a job runs in a task")
        cut = TaskCut(task)
        waiter = self.control.waiter
        waiter.add_done_callback(cut.fire)
        timer = None if deadline is None else task.get_loop().call_later(deadline, cut.fire)
        try:
            return await coro
        except (asyncio.CancelledError, Exception):  # whatever the cut made it raise
            if cut.fired:
                cut.fired = False
                if task.uncancel() == 0:  # our cut alone, not the task's owner
                    raise _Stopped from None
            raise
        finally:
            cut.armed = False
            if cut.fired:  # cut, but it finished all the same: take the cut back
                task.uncancel()
            waiter.remove_done_callback(cut.fire)
            if timer is not None:
                timer.cancel()

    def _apply_timeout(self, assignment: Assignment) -> None:
        if assignment.timeout_seconds is not None:
            self.timeout = assignment.timeout_seconds or None

    def _remaining(self) -> float | None:
        if self.timeout is None:
            return None
        return max(self.acquired_at + self.timeout - time.monotonic(), 0.0)

    async def _initialize(self, assignment: Assignment | None) -> None:
        job = self.job
        if assignment is None:
            assignment = await self.backend.prepare(job)
        self.assignment = assignment
        self._apply_timeout(assignment)
        self.writer = await self._open_log(assignment.secret_values)
        for note in assignment.notes:
            self.writer.note(note)
        if not assignment.argv or not assignment.argv[0]:
            raise InvalidInput("no command to run")
        owner = self.sandbox.owner
        self.dirs = dirs = self.workspace.create_job_dirs(
            job.id, owner=owner, private_tmp=self.sandbox.private_tmp
        )
        if assignment.package_sha256:
            sha = assignment.package_sha256

            async def fetch() -> Path:
                return await self.backend.package_path(sha)

            await self.workspace.install_package(
                dirs,
                sha256=sha,
                kind=assignment.package_kind,
                filename=assignment.package_filename,
                fetch=fetch,
                owner=owner,
            )
        for ref in assignment.payload:
            src = await self.backend.payload_path(ref)
            await self.workspace.place_payload(dirs, ref.name, src, owner)
        base = {**self.options.base_env, **self.sandbox.environment(dirs)}
        self.env = build_env(assignment, dirs, base, self.options.api_url)

    async def _open_log(self, secrets: list[str]) -> LogWriter:
        """Create the log file, on the event loop: a file creation costs microseconds on
        the disks measured, a thread hop more (see docs/benchmarks.md)."""
        return LogWriter(self.backend.log_path(self.job.id), secrets=secrets)

    async def _spawn(self) -> Child:
        if self.assignment is None or self.dirs is None or self.writer is None:
            raise RuntimeError("spawn before initialization")
        self.child = await self.sandbox.spawn(
            self.assignment.argv, self.dirs, self.env, self.writer
        )
        return self.child

    def _spawn_error(self, exc: BaseException) -> str:
        message = _describe(exc)
        program = self.assignment.argv[0] if self.assignment is not None else ""
        if (
            isinstance(exc, FileNotFoundError)
            and "/" not in program
            and self.dirs is not None
            and (self.dirs.spec / program).exists()
        ):
            message += f" (to run the package's own file, write ./{program})"
        elif isinstance(exc, PermissionError) and self.sandbox.uid is not None:
            message += (
                f" (jobs run as uid {self.sandbox.uid}: the program and every folder above it"
                " must be readable and searchable by others)"
            )
        return message

    async def _supervise(self) -> JobOutcome:
        child = self.child
        if child is None:
            raise RuntimeError("supervise before spawn")
        if not self.control.requested and not child.exited.done():
            await self._until_exit_or_stop(child)
        stopped_by_us = not child.exited.done()
        if stopped_by_us:
            grace = 0.0 if self.control.lost else self.options.abort_grace_seconds
            await self._terminate(child, grace)
        await self._end_processes()  # stragglers: background processes of the program
        await self._drain_pipes(child)
        if stopped_by_us:
            return await self._finish_stopped(child.returncode)
        return await self._finish_exited(child.returncode)

    async def _until_exit_or_stop(self, child: Child) -> None:
        """Wait for the program's exit, an abort, a lost lease or the deadline.

        The exit wakes this task straight from the exit watch's callback: one loop
        iteration from the exit to the slot's release, where ``asyncio.wait`` takes two.
        """
        wake = child.exited.get_loop().create_future()

        def woken(_: object = None) -> None:
            if not wake.done():
                wake.set_result(None)

        child.on_exit = woken
        waiter = self.control.waiter
        waiter.add_done_callback(woken)
        remaining = self._remaining()
        timer = None if remaining is None else wake.get_loop().call_later(remaining, woken)
        try:
            await wake
        finally:
            child.on_exit = None
            waiter.remove_done_callback(woken)
            if timer is not None:
                timer.cancel()

    async def _terminate(self, child: Child, grace: float) -> None:
        if grace > 0:
            self.sandbox.stop(child, signal.SIGTERM)
            await asyncio.wait((child.exited,), timeout=grace)
        if not child.exited.done():
            child.signal_group(signal.SIGKILL)
            await child.exited

    async def _end_processes(self) -> None:
        """SIGKILL the program's group and everything else its sandbox holds (once: a
        killed group cannot gain members, and the sandbox remembers its collection)."""
        if self.child is not None and not self._group_killed:
            self.child.signal_group(signal.SIGKILL)
            self._group_killed = True
        await self.sandbox.collect()

    async def _reap(self) -> None:
        """After an unexpected error: kill the group, wait (bounded), release the pipes."""
        child = self.child
        if child is None:
            return
        child.signal_group(signal.SIGKILL)
        await asyncio.wait((child.exited,), timeout=self.options.pipe_close_timeout)
        await self._drain_pipes(child)

    async def _drain_pipes(self, child: Child) -> None:
        if not child.closed.done():
            await asyncio.wait((child.closed,), timeout=self.options.pipe_close_timeout)
        if not child.closed.done() and self.writer is not None:
            self.writer.note(
                "output pipes still open after the program ended (a process left the job's "
                "process group); closing them"
            )
        child.release()

    # -- endings -----------------------------------------------------------------------------
    async def _finish_exited(self, returncode: int | None) -> JobOutcome:
        if returncode is None or self.assignment is None:  # pragma: no cover - cannot be
            return await self._finish(JobStatus.FAILED, None, "worker error: no exit status")
        if returncode < 0:
            return await self._finish(
                JobStatus.ERROR, None, f"killed by signal {_signal_name(-returncode)}"
            )
        if returncode in self.assignment.success_exit_codes:
            return await self._finish(JobStatus.FINISHED, returncode, None)
        return await self._finish(JobStatus.ERROR, returncode, f"exit code {returncode}")

    async def _finish_stopped(self, returncode: int | None) -> JobOutcome:
        exit_code = returncode if returncode is not None and returncode >= 0 else None
        if self.control.lost:
            return await self._finish(None, exit_code, "lease lost")
        if self.control.requested:
            return await self._finish(
                JobStatus.FAILED, exit_code, f"aborted: {self.control.reason}"
            )
        return await self._finish(JobStatus.FAILED, exit_code, _timeout_reason(self.timeout))

    async def _finish(
        self, status: JobStatus | None, exit_code: int | None, reason: str | None
    ) -> JobOutcome:
        """Hand over outputs, close the log, report, clean up. Runs at most once."""
        if self.outcome is not None:
            return self.outcome
        job_id = self.job.id
        reported = status is not None and not self.control.lost
        self.outcome = JobOutcome(status, exit_code, reason, reported)
        writer = self.writer if self.writer is not None or not reported else self._late_writer()
        try:
            await self._end_processes()  # nothing of the job may touch its folders now
            if reported and self.dirs is not None:
                await self._store_outputs(self.dirs)
            if writer is not None:
                if reason is not None and status is not JobStatus.FINISHED:
                    writer.note(reason if status is None else f"{status.value}: {reason}")
                writer.close()
        finally:
            if writer is not None:
                writer.close()
            if self.dirs is not None:
                try:
                    await self.workspace.remove_job_dirs(self.dirs)
                except OSError as exc:
                    _log.warning("job %s: cannot remove its folders: %s", job_id, exc)
            self.sandbox.close()
            self.control.ending = True  # from here on a missing lease is expected
            # The slot is free while the end is reported: its next job's claim can
            # share the end's commit (see jobyard.engine.reporter).
            self.control.release()
        if status is not None and reported:
            if writer is not None:
                await _best_effort(self.backend.log_closed(job_id), "close the log", job_id)
            await _best_effort(
                self.backend.end(
                    job_id,
                    worker_id=self.worker_id,
                    status=status,
                    exit_code=exit_code,
                    reason=reason,
                ),
                "report its end",
                job_id,
            )
        return self.outcome

    def _late_writer(self) -> LogWriter | None:
        """A log for a job that failed before its log was opened, to tell why."""
        secrets = self.assignment.secret_values if self.assignment is not None else []
        try:
            self.writer = LogWriter(self.backend.log_path(self.job.id), secrets=secrets)
        except OSError as exc:
            _log.warning("job %s: cannot open its log: %s", self.job.id, exc)
        return self.writer

    async def _store_outputs(self, dirs: JobDirs) -> None:
        scan = collect_outputs(dirs.out_dir, self.sandbox.uid)
        if self.writer is not None:
            for note in scan.refused:
                self.writer.note(note)
        for name, path in scan.kept:
            try:
                await self.backend.store_output(self.job.id, name, path)
            except Exception as exc:
                _log.warning("job %s: cannot keep output %r: %s", self.job.id, name, exc)
                if self.writer is not None:
                    self.writer.note(f"could not keep output file {name!r}: {_describe(exc)}")


def build_env(
    assignment: Assignment, dirs: JobDirs, base: Mapping[str, str], api_url: str = ""
) -> dict[str, str]:
    """The child's environment: base, then macros, then execution macros (see module doc)."""
    job = assignment.job
    env = dict(base)
    env.update(assignment.env)
    env["JOB_ID"] = str(job.id)
    env["JOB_CONFIG_ID"] = "" if job.jobconfig_id is None else str(job.jobconfig_id)
    env["JOB_TEMPLATE_ID"] = "" if assignment.template_id is None else str(assignment.template_id)
    env["LOCAL_JOB_SPEC_DIR"] = dirs.spec_dir
    env["LOCAL_JOB_OUT_DIR"] = dirs.out_dir
    env["JOB_PAYLOAD_DIR"] = dirs.payload_dir
    env["SESSION_ID"] = assignment.session_token
    env["JOBYARD_API_URL"] = api_url
    for name, value in env.items():
        if not name or "=" in name or "\x00" in name:
            raise InvalidInput(f"macro name {name!r} cannot be an environment variable")
        if "\x00" in value:
            raise InvalidInput(f"macro {name} has a NUL character in its value")
    return env


def _timeout_reason(seconds: float | None) -> str:
    if seconds is None:  # pragma: no cover - a timeout stop implies a timeout
        return "timeout"
    if seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"timeout after {minutes} minute{'' if minutes == 1 else 's'}"
    return f"timeout after {seconds:g} second{'' if seconds == 1 else 's'}"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, JobyardError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename!r}" if exc.filename else exc.strerror
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _best_effort(coro: Coroutine[Any, Any, Any], what: str, job_id: int) -> None:
    try:
        await coro
    except Exception as exc:
        _log.warning("job %s: cannot %s: %s", job_id, what, exc)
