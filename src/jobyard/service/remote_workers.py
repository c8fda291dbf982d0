"""Use cases of the worker routes: what a remote worker (``jobyard worker``) asks.

Stateless across replicas: every call is checked against the store (who holds the job,
in which status), so a worker may send each call to another ``jobyard up`` on the same
database. A worker that lost a job (its lease expired and the job ended FAILED ``worker
lost``, or the job was aborted) gets 409 for anything about it: it cannot change its end
status, nor attach its late log or outputs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobyard import __version__
from jobyard.blobs.keys import log_key, output_key, package_key, payload_job
from jobyard.core.claims import EndReport, ReportOutcome, RunningReport
from jobyard.core.errors import Conflict, InvalidInput, NotFound, TooLarge
from jobyard.core.jobs import JobStatus
from jobyard.core.labels import validate_labels
from jobyard.core.models import Job, JobFile, WorkerInfo
from jobyard.core.timeutil import utcnow
from jobyard.core.tokens import WorkerToken
from jobyard.core.workerprotocol import (
    PROTOCOL_MIN,
    PROTOCOL_REFUSED,
    PROTOCOL_VERSION,
    protocol_refusal,
)
from jobyard.service.context import Context
from jobyard.service.worker_desk import WorkerDesk
from jobyard.service.worker_tokens import check_pool

#: Longest long-poll a worker may ask for (a load balancer's idle timeout is often 60 s).
MAX_WAIT_SECONDS = 55.0
#: Statuses in which a job is held by a worker.
_HELD = (JobStatus.INITIALIZING, JobStatus.RUNNING)
#: End statuses a worker may report.
_END = (JobStatus.FINISHED, JobStatus.ERROR, JobStatus.FAILED)


@dataclass(frozen=True, slots=True)
class Hello:
    """What a remote worker says of itself at each heartbeat."""

    worker_id: str
    host: str
    pid: int
    version: str
    pool: str
    slots: int
    started_at: datetime
    labels: dict[str, str] = field(default_factory=dict)
    running: int = 0
    draining: bool = False
    #: The worker protocol it speaks; None for a worker from before it was numbered.
    protocol: int | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatAnswer:
    """What the worker must know: whether to drain, its lease and heartbeat times, and
    the protocols and release of this server."""

    drain: bool
    lease_seconds: float
    heartbeat_seconds: float
    protocol_min: int = PROTOCOL_MIN
    protocol_max: int = PROTOCOL_VERSION
    server_version: str = __version__


class WorkerProtocolUnsupported(Conflict):
    """A worker speaking a protocol this server does not serve (409): it must not run
    jobs here; the message says whether the worker or the servers need upgrading."""

    code = PROTOCOL_REFUSED


def _desk(ctx: Context) -> WorkerDesk:
    if ctx.desk is None:
        raise Conflict("this server does not serve remote workers")
    return ctx.desk


def _check_worker_id(worker_id: str) -> None:
    if not worker_id or len(worker_id) > 200:
        raise InvalidInput("worker_id must be 1 to 200 characters", {"field": "worker_id"})


async def heartbeat(ctx: Context, token: WorkerToken, hello: Hello) -> HeartbeatAnswer:
    """Register the worker or refresh its record; answer its drain order and times.

    A worker speaking a protocol this server does not serve is refused before it is
    registered (:class:`WorkerProtocolUnsupported`), so it never holds a job here.

    ``drain`` is true once an admin asked this worker to drain (the flag is read by the
    same statement that refreshes the record); its labels are checked like a jobconfig's.
    """
    _check_worker_id(hello.worker_id)
    check_pool(token, hello.pool)
    refusal = protocol_refusal(hello.protocol, hello.version, server_version=__version__)
    if refusal is not None:
        raise WorkerProtocolUnsupported(
            refusal,
            {
                "worker_protocol": hello.protocol,
                "protocol_min": PROTOCOL_MIN,
                "protocol_max": PROTOCOL_VERSION,
                "server_version": __version__,
            },
        )
    if hello.slots < 1:
        raise InvalidInput("slots must be at least 1", {"field": "slots"})
    info = WorkerInfo(
        id=hello.worker_id,
        name=hello.worker_id,
        pool=hello.pool,
        host=hello.host[:255],
        pid=hello.pid,
        slots=hello.slots,
        kind="remote",
        started_at=hello.started_at,
        heartbeat_at=utcnow(),
        draining=hello.draining,
        home=None,
        version=hello.version[:64],
        labels=validate_labels(hello.labels),
    )
    drain = await ctx.store.worker_upsert(info)
    settings = ctx.settings
    return HeartbeatAnswer(
        drain=drain,
        lease_seconds=settings.lease_seconds,
        heartbeat_seconds=settings.heartbeat_seconds,
    )


@dataclass(frozen=True, slots=True)
class Acquired:
    """The answer of an acquisition: assignments (JSON objects), and the outcomes of
    the reports it carried (None: it carried none)."""

    assignments: list[dict[str, Any]]
    results: list[BatchedOutcome] | None = None


async def acquire(
    ctx: Context,
    token: WorkerToken,
    *,
    worker_id: str,
    pool: str,
    labels: Mapping[str, str],
    free: int,
    wait_seconds: float,
    gone: Callable[[], Awaitable[bool]],
    reports: Sequence[BatchedReport] = (),
    present: Callable[[], bool] | None = None,
) -> Acquired:
    """Claim up to ``free`` jobs of ``pool`` at once, or wait for one (long-poll); jobs
    requiring labels only when ``labels`` has every one of them.

    ``reports`` (as for :func:`report_batch`) are written first, in the claim's
    transaction, and answered in ``results``; a call carrying reports does not wait
    for a job when none is queued. ``present`` tells at once whether the caller is still
    connected (None: it cannot): then a submission may claim for it while it waits."""
    _check_worker_id(worker_id)
    check_pool(token, pool)
    wait = min(max(wait_seconds, 0.0), MAX_WAIT_SECONDS)
    desk = _desk(ctx)
    ordered = _checked(reports)
    carried: list[RunningReport | EndReport] = []
    for r in ordered:
        if r.kind == "running" and r.started_at is not None:
            carried.append(
                desk.running_report(r.job_id, pid=r.pid, started_at=r.started_at, record=r.record)
            )
        elif r.status is not None:
            carried.append(_end_report(worker_id, r.job_id, r.status, r.exit_code, r.reason))
    found, outcomes = await desk.acquire(
        worker_id=worker_id,
        pool=pool,
        labels=validate_labels(labels),
        free=free,
        wait_seconds=wait,
        gone=gone,
        reports=carried,
        present=present,
    )
    if not reports:
        return Acquired(found)
    results = []
    for r, outcome in zip(ordered, outcomes, strict=True):
        if not outcome.moved:
            results.append(BatchedOutcome(r.job_id, r.kind, False, _refusal(outcome, worker_id)))
            continue
        if r.kind == "end":
            ctx.seals.seal_later(ctx.blobs, log_key(r.job_id))  # as report_end does
        results.append(BatchedOutcome(r.job_id, r.kind, True))
    return Acquired(found, results)


def acquired_json(found: Acquired) -> dict[str, Any]:
    """The JSON answer of ``POST /api/v1/worker/acquire`` (``results`` only when the
    call carried reports: a worker that sent none may not know the key)."""
    answer: dict[str, Any] = {"assignments": found.assignments}
    if found.results is not None:
        answer["results"] = [
            {"job_id": o.job_id, "kind": o.kind, "moved": o.moved, "error": o.error}
            for o in found.results
        ]
    return answer


async def report_running(
    ctx: Context,
    worker_id: str,
    job_id: int,
    *,
    pid: int | None,
    started_at: datetime,
    record: str | None,
) -> ReportOutcome:
    """INITIALIZING -> RUNNING of a held job; ``Conflict`` (409) when it is not held
    any more (the worker must not run it)."""
    _check_worker_id(worker_id)
    outcome = await _desk(ctx).running(
        worker_id, job_id, pid=pid, started_at=started_at, record=record
    )
    return _accepted(outcome, worker_id)


def _refusal(outcome: ReportOutcome, worker_id: str) -> str:
    return (
        f"job {outcome.job_id} is not held by worker {worker_id}"
        + (f": {outcome.error}" if outcome.error else "")
        + " (its lease was lost, or it ended): the report changes nothing"
    )


def _accepted(outcome: ReportOutcome, worker_id: str) -> ReportOutcome:
    if not outcome.moved:
        raise Conflict(_refusal(outcome, worker_id), {"job_id": outcome.job_id})
    return outcome


async def report_end(
    ctx: Context,
    worker_id: str,
    job_id: int,
    *,
    status: JobStatus,
    exit_code: int | None,
    reason: str | None,
) -> ReportOutcome:
    """The end status of a held job, then its log sealed in the background (see
    :mod:`jobyard.service.log_seals`); ``Conflict`` (409) for a job not held any more (a
    worker that lost it cannot change how it ended)."""
    _check_worker_id(worker_id)
    if status not in _END:
        raise InvalidInput(f"a worker reports FINISHED, ERROR or FAILED, not {status.value}")
    report = _end_report(worker_id, job_id, status, exit_code, reason)
    outcome = _accepted(await _desk(ctx).end(worker_id, report), worker_id)
    # The pieces were accepted only while the job was held (each append checks), and the
    # worker sent the last of them before this end: they are the whole log. Any replica
    # seals it, as the pieces are in the store whichever replica received them; until
    # then every replica serves the log from its pieces.
    ctx.seals.seal_later(ctx.blobs, log_key(job_id))
    return outcome


@dataclass(frozen=True, slots=True)
class BatchedReport:
    """One report of a batch: ``kind`` "running" (``pid``, ``started_at``, ``record``)
    or "end" (``status``, ``exit_code``, ``reason``)."""

    job_id: int
    kind: str
    pid: int | None = None
    started_at: datetime | None = None
    record: str | None = None
    status: JobStatus | None = None
    exit_code: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class BatchedOutcome:
    """What one report of a batch did (``error``: why it was refused)."""

    job_id: int
    kind: str
    moved: bool
    error: str | None = None


async def report_batch(
    ctx: Context, worker_id: str, reports: list[BatchedReport]
) -> list[BatchedOutcome]:
    """Several RUNNING and end reports in one call, answered RUNNING ones first. All go
    to the server's reporter together (each end's log is sealed afterwards, in the
    background) so they are usually written in one transaction, which applies RUNNING
    reports before ends (a RUNNING report is never queued after its job's end). A
    report about a job not held any more is refused on its own (``moved`` false), not
    the call.
    """
    _check_worker_id(worker_id)
    ordered = _checked(reports)

    async def one(r: BatchedReport) -> BatchedOutcome:
        try:
            if r.kind == "running" and r.started_at is not None:
                await report_running(
                    ctx, worker_id, r.job_id, pid=r.pid, started_at=r.started_at, record=r.record
                )
            elif r.status is not None:
                await report_end(
                    ctx,
                    worker_id,
                    r.job_id,
                    status=r.status,
                    exit_code=r.exit_code,
                    reason=r.reason,
                )
        except Conflict as exc:
            return BatchedOutcome(r.job_id, r.kind, False, exc.message)
        return BatchedOutcome(r.job_id, r.kind, True)

    return list(await asyncio.gather(*(one(r) for r in ordered)))


def _checked(reports: Sequence[BatchedReport]) -> list[BatchedReport]:
    """``reports`` checked (``InvalidInput`` for a malformed one), RUNNING ones first."""
    for r in reports:
        if r.kind == "running" and r.started_at is None:
            raise InvalidInput(f"the RUNNING report of job {r.job_id} needs started_at")
        if r.kind == "end" and r.status not in _END:
            raise InvalidInput(f"the end report of job {r.job_id} needs an end status")
        if r.kind not in ("running", "end"):
            raise InvalidInput(f"unknown report kind {r.kind!r}: running or end")
    ordered = [r for r in reports if r.kind == "running"]
    ordered += [r for r in reports if r.kind == "end"]
    return ordered


def _end_report(
    worker_id: str, job_id: int, status: JobStatus, exit_code: int | None, reason: str | None
) -> EndReport:
    return EndReport(
        job_id=job_id,
        status=status,
        exit_code=exit_code,
        reason=None if reason is None else reason[:2000],
        actor=f"worker:{worker_id}",
    )


async def renew(ctx: Context, worker_id: str, job_ids: list[int]) -> dict[int, bool]:
    """Renew the leases this worker still holds: ``{job_id: abort_requested}``."""
    _check_worker_id(worker_id)
    if not job_ids:
        return {}
    return await ctx.store.leases_renew(
        worker_id=worker_id, job_ids=job_ids, lease_seconds=ctx.settings.lease_seconds
    )


async def held_job(ctx: Context, worker_id: str, job_id: int) -> Job:
    """The job, when ``worker_id`` holds it now; ``Conflict`` (409) otherwise."""
    try:
        job = await ctx.store.job_get(job_id)
    except NotFound:
        job = None
    if job is None or job.worker_id != worker_id or job.status not in _HELD:
        raise Conflict(
            f"job {job_id} is not held by worker {worker_id} (its lease was lost, or it "
            "ended): nothing more of it is accepted",
            {"job_id": job_id},
        )
    return job


async def append_log(ctx: Context, worker_id: str, job_id: int, offset: int, data: bytes) -> int:
    """Append a piece of a held job's log at ``offset``; the log's size after it."""
    if offset < 0:
        raise InvalidInput("offset must not be negative", {"field": "offset"})
    await held_job(ctx, worker_id, job_id)
    # Held: the log is not sealed (that happens after the end), and the worker sends its
    # pieces in order, each after the answer to the one before.
    size = await ctx.blobs.append(log_key(job_id), offset, data, unsealed=True)
    ctx.bus.job_changed(job_id)  # log followers on this server read on at once
    return size


def _check_output_name(name: str) -> None:
    if (
        not name
        or len(name) > 255
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or name in (".", "..")
    ):
        raise InvalidInput(f"invalid output file name {name!r}", {"field": "name"})


async def store_output(
    ctx: Context, worker_id: str, job_id: int, name: str, chunks: AsyncIterable[bytes]
) -> int:
    """Stream one output file of a held job into the blob store and record it."""
    _check_output_name(name)
    await held_job(ctx, worker_id, job_id)
    limit = ctx.settings.upload_max_bytes

    async def bounded() -> AsyncIterable[bytes]:
        total = 0
        async for chunk in chunks:
            total += len(chunk)
            if total > limit:
                raise TooLarge(
                    f"output file {name!r} is larger than upload_max_bytes ({limit} bytes)"
                )
            yield chunk

    key = output_key(job_id, name)
    size = await ctx.blobs.put_stream(key, bounded())
    await held_job(ctx, worker_id, job_id)  # lost while uploading: not attached
    record = JobFile(
        job_id=job_id, kind="output", name=name, size=size, blob_key=key, created_at=utcnow()
    )
    await ctx.store.job_file_add(record)
    return size


async def package_key_for(ctx: Context, worker_id: str, job_id: int, sha256: str) -> str:
    """The blob key of the package of a held job (404 for another package)."""
    job = await held_job(ctx, worker_id, job_id)
    if job.package_id is None:
        raise NotFound(f"job {job_id} has no package")
    package = await ctx.store.package_get(job.package_id)
    if package.sha256 != sha256:
        raise NotFound(f"package {sha256} is not the package of job {job_id}")
    return package_key(sha256)


async def payload_key_for(ctx: Context, worker_id: str, key: str) -> str:
    """A payload blob key, when it belongs to a job this worker holds."""
    job_id = payload_job(key)
    if job_id is None or ".." in key.split("/"):
        raise NotFound("no such payload file")
    await held_job(ctx, worker_id, job_id)
    return key
