"""``/api/v1/worker/...``: what remote workers (``jobyard worker``) call.

Only a worker token (``jyw_...``, see :mod:`jobyard.service.worker_tokens`) opens these
routes; any other token is refused with 403. Every call is checked against the store, so
a worker may send each one to another replica. Anything about a job the worker does not
hold any more (lease lost, job ended) is refused with 409.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from jobyard.api.deps import Ctx, require_principal
from jobyard.api.openapi import errors
from jobyard.core.errors import Unauthorized
from jobyard.core.jobs import JobStatus
from jobyard.core.tokens import WorkerToken
from jobyard.service import remote_workers
from jobyard.service.context import Principal
from jobyard.service.worker_tokens import refuse_non_worker


async def require_worker(request: Request) -> WorkerToken:
    """The worker token of the call; 403 for a caller with any other kind of token."""
    principal: Principal = await require_principal(request)
    refuse_non_worker(principal)
    token = getattr(request.state, "worker_token", None)
    if not isinstance(token, WorkerToken):  # pragma: no cover - set with the principal
        raise Unauthorized("the worker routes need 'Authorization: Bearer <worker token>'")
    return token


Worker = Annotated[WorkerToken, Depends(require_worker)]
WorkerId = Annotated[str, Query(min_length=1, max_length=200, description="The caller's id.")]

router = APIRouter(
    prefix="/api/v1/worker",
    tags=["worker"],
    dependencies=[Depends(require_worker)],
    responses=errors(401, 403, 422),
)


class HeartbeatIn(BaseModel):
    """Body of ``POST /api/v1/worker/heartbeat``: the worker's registration."""

    model_config = ConfigDict(extra="forbid")

    worker_id: str = Field(min_length=1, max_length=200)
    host: str = Field(max_length=255)
    pid: int
    version: str = Field(max_length=64)
    pool: str = Field(min_length=1, max_length=100)
    slots: int = Field(ge=1)
    started_at: datetime
    labels: dict[str, str] = Field(default_factory=dict)
    running: int = Field(default=0, ge=0)
    draining: bool = False
    protocol: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="The worker protocol it speaks (absent: a worker from before it was "
        "numbered, served as protocol 1).",
    )


class HeartbeatOut(BaseModel):
    """What the worker must know."""

    drain: bool = Field(description="True: finish running jobs, take no new ones, exit.")
    lease_seconds: float = Field(description="A job's lease: renew well within it.")
    heartbeat_seconds: float = Field(description="How often to heartbeat and renew.")
    protocol_min: int = Field(description="The oldest worker protocol this server serves.")
    protocol_max: int = Field(description="The newest worker protocol this server serves.")
    server_version: str = Field(description="This server's jobyard release.")


@router.post("/heartbeat", response_model=HeartbeatOut, responses=errors(409))
async def heartbeat(ctx: Ctx, token: Worker, body: HeartbeatIn) -> HeartbeatOut:
    """Register the worker or refresh its record (health in ``GET /api/v1/workers``);
    409 ``worker_protocol_unsupported`` for a worker protocol outside
    ``protocol_min``..``protocol_max`` (the message says what to upgrade)."""
    hello = remote_workers.Hello(**body.model_dump())
    answer = await remote_workers.heartbeat(ctx, token, hello)
    return HeartbeatOut(
        drain=answer.drain,
        lease_seconds=answer.lease_seconds,
        heartbeat_seconds=answer.heartbeat_seconds,
        protocol_min=answer.protocol_min,
        protocol_max=answer.protocol_max,
        server_version=answer.server_version,
    )


class BatchedIn(BaseModel):
    """One report of ``POST /api/v1/worker/reports``."""

    model_config = ConfigDict(extra="forbid")

    job_id: int
    kind: Literal["running", "end"]
    pid: int | None = None
    started_at: datetime | None = None
    record: str | None = None
    status: JobStatus | None = None
    exit_code: int | None = None
    reason: str | None = None


class AcquireIn(BaseModel):
    """Body of ``POST /api/v1/worker/acquire``."""

    model_config = ConfigDict(extra="forbid")

    worker_id: str = Field(min_length=1, max_length=200)
    pool: str = Field(min_length=1, max_length=100)
    labels: dict[str, str] = Field(default_factory=dict)
    free: int = Field(ge=0, le=1000, description="Free slots: most jobs to claim.")
    wait_seconds: float = Field(
        default=25.0, ge=0, description="Wait this long for a job when none is queued."
    )
    reports: list[BatchedIn] = Field(
        default_factory=list,
        max_length=1000,
        description="RUNNING and end reports written before the claim, as for "
        "/worker/reports, answered in `results`; with reports the call does not wait.",
    )


@router.post("/acquire")
async def acquire(ctx: Ctx, token: Worker, body: AcquireIn, request: Request) -> dict[str, Any]:
    """Claim up to ``free`` queued jobs at once; none queued: wait (long-poll) until
    one is submitted or ``wait_seconds`` pass (then an empty list).

    Each assignment carries what to run, its resolved macros (secure ones decrypted:
    they travel only over this authenticated connection), its SESSION_ID and an opaque
    ``record`` to send back with the RUNNING report.
    """
    found = await remote_workers.acquire(
        ctx,
        token,
        worker_id=body.worker_id,
        pool=body.pool,
        labels=body.labels,
        free=body.free,
        wait_seconds=body.wait_seconds,
        gone=request.is_disconnected,
        reports=[remote_workers.BatchedReport(**r.model_dump()) for r in body.reports],
    )
    return remote_workers.acquired_json(found)


class RunningIn(BaseModel):
    """Body of ``POST /api/v1/worker/jobs/{job_id}/running``."""

    model_config = ConfigDict(extra="forbid")

    worker_id: str = Field(min_length=1, max_length=200)
    pid: int | None = None
    started_at: datetime
    record: str | None = Field(default=None, description="The assignment's record.")


class ReportOut(BaseModel):
    """An accepted report."""

    job_id: int
    moved: bool


@router.post("/jobs/{job_id}/running", response_model=ReportOut, responses=errors(409))
async def running(ctx: Ctx, token: Worker, job_id: int, body: RunningIn) -> ReportOut:
    """INITIALIZING -> RUNNING; 409 when the job is not held any more (do not run it)."""
    outcome = await remote_workers.report_running(
        ctx, body.worker_id, job_id, pid=body.pid, started_at=body.started_at, record=body.record
    )
    return ReportOut(job_id=outcome.job_id, moved=outcome.moved)


class EndIn(BaseModel):
    """Body of ``POST /api/v1/worker/jobs/{job_id}/end``."""

    model_config = ConfigDict(extra="forbid")

    worker_id: str = Field(min_length=1, max_length=200)
    status: JobStatus
    exit_code: int | None = None
    reason: str | None = None


@router.post("/jobs/{job_id}/end", response_model=ReportOut, responses=errors(409))
async def end(ctx: Ctx, token: Worker, job_id: int, body: EndIn) -> ReportOut:
    """Record the end status (the log is sealed first); 409 when the job is not held
    any more: a worker that lost it cannot change how it ended."""
    outcome = await remote_workers.report_end(
        ctx,
        body.worker_id,
        job_id,
        status=body.status,
        exit_code=body.exit_code,
        reason=body.reason,
    )
    return ReportOut(job_id=outcome.job_id, moved=outcome.moved)


class ReportsIn(BaseModel):
    """Body of ``POST /api/v1/worker/reports``."""

    model_config = ConfigDict(extra="forbid")

    worker_id: str = Field(min_length=1, max_length=200)
    reports: list[BatchedIn] = Field(max_length=1000)


class BatchedOut(BaseModel):
    """What one report did: ``moved`` false (with ``error``) when the job is not held."""

    job_id: int
    kind: str
    moved: bool
    error: str | None


class ReportsOut(BaseModel):
    """One outcome per report, RUNNING ones first."""

    results: list[BatchedOut]


@router.post("/reports", response_model=ReportsOut)
async def reports(ctx: Ctx, token: Worker, body: ReportsIn) -> ReportsOut:
    """Several RUNNING and end reports in one call (written together); each is refused
    on its own (``moved`` false) when its job is not held any more."""
    batch = [remote_workers.BatchedReport(**r.model_dump()) for r in body.reports]
    done = await remote_workers.report_batch(ctx, body.worker_id, batch)
    return ReportsOut(
        results=[
            BatchedOut(job_id=o.job_id, kind=o.kind, moved=o.moved, error=o.error) for o in done
        ]
    )


class RenewIn(BaseModel):
    """Body of ``POST /api/v1/worker/renew``."""

    model_config = ConfigDict(extra="forbid")

    worker_id: str = Field(min_length=1, max_length=200)
    job_ids: list[int] = Field(max_length=10_000)


@router.post("/renew")
async def renew(ctx: Ctx, token: Worker, body: RenewIn) -> dict[str, Any]:
    """Renew leases: ``leases`` maps each job still held to whether an abort was asked
    (a job missing from it is lost: stop it, report nothing)."""
    leases = await remote_workers.renew(ctx, body.worker_id, body.job_ids)
    return {"leases": {str(k): v for k, v in leases.items()}}


@router.post("/jobs/{job_id}/log", responses=errors(409, 413))
async def append_log(
    ctx: Ctx,
    token: Worker,
    job_id: int,
    request: Request,
    worker_id: WorkerId,
    offset: Annotated[int, Query(ge=0, description="Where the bytes start in the log.")],
) -> dict[str, int]:
    """Append raw bytes (the body) to the job's log at ``offset``: a retried piece
    changes nothing; a gap is 409 with ``details.size`` (resend from there)."""
    data = await request.body()
    size = await remote_workers.append_log(ctx, worker_id, job_id, offset, data)
    return {"size": size}


@router.put("/jobs/{job_id}/outputs/{name}", responses=errors(409, 413))
async def put_output(
    ctx: Ctx, token: Worker, job_id: int, name: str, request: Request, worker_id: WorkerId
) -> dict[str, int]:
    """Store one output file (the raw body, streamed) of a held job."""
    size = await remote_workers.store_output(ctx, worker_id, job_id, name, request.stream())
    return {"size": size}


@router.get("/jobs/{job_id}/package/{sha256}", responses=errors(404, 409))
async def get_package(
    ctx: Ctx, token: Worker, job_id: int, sha256: str, worker_id: WorkerId
) -> StreamingResponse:
    """Download the package of a held job (``ETag``: its sha256; verify it)."""
    key = await remote_workers.package_key_for(ctx, worker_id, job_id, sha256)
    return StreamingResponse(
        ctx.blobs.read_chunks(key),
        media_type="application/octet-stream",
        headers={"ETag": f'"{sha256}"'},
    )


@router.get("/payload", responses=errors(404, 409))
async def get_payload(
    ctx: Ctx,
    token: Worker,
    worker_id: WorkerId,
    key: Annotated[str, Query(max_length=1000, description="The payload's blob key.")],
) -> StreamingResponse:
    """Download one payload file of a held job."""
    blob = await remote_workers.payload_key_for(ctx, worker_id, key)
    return StreamingResponse(ctx.blobs.read_chunks(blob), media_type="application/octet-stream")
