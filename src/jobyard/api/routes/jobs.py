"""``/api/v1/jobs``: submit, list, inspect, cancel, abort, release, rerun, logs, files."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse

from jobyard.api.deps import Caller, Ctx, require_principal
from jobyard.api.dto import (
    CURSOR_HELP,
    MAX_ID,
    AdhocJobIn,
    EffectiveTimeoutOut,
    EventList,
    EventOut,
    FileList,
    FileOut,
    JobOut,
    JobPage,
    NoticeOut,
    json_response,
)
from jobyard.api.openapi import errors
from jobyard.api.routes.access import client_address
from jobyard.core.jobs import JobStatus
from jobyard.core.models import Job, JobFilter
from jobyard.service import jobs, logs
from jobyard.service.context import Context, Principal
from jobyard.service.uploads import receive_upload

router = APIRouter(
    prefix="/api/v1/jobs",
    tags=["jobs"],
    dependencies=[Depends(require_principal)],
    responses=errors(401, 404, 422),
)
JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="Job id.")]
#: What acting on a job may answer besides the router's 401/404/422.
CONFLICT: dict[int | str, dict[str, Any]] = errors(403, 409)


@router.post("", status_code=201, response_model=JobOut, responses=errors(403))
async def submit_job(body: AdhocJobIn, ctx: Ctx, caller: Caller, request: Request) -> Response:
    """Submit an ad-hoc job: a package + entry point, or a command.

    Needs admin or the policy ``{"action": "execute", "resource": "adhoc", "selector":
    "*"}``; a job's SESSION_ID cannot submit one.
    """
    job = await submit_adhoc_body(ctx, caller, body, client_address(request))
    return json_response(JobOut.of(job), 201)


async def submit_adhoc_body(
    ctx: Context, caller: Principal, body: AdhocJobIn, remote_addr: str | None
) -> Job:
    """The service call of ``POST /jobs`` (shared with :mod:`jobyard.api.hotpath`)."""
    return await jobs.submit_adhoc(
        ctx,
        caller,
        package_id=body.package_id,
        entrypoint=body.entrypoint,
        command=body.command,
        macros=body.macros,
        hold=body.hold,
        timeout=body.timeout,
        success_exit_codes=body.success_exit_codes,
        pool=body.pool,
        remote_addr=remote_addr,
    )


@router.get("", response_model=JobPage)
async def list_jobs(
    ctx: Ctx,
    caller: Caller,
    jobconfig_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    status: Annotated[list[JobStatus] | None, Query()] = None,
    submitted_by: Annotated[str | None, Query(max_length=255)] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    cursor: Annotated[str | None, Query(description=CURSOR_HELP)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """List the jobs the caller may view, newest first.

    Filter by jobconfig, status (repeatable), submitter, time.
    """
    flt = JobFilter(
        jobconfig_id=jobconfig_id,
        statuses=tuple(status) if status else None,
        submitted_by=submitted_by.replace("\x00", "") if submitted_by else None,
        created_after=created_after,
        created_before=created_before,
    )
    page = await jobs.list_(ctx, caller, flt, cursor=cursor, limit=limit)
    return json_response(
        JobPage(items=[JobOut.of(j) for j in page.items], next_cursor=page.next_cursor)
    )


@router.get("/{job_id}", response_model=JobOut)
async def get_job(job_id: JobId, ctx: Ctx, caller: Caller) -> Response:
    """Read one job, with the timeout the worker enforces for it (``effective_timeout``)
    and, for a QUEUED job no live worker can take, why it waits (``waiting_reason``)."""
    shown = await jobs.show(ctx, caller, job_id)
    out = JobOut.of(shown.job)
    out.effective_timeout = EffectiveTimeoutOut.of(shown.timeout)
    out.retry_of = shown.retry.retry_of
    out.attempt = shown.retry.attempt
    out.retried_by = shown.retry.retried_by
    if shown.waiting_reason is not None:
        out.waiting_reason = NoticeOut.of(shown.waiting_reason)
    return json_response(out)


@router.get("/{job_id}/events", response_model=EventList)
async def job_events(job_id: JobId, ctx: Ctx, caller: Caller) -> EventList:
    """The job's transitions in order: status, time, actor, reason."""
    return EventList(items=[EventOut.of(e) for e in await jobs.events(ctx, caller, job_id)])


@router.post("/{job_id}/cancel", response_model=JobOut, responses=CONFLICT)
async def cancel_job(job_id: JobId, ctx: Ctx, caller: Caller, request: Request) -> JobOut:
    """Cancel a WAITING, SEQUENCED or QUEUED job (409 otherwise)."""
    return JobOut.of(await jobs.cancel(ctx, caller, job_id, remote_addr=client_address(request)))


@router.post(
    "/{job_id}/abort",
    response_model=JobOut,
    responses={**CONFLICT, 202: {"model": JobOut, "description": "Still stopping."}},
)
async def abort_job(job_id: JobId, ctx: Ctx, caller: Caller, request: Request) -> JSONResponse:
    """Stop an INITIALIZING or RUNNING job; 200 once it ended FAILED, 202 if still stopping."""
    wait = ctx.settings.abort_grace_seconds + 3.0
    job, ended = await jobs.abort(
        ctx, caller, job_id, wait_seconds=wait, remote_addr=client_address(request)
    )
    return JSONResponse(JobOut.of(job).model_dump(mode="json"), status_code=200 if ended else 202)


@router.post("/{job_id}/release", response_model=JobOut, responses=CONFLICT)
async def release_job(job_id: JobId, ctx: Ctx, caller: Caller, request: Request) -> JobOut:
    """Release a WAITING job: it becomes SEQUENCED and takes its turn."""
    return JobOut.of(await jobs.release(ctx, caller, job_id, remote_addr=client_address(request)))


@router.post("/{job_id}/rerun", status_code=201, response_model=JobOut, responses=CONFLICT)
async def rerun_job(job_id: JobId, ctx: Ctx, caller: Caller, request: Request) -> JobOut:
    """Submit a new job repeating an ended one; it points back with ``rerun_of``."""
    return JobOut.of(await jobs.rerun(ctx, caller, job_id, remote_addr=client_address(request)))


@router.post(
    "/{job_id}/payload",
    status_code=201,
    response_model=FileOut,
    responses=errors(403, 409, 413),
)
async def add_payload(
    job_id: JobId,
    ctx: Ctx,
    caller: Caller,
    file: Annotated[UploadFile, File(description="The payload file.")],
    name: Annotated[str | None, Form(max_length=255)] = None,
) -> FileOut:
    """Attach a payload file to a WAITING job (create it with hold=true)."""
    async with receive_upload(ctx, file) as (tmp, _size):
        filename = name or file.filename or "payload"
        record = await jobs.add_payload(ctx, caller, job_id, filename, tmp)
    return FileOut.of(record)


@router.get("/{job_id}/payload", response_model=FileList)
async def list_payload(job_id: JobId, ctx: Ctx, caller: Caller) -> FileList:
    """Payload files attached to the job."""
    return FileList(items=[FileOut.of(f) for f in await jobs.payloads(ctx, caller, job_id)])


@router.get(
    "/{job_id}/log",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "The log text."}},
)
async def job_log(
    job_id: JobId,
    ctx: Ctx,
    caller: Caller,
    follow: Annotated[bool, Query(description="Stream until the job ends.")] = False,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> StreamingResponse:
    """The job's log (timestamped stdout/stderr lines); ``follow=true`` streams it live."""
    _job, key = await logs.open_log(ctx, caller, job_id)
    return StreamingResponse(
        logs.stream_log(ctx, job_id, key, offset=offset, follow=follow),
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/{job_id}/outputs", response_model=FileList)
async def list_outputs(job_id: JobId, ctx: Ctx, caller: Caller) -> FileList:
    """Files the job left in LOCAL_JOB_OUT_DIR."""
    return FileList(items=[FileOut.of(f) for f in await jobs.outputs(ctx, caller, job_id)])


@router.get(
    "/{job_id}/outputs/{name:path}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def get_output(job_id: JobId, name: str, ctx: Ctx, caller: Caller) -> StreamingResponse:
    """Download one output file (streamed from the blob store, wherever it is)."""
    record, chunks = await jobs.output(ctx, caller, job_id, name)
    base = record.name.rsplit("/", 1)[-1]
    quoted = quote(base)
    disposition = (
        f'attachment; filename="{base}"'
        if quoted == base
        else f"attachment; filename*=utf-8''{quoted}"
    )
    headers = {"Content-Disposition": disposition, "Content-Length": str(record.size)}
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)
