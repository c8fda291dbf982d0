"""``jobyard jobs ...``: list, inspect, cancel, abort, release, rerun; read logs and outputs."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.text import Text

from jobyard.cli.context import (
    EXIT_INPUT,
    CliFailure,
    CliState,
    JsonFlag,
    OutputOpt,
    PlainFlag,
    state_of,
)
from jobyard.cli.follow import follow_and_report
from jobyard.cli.lookup import jobconfig_names, resolve_jobconfig
from jobyard.cli.render import (
    events_table,
    fields_table,
    jobs_table,
    outputs_table,
    status_text,
    timeout_text,
)
from jobyard.client import ApiClient, ApiError, JsonObject, Page, collect_all
from jobyard.core.jobs import JobStatus

app = typer.Typer(
    name="jobs",
    help="List, inspect and control jobs; read their logs and outputs.",
    no_args_is_help=True,
)

JOB_FIELDS = (
    "id",
    "jobconfig_id",
    "status",
    "status_reason",
    "exit_code",
    "package_id",
    "entrypoint",
    "command",
    "macros",
    "trigger",
    "submitted_by",
    "rerun_of",
    "retry_of",
    "attempt",
    "retried_by",
    "worker_id",
    "pool",
    "labels",
    "priority",
    "timeout",
    "success_exit_codes",
    "created_at",
    "sequenced_at",
    "queued_at",
    "acquired_at",
    "started_at",
    "ended_at",
    "abort_requested_at",
)

JobId = Annotated[int, typer.Argument(help="Job id.", min=1, show_default=False)]


def _statuses(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or []:
        for part in value.split(","):
            name = part.strip().upper()
            if not name:
                continue
            if name not in JobStatus.__members__:
                allowed = ", ".join(s.value for s in JobStatus)
                raise typer.BadParameter(
                    f"unknown status {part!r} (one of {allowed})", param_hint="--status"
                )
            out.append(name)
    return out


@dataclass(frozen=True, slots=True)
class JobListing:
    """A page (or all pages) of jobs, with the names of their jobconfigs for display."""

    items: list[JsonObject]
    next_cursor: str | None
    names: dict[int, str] = field(default_factory=dict)


async def list_jobs(
    api: ApiClient,
    *,
    statuses: list[str],
    jobconfig: str | None,
    limit: int,
    cursor: str | None,
    all_pages: bool,
    with_names: bool,
) -> JobListing:
    """Jobs matching the filters: one page from ``cursor``, or every page with ``all_pages``."""
    jobconfig_id = int((await resolve_jobconfig(api, jobconfig))["id"]) if jobconfig else None

    async def fetch(page_cursor: str | None) -> Page:
        return await api.jobs_list(
            jobconfig_id=jobconfig_id, statuses=statuses, cursor=page_cursor, limit=limit
        )

    if all_pages:
        items, next_cursor = await collect_all(fetch), None
    else:
        page = await fetch(cursor)
        items, next_cursor = page.items, page.next_cursor
    names: dict[int, str] = {}
    if with_names:
        ids = {int(j["jobconfig_id"]) for j in items if j.get("jobconfig_id")}
        names = await jobconfig_names(api, ids)
    return JobListing(items, next_cursor, names)


@app.command("list")
def list_command(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            "-s",
            help="Only jobs in this status (repeatable, or comma-separated).",
            show_default=False,
        ),
    ] = None,
    jobconfig: Annotated[
        str | None,
        typer.Option("--jobconfig", "-c", help="Only jobs of this jobconfig (name or id)."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="Jobs per page.", min=1, max=500)
    ] = 20,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Continue a listing where a page ended.")
    ] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Fetch every page.")] = False,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """List jobs, newest first."""
    state = state_of(ctx)
    statuses = _statuses(status)
    listing = state.call(
        lambda api: list_jobs(
            api,
            statuses=statuses,
            jobconfig=jobconfig,
            limit=limit,
            cursor=cursor,
            all_pages=all_pages,
            with_names=not json_output,
        )
    )
    if json_output:
        state.print_json({"items": listing.items, "next_cursor": listing.next_cursor})
        return
    if not listing.items:
        state.err.print("no jobs")
        return
    state.out.print(jobs_table(listing.items, listing.names))
    if listing.next_cursor:
        state.err.print(f"[dim]more: --cursor {escape(listing.next_cursor)} (or --all)[/]")


@dataclass(frozen=True, slots=True)
class JobDetails:
    """A job with its status history and output files."""

    job: JsonObject
    events: list[JsonObject]
    outputs: list[JsonObject]


async def job_details(api: ApiClient, job_id: int) -> JobDetails:
    """The job, its events and its outputs (an unreadable history or output list is empty)."""
    job = await api.job_get(job_id)
    events: list[JsonObject] = []
    outputs: list[JsonObject] = []
    with contextlib.suppress(ApiError):
        events = await api.job_events(job_id)
    with contextlib.suppress(ApiError):
        outputs = await api.job_outputs(job_id)
    return JobDetails(job, events, outputs)


@app.command("show")
def show_command(
    ctx: typer.Context,
    job_id: JobId,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Show a job's fields, its status history and its output files."""
    state = state_of(ctx)
    details = state.call(lambda api: job_details(api, job_id))
    if json_output:
        state.print_json({"job": details.job, "events": details.events, "outputs": details.outputs})
        return
    shown = {**details.job, "timeout": timeout_text(details.job)}
    hidden = {"effective_timeout", "waiting_reason"}
    extra = [k for k in details.job if k not in JOB_FIELDS and k not in hidden]
    waiting = details.job.get("waiting_reason")
    if isinstance(waiting, Mapping):
        # Why a QUEUED job is not picked up (no live worker serves its pool).
        shown["waiting"] = str(waiting.get("message") or waiting.get("code"))
        extra.insert(0, "waiting")
    state.out.print(fields_table(shown, [*JOB_FIELDS, *extra], title=f"job {job_id}"))
    state.out.print()
    state.out.print(events_table(details.events))
    if details.outputs:
        state.out.print()
        state.out.print(outputs_table(details.outputs))


def _print_status(state: CliState, job: JsonObject, what: str) -> None:
    state.out.print(Text.assemble(f"job {job.get('id')} {what}: ", status_text(job.get("status"))))


def _transition(
    ctx: typer.Context,
    json_output: bool,
    what: str,
    call: Callable[[ApiClient], Awaitable[JsonObject]],
) -> None:
    state = state_of(ctx)
    job = state.call(call)
    if json_output:
        state.print_json(job)
    else:
        _print_status(state, job, what)


@app.command("cancel")
def cancel_command(
    ctx: typer.Context,
    job_id: JobId,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Cancel a job that no worker has acquired yet (WAITING, SEQUENCED or QUEUED)."""
    _transition(ctx, json_output, "cancelled", lambda api: api.job_cancel(job_id))


@app.command("abort")
def abort_command(
    ctx: typer.Context,
    job_id: JobId,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Stop a job a worker is running (INITIALIZING or RUNNING); it ends FAILED."""
    state = state_of(ctx)
    result = state.call(lambda api: api.job_abort(job_id))
    if json_output:
        state.print_json(result.job)
    elif result.ended:
        _print_status(state, result.job, "aborted")
    else:
        state.out.print(
            f"abort requested: job {job_id} is stopping "
            f"(follow it with: jobyard jobs log {job_id} -f)"
        )


@app.command("release")
def release_command(
    ctx: typer.Context,
    job_id: JobId,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Release a job created on hold (WAITING) so that it runs."""
    _transition(ctx, json_output, "released", lambda api: api.job_release(job_id))


@app.command("rerun")
def rerun_command(
    ctx: typer.Context,
    job_id: JobId,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Submit a new job that repeats this one (same jobconfig, macros and payload)."""
    state = state_of(ctx)
    job = state.call(lambda api: api.job_rerun(job_id))
    if json_output:
        state.print_json(job)
    else:
        state.out.print(f"submitted job [bold]{job.get('id')}[/] (rerun of {job_id})")


@app.command("log")
def log_command(
    ctx: typer.Context,
    job_id: JobId,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Keep streaming until the job ends; then exit as `run --follow` does.",
        ),
    ] = False,
) -> None:
    """Print a job's log (stdout and stderr of its program, with timestamps)."""
    state = state_of(ctx)
    if not follow:
        data = state.call(lambda api: api.job_log(job_id))
        sys.stdout.write(data.decode("utf-8", errors="replace"))
        sys.stdout.flush()
        return
    raise typer.Exit(follow_and_report(state, job_id))


@app.command("outputs")
def outputs_command(
    ctx: typer.Context,
    job_id: JobId,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """List a job's output files (what its program left in LOCAL_JOB_OUT_DIR)."""
    state = state_of(ctx)
    items = state.call(lambda api: api.job_outputs(job_id))
    if json_output:
        state.print_json({"items": items})
    elif not items:
        state.err.print(f"job {job_id} has no output files")
    else:
        state.out.print(outputs_table(items))


async def download_output(
    api: ApiClient, job_id: int, name: str, dest: Path | None, *, force: bool = False
) -> int:
    """Save output ``name`` of the job to ``dest`` (stdout when ``None``); return its size.

    The file appears only once complete: bytes go to ``dest.part`` first. An existing
    ``dest`` is replaced only with ``force``; without it the complete file is linked
    into place, which fails if ``dest`` appeared meanwhile (nothing is overwritten).
    """
    if dest is None:
        out = sys.stdout.buffer

        def to_stdout(chunk: bytes) -> None:
            out.write(chunk)

        size = await api.job_output_download(job_id, name, to_stdout)
        out.flush()
        return size
    partial = dest.with_name(dest.name + ".part")
    try:
        with partial.open("wb") as sink:
            size = await api.job_output_download(job_id, name, sink.write)
        if force:
            os.replace(partial, dest)
        else:
            try:
                os.link(partial, dest)
            except FileExistsError:
                raise CliFailure(_exists_message(dest), EXIT_INPUT) from None
    finally:
        partial.unlink(missing_ok=True)
    return size


def _exists_message(dest: Path) -> str:
    return f"{dest} exists: pass --force to overwrite it, or -o to save elsewhere"


@app.command("download")
def download_command(
    ctx: typer.Context,
    job_id: JobId,
    name: Annotated[str, typer.Argument(help="Output file name.", show_default=False)],
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to save it (default: ./NAME; `-` for stdout).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite the local file if it exists.")
    ] = False,
) -> None:
    """Download one output file of a job (an existing local file is kept without --force)."""
    state = state_of(ctx)
    if output == "-":
        dest: Path | None = None
    elif output:
        dest = Path(output)
        if dest.is_dir():
            dest = dest / Path(name).name
    else:
        dest = Path(Path(name).name)
    if dest is not None and not force and (dest.exists() or dest.is_symlink()):
        state.fail(_exists_message(dest), EXIT_INPUT)
    size = state.call(lambda api: download_output(api, job_id, name, dest, force=force))
    if dest is not None:
        state.err.print(f"saved {escape(name)} ({size} bytes) to {escape(str(dest))}")
