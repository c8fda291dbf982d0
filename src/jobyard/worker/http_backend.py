"""The control plane as seen by a remote worker (``jobyard worker``): HTTP calls.

Implements :class:`~jobyard.worker.protocol.WorkerBackend` over the worker routes
(``/api/v1/worker/...``) over keep-alive HTTP/1.1 connections (see
:mod:`jobyard.worker.http_link`). The worker holds
no database URL and no server key: an acquired job comes with everything needed to run
it (its resolved macros included), and the log, outputs and end status go back over
the same authenticated connection.

**Several servers** (replicas on one database, each given with ``--server``): the worker
talks to one of them and moves to the next when it fails (see
:mod:`jobyard.worker.http_link`), so leases go on being renewed through a live replica
while another is down or restarting.

Through a server restart or outage the worker keeps its jobs running: reports (RUNNING,
log pieces, outputs, end) are retried with back-off until the server answers, lease
renewals that cannot reach it count as "unreachable", not "lost" (see
:mod:`jobyard.worker.pool`). A job whose lease expired meanwhile is failed by the
server (``worker lost``); its late reports are refused (409) and dropped here.

**Claiming ahead** of free slots (``prefetch``, default as many as the slots) is
:class:`~jobyard.worker.claim_ahead.ClaimAhead`'s: claimed-ahead jobs are renewed with
the running ones, and ended FAILED (``worker lost``) when the worker drains.

**Reports** (RUNNING, end) are queued and sent many per call, with the next acquisition
or by the reports call (see :mod:`jobyard.worker.report_queue`): an end is queued after
its job's RUNNING report and may travel in the same call, where the server applies
RUNNING reports before end reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import platform
import socket
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jobyard import __version__
from jobyard.core.errors import Conflict, DatabaseUnavailable, InvalidInput
from jobyard.core.jobs import JobStatus
from jobyard.core.models import Job
from jobyard.core.timeutil import utcnow
from jobyard.core.workerprotocol import PROTOCOL_REFUSED, claimed_protocol
from jobyard.worker.claim_ahead import NOT_STARTED_REASON, ClaimAhead
from jobyard.worker.http_download import CHUNK, download
from jobyard.worker.http_link import (
    FIRST_PAUSE,
    MAX_PAUSE,
    ServerLink,
    ServerRefused,
)
from jobyard.worker.logwriter import SecretMasker
from jobyard.worker.protocol import Assignment, PayloadRef
from jobyard.worker.report_queue import ReportQueue
from jobyard.worker.wire import RemoteAssignment, assignment_from_json

_log = logging.getLogger("jobyard.worker")

#: A log piece sent at most this big.
LOG_PIECE_BYTES = 256 * 1024
#: How often a running job's log file is looked at for new bytes to send.
LOG_POLL_SECONDS = 0.25


class _LogTail:
    """Sends what a job appends to its log file, piece by piece, with offsets."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sent = 0
        self.lost = False
        #: Until the first look at the file: the timer that starts :attr:`task`.
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None

    def stop(self) -> None:
        """Stop following the file (the timer or the task)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.task is not None:
            self.task.cancel()


class HttpBackend:
    """Worker-side calls to a ``jobyard up`` server (see the module docstring)."""

    def __init__(
        self,
        server: str,
        token: str,
        *,
        pool: str,
        slots: int,
        state_dir: Path,
        cache_dir: Path,
        labels: dict[str, str] | None = None,
        wait_seconds: float = 25.0,
        patience: float = 3600.0,
        prefetch: int | None = None,
        fallbacks: Sequence[str] = (),
    ) -> None:
        """``state_dir`` holds logs being sent and payload downloads; ``cache_dir`` the
        package downloads (by sha256, shared by every job of this host); ``patience``:
        how long reports are retried while the server cannot be reached; ``prefetch``:
        most jobs claimed ahead of free slots (None: ``slots``; 0: claim only for free
        slots); ``fallbacks``: more servers (replicas of ``server``) to move to when the
        one in use fails (see the module docstring)."""
        self.pool = pool
        self.slots = slots
        self.labels = dict(labels or {})
        self.wait_seconds = wait_seconds
        self.patience = patience
        self.lease_seconds: float | None = None
        self.heartbeat_seconds: float | None = None
        self.drain_requested = False
        #: The worker protocol sent with each heartbeat.
        self.protocol = claimed_protocol()
        #: Why the server refused this worker's protocol (then it drains and exits).
        self.refused: str | None = None
        #: Called once when the server asks this worker to drain.
        self.on_drain: Callable[[], None] | None = None
        self.started_at = utcnow()
        self._state = state_dir
        #: The folder of the logs being sent (a string: a log's path is made per job).
        self._logs = os.fspath(state_dir / "logs")
        self._cache = cache_dir / "packages"
        headers = {
            "Authorization": f"Bearer {token}",
            "User-Agent": f"jobyard-worker/{__version__}",
        }
        self._link = ServerLink(
            (server, *fallbacks),
            headers,
            slots=slots,
            wait_seconds=wait_seconds,
            patience=patience,
        )
        self._worker_id = ""
        self._assignments: dict[int, RemoteAssignment] = {}
        self._records: dict[int, str | None] = {}
        self._maskers: dict[int, SecretMasker] = {}
        self._package_jobs: dict[str, int] = {}
        self._downloads: dict[str, asyncio.Future[Path]] = {}
        self._tails: dict[int, _LogTail] = {}
        #: RUNNING and end reports on their way (with acquisitions, or by the reports call).
        self._reports = ReportQueue(self._post_reports)
        self._payloads: dict[int, list[Path]] = {}
        self._ahead = ClaimAhead(slots if prefetch is None else prefetch, self._give_up)

    async def close(self) -> None:
        """Finish ending the claimed-ahead jobs given up, then close the connections."""
        await self._ahead.close()
        await self._link.aclose()

    # -- transport ------------------------------------------------------------------------
    @property
    def servers(self) -> list[str]:
        """Every server this worker may talk to, the preferred one first."""
        return self._link.servers

    @property
    def server(self) -> str:
        """The server this worker talks to now."""
        return self._link.server

    # -- registration -----------------------------------------------------------------------
    async def heartbeat(self, *, worker_id: str, running: int, draining: bool) -> bool:
        """Register or refresh this worker; note the lease time; True when the server asks
        it to drain (the long-poll in flight is given up at once, through ``on_drain``).

        A server that does not serve this worker's protocol (say, upgraded under it)
        refuses it: the worker notes why in ``refused`` and drains, so it exits.
        """
        self._worker_id = worker_id
        try:
            answer = await self._link.once(
                "POST",
                "/api/v1/worker/heartbeat",
                json={
                    "worker_id": worker_id,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "version": f"{__version__} ({platform.python_implementation()})",
                    "protocol": self.protocol,
                    "pool": self.pool,
                    "slots": self.slots,
                    "labels": self.labels,
                    "started_at": self.started_at.isoformat(),
                    "running": running,
                    "draining": draining,
                },
            )
        except ServerRefused as exc:
            if exc.code == PROTOCOL_REFUSED and self.refused is None:
                self.refused = exc.message
                if self.on_drain is not None:
                    self.on_drain()
            raise
        self.lease_seconds = float(answer["lease_seconds"])
        self.heartbeat_seconds = float(answer["heartbeat_seconds"])
        drain = bool(answer.get("drain"))
        if drain and not self.drain_requested:
            self.drain_requested = True
            if self.on_drain is not None:
                self.on_drain()
        return drain

    # -- acquisition ------------------------------------------------------------------------
    @property
    def prefetch(self) -> int:
        """Most jobs claimed ahead of free slots."""
        return self._ahead.prefetch

    @property
    def claimed_ahead(self) -> int:
        """How many claimed jobs wait for a free slot here."""
        return len(self._ahead)

    def stop_acquiring(self) -> None:
        """Abandon the acquisition in flight, claim nothing more (drain) and end the
        claimed-ahead jobs FAILED (``worker lost``): they never started."""
        self._ahead.stop()

    async def _give_up(self, jobs: list[Job], reason: str = NOT_STARTED_REASON) -> None:
        """End jobs claimed ahead and never started (their end reports go together)."""
        ends = [
            self.end(
                job.id,
                worker_id=self._worker_id,
                status=JobStatus.FAILED,
                exit_code=None,
                reason=reason,
            )
            for job in jobs
        ]
        results = await asyncio.gather(*ends, return_exceptions=True)
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, BaseException):
                _log.warning("job %s claimed ahead: end not reported: %s", job.id, result)
            self.forget(job.id)

    async def acquire(
        self,
        *,
        worker_id: str,
        pool: str,
        limit: int,
        free_now: Callable[[], int] | None = None,
    ) -> list[Job]:
        """Up to ``limit`` jobs: claimed-ahead ones at once, else those of the
        acquisition in flight (a long-poll) when it is answered; see
        :class:`~jobyard.worker.claim_ahead.ClaimAhead`."""
        self._worker_id = worker_id

        def claim(room: int) -> Coroutine[Any, Any, list[Job]]:
            return self._acquire(worker_id, pool, room)

        return await self._ahead.take(limit, claim, free_now)

    async def _acquire(self, worker_id: str, pool: str, limit: int) -> list[Job]:
        body: dict[str, Any] = {
            "worker_id": worker_id,
            "pool": pool,
            "labels": self.labels,
            "free": limit,
            "wait_seconds": self.wait_seconds,
        }
        carried = self._reports.for_acquisition(worker_id)
        if carried:
            body["reports"] = [item for _w, item, _a in carried]
        try:
            answer = await self._link.post_acquire(body)
        except ServerRefused as exc:
            self._reports.give_back(carried, refused=exc.status == 422)
            raise
        except BaseException:
            self._reports.give_back(carried)
            raise
        self._reports.settle(carried, answer.get("results"))
        jobs = []
        for item in answer.get("assignments") or []:
            remote = assignment_from_json(item)
            job = remote.assignment.job
            self._assignments[job.id] = remote
            jobs.append(job)
        return jobs

    async def wait_for_work(self, timeout: float) -> None:
        """Nothing to wait for here: :meth:`acquire` itself waits on the server."""
        await asyncio.sleep(0)

    async def prepare(self, job: Job) -> Assignment:
        """The assignment that came with the job."""
        remote = self._assignments.pop(job.id, None)
        if remote is None:
            raise InvalidInput(f"job {job.id} came without its assignment")
        assignment = remote.assignment
        self._records[job.id] = remote.record
        if assignment.package_sha256 is not None:
            self._package_jobs[assignment.package_sha256] = job.id
        if assignment.secret_values:
            self._maskers[job.id] = SecretMasker(assignment.secret_values)
        return assignment

    # -- packages and payloads --------------------------------------------------------------
    async def package_path(self, sha256: str) -> Path:
        """The package from the host's cache, downloaded once (verified by sha256) even
        when several jobs need it at the same moment."""
        dest = self._cache / sha256
        if dest.is_file():
            return dest
        pending = self._downloads.get(sha256)
        if pending is None:
            pending = asyncio.ensure_future(self._download_package(sha256, dest))
            self._downloads[sha256] = pending
            pending.add_done_callback(lambda _f: self._downloads.pop(sha256, None))
        return await asyncio.shield(pending)

    async def _download_package(self, sha256: str, dest: Path) -> Path:
        job_id = self._package_jobs.get(sha256)
        if job_id is None:
            raise InvalidInput(f"package {sha256} is needed by no job of this worker")
        path = f"/api/v1/worker/jobs/{job_id}/package/{sha256}"
        await self._download(path, {"worker_id": self._worker_id}, dest, sha256=sha256)
        return dest

    async def payload_path(self, ref: PayloadRef) -> Path:
        """A payload file, downloaded for its job (removed when the job is over)."""
        job_id = int(ref.blob_key.split("/")[1])
        dest = (
            self._state / "payloads" / str(job_id) / hashlib.sha256(ref.name.encode()).hexdigest()
        )
        params = {"worker_id": self._worker_id, "key": ref.blob_key}
        await self._download("/api/v1/worker/payload", params, dest, sha256=None)
        self._payloads.setdefault(job_id, []).append(dest)
        return dest

    async def _download(
        self, path: str, params: dict[str, str], dest: Path, *, sha256: str | None
    ) -> None:
        await download(self._link, path, params, dest, sha256=sha256, patience=self.patience)

    # -- the log ----------------------------------------------------------------------------
    def log_path(self, job_id: int) -> str:
        """The job's log file on this host; what is appended to it is sent as it comes."""
        tail = self._tails.get(job_id)
        if tail is None:
            tail = self._tails[job_id] = _LogTail(f"{self._logs}/{job_id}.log")
            # The file is created by the program's first line, after this call: the
            # first look is one period away (a job ended sooner sends it at its end,
            # without a task ever started for it).
            tail.timer = asyncio.get_running_loop().call_later(
                LOG_POLL_SECONDS, self._start_following, job_id, tail
            )
        return tail.path

    def _start_following(self, job_id: int, tail: _LogTail) -> None:
        tail.timer = None
        if not tail.lost:
            tail.task = asyncio.get_running_loop().create_task(
                self._follow(job_id, tail), name=f"log-{job_id}"
            )

    async def _follow(self, job_id: int, tail: _LogTail) -> None:
        while not tail.lost:
            await self._send_log(job_id, tail)
            await asyncio.sleep(LOG_POLL_SECONDS)

    async def _send_log(self, job_id: int, tail: _LogTail) -> None:
        """Send what the file holds beyond what was sent (in pieces)."""
        while not tail.lost:
            try:
                with open(tail.path, "rb") as fh:
                    fh.seek(tail.sent)
                    piece = fh.read(LOG_PIECE_BYTES)
            except FileNotFoundError:
                return
            if not piece:
                return
            params = {"worker_id": self._worker_id, "offset": str(tail.sent)}
            try:
                answer = await self._link.call(
                    f"send the log of job {job_id}",
                    "POST",
                    f"/api/v1/worker/jobs/{job_id}/log",
                    params=params,
                    content=piece,
                )
            except ServerRefused as exc:
                if exc.status == 409 and "size" in exc.details:
                    tail.sent = int(exc.details["size"])  # a piece was lost: resend from there
                    continue
                if exc.status == 409:
                    tail.lost = True  # the job is not ours any more: its log neither
                    return
                raise
            tail.sent = int(answer["size"])

    async def log_closed(self, job_id: int) -> None:
        """Stop following the log and send the rest of it."""
        tail = self._tails.get(job_id)
        if tail is None:
            return
        tail.stop()
        if tail.task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await tail.task
            tail.task = None
        await self._send_log(job_id, tail)

    # -- reports ----------------------------------------------------------------------------
    def set_running(
        self,
        job_id: int,
        *,
        worker_id: str,
        pid: int | None,
        started_at: datetime | None = None,
    ) -> asyncio.Future[bool]:
        """INITIALIZING -> RUNNING on the server; False when the job is not ours (409).

        Not a coroutine function: the report is queued by the call itself (before the
        answer is awaited or even scheduled), so the job's end report, queued later, is
        sent after it — in the same call or a later one — without waiting for its
        answer. The answer is a future: the runner waits for it without a task.
        """
        item = {
            "job_id": job_id,
            "kind": "running",
            "pid": pid,
            "started_at": (started_at or utcnow()).isoformat(),
            "record": self._records.pop(job_id, None),
        }
        answer = self._queue_report(worker_id, item)
        self._ahead.started(job_id)
        moved: asyncio.Future[bool] = answer.get_loop().create_future()
        moved.add_done_callback(_retrieved)
        answer.add_done_callback(functools.partial(_pass_moved, moved))
        return moved

    async def end(
        self,
        job_id: int,
        *,
        worker_id: str,
        status: JobStatus,
        exit_code: int | None,
        reason: str | None,
    ) -> None:
        """Report the end (queued after its RUNNING report, when one was made); a job
        not ours any more (refused) is left as the server has it."""
        item = {
            "job_id": job_id,
            "kind": "end",
            "status": status.value,
            "exit_code": exit_code,
            "reason": reason,
        }
        moved, error = await asyncio.shield(self._queue_report(worker_id, item))
        if not moved:
            _log.warning("end of job %s not recorded: %s", job_id, error)

    def _queue_report(
        self, worker_id: str, item: dict[str, Any]
    ) -> asyncio.Future[tuple[bool, str | None]]:
        """Queue a RUNNING or end report (see :mod:`jobyard.worker.report_queue`)."""
        return self._reports.put(worker_id, item)

    async def _post_reports(self, worker_id: str, items: list[dict[str, Any]]) -> Any:
        body = {"worker_id": worker_id, "reports": items}
        what = f"send {len(items)} report(s)"
        return await self._link.call(what, "POST", "/api/v1/worker/reports", json=body)

    async def renew(self, *, worker_id: str, job_ids: list[int]) -> dict[int, bool]:
        """Renew leases once (an unreachable server raises ``DatabaseUnavailable``: the
        pool keeps its jobs)."""
        ahead = self._ahead.job_ids()
        answer = await self._link.once(
            "POST",
            "/api/v1/worker/renew",
            json={"worker_id": worker_id, "job_ids": job_ids + ahead},
        )
        leases = {int(k): bool(v) for k, v in (answer.get("leases") or {}).items()}
        for job_id in self._ahead.renewed(ahead, leases):
            self.forget(job_id)
        return leases

    async def store_output(self, job_id: int, name: str, path: Path) -> None:
        """Upload one output file (streamed); a job not ours any more keeps nothing."""
        masker = self._maskers.get(job_id)
        if masker is not None:
            name = masker.mask_text(name)

        async def chunks() -> AsyncIterator[bytes]:
            with open(path, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk

        try:
            await self._call_stream(job_id, name, chunks)
        except ServerRefused as exc:
            if exc.status == 409:
                raise Conflict(exc.message) from exc
            raise
        finally:
            path.unlink(missing_ok=True)

    async def _call_stream(
        self, job_id: int, name: str, chunks: Callable[[], AsyncIterator[bytes]]
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.patience
        pause = FIRST_PAUSE
        path = f"/api/v1/worker/jobs/{job_id}/outputs/{quote(name, safe='')}"
        while True:
            try:
                await self._link.once(
                    "PUT", path, params={"worker_id": self._worker_id}, content=chunks()
                )
                return
            except DatabaseUnavailable:
                if loop.time() + pause > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)

    def forget(self, job_id: int) -> None:
        """Drop what was kept for a job: assignment, record, log tail, downloads."""
        self._ahead.started(job_id)
        self._assignments.pop(job_id, None)
        self._records.pop(job_id, None)
        self._maskers.pop(job_id, None)
        tail = self._tails.pop(job_id, None)
        if tail is not None:
            tail.lost = True
            tail.stop()
            with contextlib.suppress(OSError):
                os.unlink(tail.path)
        for path in self._payloads.pop(job_id, []):
            with contextlib.suppress(OSError):
                path.unlink()


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen (its caller may have stopped waiting)."""
    if not future.cancelled():
        future.exception()


def _pass_moved(
    moved: asyncio.Future[bool], answer: asyncio.Future[tuple[bool, str | None]]
) -> None:
    """A report's outcome as ``moved`` (its error, its cancellation)."""
    if moved.done():
        return
    if answer.cancelled():
        moved.cancel()
    elif (error := answer.exception()) is not None:
        moved.set_exception(error)
    else:
        moved.set_result(answer.result()[0])
