"""Job use cases: submit, run a jobconfig, hold/release, cancel, abort, rerun, payloads."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from jobyard.blobs.keys import payload_key
from jobyard.core.errors import Conflict, InvalidInput, NotFound
from jobyard.core.jobs import CANCELLABLE, TERMINAL, JobStatus
from jobyard.core.models import (
    Job,
    JobConfig,
    JobEvent,
    JobFile,
    JobFilter,
    NewJob,
    Notice,
    Page,
    repeat_job,
)
from jobyard.core.retries import RetryLinks
from jobyard.core.runplan import EffectiveTimeout, effective_timeout
from jobyard.core.timeutil import utcnow
from jobyard.core.validation import check_exit_codes, check_name
from jobyard.service import access, auditlog, pools, run_macros
from jobyard.service.context import Context, Principal
from jobyard.service.jobconfigs import check_run_target

FILE_NAME_RE = re.compile(r"^[^/\\\x00]{1,255}$")


def _after_submit(ctx: Context, job: Job) -> None:
    if job.status is not JobStatus.WAITING:
        ctx.bus.work_available()


def _bound_names(principal: Principal) -> tuple[str, ...]:
    """Whose authority a job submitted by ``principal`` stays bounded by beyond its own
    definers: a job token passes on the definers of the job it belongs to."""
    return tuple(sorted({p.name for p in principal.bounded_by}))


def _reason(principal: Principal, what: str) -> str:
    """The reason of a job's first event; a job token's submission names its job."""
    if principal.is_job and principal.job_id is not None:
        return f"{what} by job {principal.job_id}"
    return what


async def run_jobconfig(
    ctx: Context,
    principal: Principal,
    jobconfig_id: int,
    *,
    macros: dict[str, str],
    hold: bool = False,
    trigger: str = "api",
    remote_addr: str | None = None,
) -> Job:
    """Submit one job of a jobconfig, with per-job macro overrides.

    The store reads the jobconfig (refusing a disabled one) and inserts the job in one
    transaction: what runs is the jobconfig as it is at submission, and the job records
    who decided that (its ``definers``). An API submission (``trigger="api"``) needs
    ``execute`` on the jobconfig and is audited as ``job.submit`` (scheduled firings are
    neither: too many, and the owner's own). The run-time ``macros`` are checked by
    :func:`jobyard.service.run_macros.check` (parameters, loader names, secure names,
    caps); a job token's submission is audited with ``via_job``.
    """
    jobconfig = await ctx.store.jobconfig_get(jobconfig_id)
    if trigger == "api":
        await access.require(ctx, principal, "execute", "jobconfigs", jobconfig)
    await run_macros.check(ctx, principal, macros, jobconfig=jobconfig, submitter=principal.name)
    audit = None
    if trigger == "api":
        details = {"jobconfig_id": jobconfig_id, "macros": sorted(macros), "hold": hold}
        audit = auditlog.audit_note(principal, "job.submit", "job", details, remote_addr)
    job = await ctx.store.job_submit_for_jobconfig(
        jobconfig_id,
        macros=dict(macros),
        hold=hold,
        trigger=trigger,
        submitted_by=principal.name,
        actor=principal.actor,
        reason=_reason(principal, f"submitted ({trigger})"),
        definers=_bound_names(principal),
        audit=audit,
    )
    _after_submit(ctx, job)
    return job


async def run_jobconfig_named(
    ctx: Context,
    principal: Principal,
    name: str,
    *,
    macros: dict[str, str],
    hold: bool = False,
    remote_addr: str | None = None,
) -> Job:
    """:func:`run_jobconfig` of the jobconfig with this name, in one call.

    A name that no jobconfig has, or whose jobconfig the caller may not view, answers
    the same 404 (``no jobconfig named …``): names cannot be probed this way.
    """
    missing = NotFound(f"no jobconfig named {name!r}", {"name": name})
    try:
        jobconfig = await ctx.store.jobconfig_get_by_name(name)
    except NotFound:
        raise missing from None
    if not await access.can(ctx, principal, "view", "jobconfigs", jobconfig):
        raise missing
    return await run_jobconfig(
        ctx, principal, jobconfig.id, macros=macros, hold=hold, remote_addr=remote_addr
    )


async def submit_adhoc(
    ctx: Context,
    principal: Principal,
    *,
    package_id: int | None,
    entrypoint: str | None,
    command: list[str] | None,
    macros: dict[str, str],
    hold: bool,
    timeout: int,
    success_exit_codes: list[int],
    pool: str,
    remote_addr: str | None = None,
) -> Job:
    """Submit a job that belongs to no jobconfig (no concurrency limit applies).

    Needs admin or the policy ``execute`` on ``adhoc`` ``*`` (403 otherwise, saying
    how to get it); a job token never submits one. Its macros follow the run-time
    rules for everyone (caps, no loader names, no secure names).
    """
    await access.require_adhoc(ctx, principal)
    await check_run_target(ctx, package_id, entrypoint, command)
    await run_macros.check(ctx, principal, macros, jobconfig=None, submitter=principal.name)
    check_exit_codes(success_exit_codes)
    check_name(pool, "pool")
    if timeout < 0:
        raise InvalidInput("timeout must be ≥ 0 minutes (0 = none)", {"field": "timeout"})
    new = NewJob(
        jobconfig_id=None,
        package_id=package_id,
        entrypoint=entrypoint,
        command=command,
        macros=dict(macros),
        timeout=timeout,
        success_exit_codes=list(success_exit_codes),
        pool=pool,
        trigger="adhoc",
        submitted_by=principal.name,
        hold=hold,
    )
    details = {"adhoc": True, "macros": sorted(macros), "hold": hold}
    audit = auditlog.audit_note(principal, "job.submit", "job", details, remote_addr)
    job = await ctx.store.job_insert(
        new, actor=principal.actor, reason="submitted (adhoc)", audit=audit
    )
    _after_submit(ctx, job)
    return job


async def _job_for(ctx: Context, principal: Principal, job_id: int, action: str) -> Job:
    """The job, if ``principal`` may ``action`` it (404 if it may not even view it)."""
    job = await ctx.store.job_get(job_id)
    await access.require_job(ctx, principal, action, job)
    return job


async def rerun(
    ctx: Context, principal: Principal, job_id: int, *, remote_addr: str | None = None
) -> Job:
    """Submit a new job repeating an ended one (same program, macros, limits, payload).

    Needs ``execute`` on the old job (and, for an ad-hoc one, the right to submit
    ad-hoc jobs). With payload files the new job is created WAITING, gets copies of
    them, and is released: its history shows WAITING -> SEQUENCED. It keeps the old
    job's run-time macros (checked again, but for the parameter rule: they were
    accepted once) and its definers, who decided what it runs.
    """
    old = await _job_for(ctx, principal, job_id, "execute")
    if old.status not in TERMINAL:
        raise Conflict(
            f"job {job_id} is {old.status}: only an ended job can be rerun",
            {"status": old.status},
        )
    jobconfig = None
    if old.jobconfig_id is None:
        await access.require_adhoc(ctx, principal)
    else:
        jobconfig = await ctx.store.jobconfig_get(old.jobconfig_id)
    await run_macros.check(
        ctx,
        principal,
        old.macros,
        jobconfig=jobconfig,
        submitter=principal.name,
        parameters_only=False,
    )
    new = repeat_job(
        old,
        trigger="rerun",
        submitted_by=principal.name,
        rerun_of=old.id,
        definers=(*(old.definers or ()), *_bound_names(principal)),
    )
    payload = await ctx.store.job_files_list(old.id, "payload")
    if payload:
        new = replace(new, hold=True)
    job = await ctx.store.job_insert(
        new, actor=principal.actor, reason=_reason(principal, f"rerun of job {old.id}")
    )
    if payload:
        for item in payload:
            key = payload_key(job.id, item.name)
            size = await ctx.blobs.copy(item.blob_key, key)
            await ctx.store.job_file_add(
                replace(item, job_id=job.id, size=size, blob_key=key, created_at=utcnow())
            )
        job = await ctx.store.job_release(job.id, actor=principal.actor)
    _after_submit(ctx, job)
    details = {"rerun_of": old.id, "jobconfig_id": old.jobconfig_id}
    await auditlog.record(ctx, principal, "job.rerun", "job", job.id, details, remote_addr)
    return job


async def get(ctx: Context, principal: Principal, job_id: int) -> Job:
    """Read one job the caller may view."""
    return await _job_for(ctx, principal, job_id, "view")


@dataclass(frozen=True, slots=True)
class JobShown:
    """One job as ``GET /jobs/{id}`` shows it: what a caller cannot work out alone."""

    job: Job
    timeout: EffectiveTimeout
    #: Why a QUEUED job is not picked up (no live worker serves its pool), if so.
    waiting_reason: Notice | None
    #: Where it sits in a retry chain (the job it retries, its attempt, its retry).
    #: Both ends belong to the same jobconfig, so the caller may view them too.
    retry: RetryLinks = field(default_factory=RetryLinks)


async def show(ctx: Context, principal: Principal, job_id: int) -> JobShown:
    """Read one job the caller may view, with the timeout the worker enforces for it,
    and why it waits when it is QUEUED in a pool no live worker serves, and its retry
    links (read here only, never on the job path).

    The job's own ``timeout`` is 0 when its jobconfig sets none, yet its manifest entry
    point may set one: the answer resolves it with the worker's own rule
    (:func:`jobyard.core.runplan.effective_timeout`) so callers see what will apply.
    A package since purged counts as none (its job has ended or cannot start).
    """
    job = await _job_for(ctx, principal, job_id, "view")
    package = None
    if job.timeout <= 0 and job.package_id is not None:
        with contextlib.suppress(NotFound):
            package = await ctx.store.package_get(job.package_id)
    waiting = await pools.waiting_reason(ctx, job)
    links = RetryLinks() if job.jobconfig_id is None else await ctx.store.job_retry_links(job.id)
    return JobShown(job, effective_timeout(job, package), waiting, links)


async def list_(
    ctx: Context,
    principal: Principal,
    flt: JobFilter,
    *,
    cursor: str | None,
    limit: int,
    oldest_first: bool = False,
) -> Page[Job]:
    """List the jobs the caller may view, newest first (or oldest first: the console's
    ``sort=id`` pages through the whole history that way).

    Those are the jobs of jobconfigs it may view, plus the jobs it submitted (its
    ad-hoc ones included). A page may hold fewer than ``limit`` items; ``next_cursor``
    still says whether more follow.
    """
    page = await ctx.store.jobs_list(flt, cursor=cursor, limit=limit, oldest_first=oldest_first)
    visible = await access.visible_jobconfig_filter(ctx, principal)
    if visible is None:
        return page
    configs: dict[int, JobConfig | None] = {}
    items: list[Job] = []
    for job in page.items:
        if visible.admits_submitter(job.submitted_by):
            items.append(job)
            continue
        jc_id = job.jobconfig_id
        jc = None
        if jc_id is not None:
            if jc_id not in configs:
                try:
                    configs[jc_id] = await ctx.store.jobconfig_get(jc_id)
                except NotFound:
                    configs[jc_id] = None
            jc = configs[jc_id]
            if jc is None:
                continue
        if visible.admits_job(job.submitted_by, jc):
            items.append(job)
    return Page(items=items, next_cursor=page.next_cursor)


async def events(ctx: Context, principal: Principal, job_id: int) -> list[JobEvent]:
    """The recorded transitions of a job the caller may view."""
    await _job_for(ctx, principal, job_id, "view")
    return await ctx.store.job_events(job_id)


async def release(
    ctx: Context, principal: Principal, job_id: int, *, remote_addr: str | None = None
) -> Job:
    """WAITING -> SEQUENCED: the job takes its turn (``execute``)."""
    await _job_for(ctx, principal, job_id, "execute")
    job = await ctx.store.job_release(job_id, actor=principal.actor)
    ctx.bus.work_available()
    ctx.bus.job_changed(job_id)
    await auditlog.record(ctx, principal, "job.release", "job", job_id, None, remote_addr)
    return job


async def cancel(
    ctx: Context, principal: Principal, job_id: int, *, remote_addr: str | None = None
) -> Job:
    """Cancel a job no worker has acquired yet (``execute``); it ends CANCELLED, no log."""
    await _job_for(ctx, principal, job_id, "execute")
    try:
        job = await ctx.store.job_cancel(
            job_id, actor=principal.actor, reason=f"cancelled by {principal.name}"
        )
    except Conflict as exc:
        raise _not_cancellable(job_id, exc) from None
    ctx.bus.work_available()
    ctx.bus.job_changed(job_id)
    await auditlog.record(ctx, principal, "job.cancel", "job", job_id, None, remote_addr)
    return job


def _not_cancellable(job_id: int, exc: Conflict) -> Conflict:
    """The store's refusal to cancel, reworded to say what the caller can do instead.

    A job a worker already holds can only be aborted (it ends FAILED); an ended job
    needs nothing. The details keep the store's (``status`` among them).
    """
    status = str(exc.details.get("status", ""))
    if status in {s.value for s in TERMINAL}:
        message = f"job {job_id} has already ended ({status}): there is nothing to cancel"
    elif status:
        message = (
            f"job {job_id} is {status}: only WAITING, SEQUENCED or QUEUED jobs can be "
            f"cancelled; stop it with `jobyard jobs abort {job_id}` "
            f"(POST /api/v1/jobs/{job_id}/abort), it then ends FAILED"
        )
    else:
        return exc
    return Conflict(message, exc.details)


async def abort(
    ctx: Context,
    principal: Principal,
    job_id: int,
    *,
    wait_seconds: float,
    remote_addr: str | None = None,
) -> tuple[Job, bool]:
    """Stop an INITIALIZING/RUNNING job (``execute``); it ends FAILED. Returns (job, ended).

    Authorization comes before the state check: a caller without the right gets
    404/403, never the 409 that would tell it the job's state.
    """
    current = await _job_for(ctx, principal, job_id, "execute")
    if current.status in CANCELLABLE:
        raise Conflict(
            f"job {job_id} is {current.status}: no worker runs it yet, cancel it instead",
            {"status": current.status},
        )
    reason = f"aborted by {principal.name}"
    await ctx.store.job_request_abort(job_id, actor=principal.actor, reason=reason)
    ctx.bus.request_abort(job_id, reason)
    await auditlog.record(ctx, principal, "job.abort", "job", job_id, None, remote_addr)
    job = await wait_until_ended(ctx, job_id, wait_seconds)
    return job, job.status in TERMINAL


async def wait_until_ended(ctx: Context, job_id: int, timeout: float) -> Job:
    """Return the job once it has ended, or as it is when ``timeout`` runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        job = await ctx.store.job_get(job_id)
        left = deadline - loop.time()
        if job.status in TERMINAL or left <= 0:
            return job
        await ctx.bus.wait_job(job_id, min(left, 0.5))


def _check_file_name(name: str) -> None:
    if not FILE_NAME_RE.match(name) or name in {".", ".."}:
        raise InvalidInput(
            f"invalid file name {name!r}: one path component, no '/' or '\\', ≤255 chars",
            {"field": "name"},
        )


async def add_payload(
    ctx: Context, principal: Principal, job_id: int, name: str, src: Path
) -> JobFile:
    """Attach a payload file to a WAITING job (created with hold; ``execute``)."""
    job = await _job_for(ctx, principal, job_id, "execute")
    _check_file_name(name)
    if job.status is not JobStatus.WAITING:
        raise Conflict(
            f"job {job_id} is {job.status}: payload files can only be attached while it is "
            "WAITING (create it with hold=true, attach, then release)",
            {"status": job.status},
        )
    key = payload_key(job_id, name)
    size = await ctx.blobs.put_file(key, src, move=True)
    record = JobFile(
        job_id=job_id, kind="payload", name=name, size=size, blob_key=key, created_at=utcnow()
    )
    await ctx.store.job_file_add(record)
    return record


async def payloads(ctx: Context, principal: Principal, job_id: int) -> list[JobFile]:
    """The payload files attached to a job the caller may view."""
    await _job_for(ctx, principal, job_id, "view")
    return await ctx.store.job_files_list(job_id, "payload")


async def outputs(ctx: Context, principal: Principal, job_id: int) -> list[JobFile]:
    """The output files kept from the LOCAL_JOB_OUT_DIR of a job the caller may view."""
    await _job_for(ctx, principal, job_id, "view")
    return await ctx.store.job_files_list(job_id, "output")


async def output(
    ctx: Context, principal: Principal, job_id: int, name: str
) -> tuple[JobFile, AsyncIterator[bytes]]:
    """One output file (of a job the caller may view) and a stream of its bytes.

    The first chunk is read here, so a blob store failure (or a blob gone missing)
    answers an error before the response has begun.
    """
    for item in await outputs(ctx, principal, job_id):
        if item.name == name:
            chunks = ctx.blobs.read_chunks(item.blob_key)
            try:
                first = await anext(chunks, b"")
            except NotFound:
                break
            return item, _prepend(first, chunks)
    raise NotFound(f"job {job_id} has no output file {name!r}", {"job_id": job_id})


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk
