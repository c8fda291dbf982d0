"""``jobyard run``: submit a job of a jobconfig, and optionally follow it to its end.

With ``--follow`` the exit code tells how the job ended: 0 FINISHED, 10 ERROR,
11 FAILED, 12 CANCELLED (4 when the server refused, 6 when it could not be reached;
docs/cli.md has the whole table), so a shell script or a CI step can run a job and act
on its outcome.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from jobyard.cli.context import state_of
from jobyard.cli.follow import follow_and_report
from jobyard.cli.lookup import resolve_jobconfig
from jobyard.client import ApiClient, ClientError, JsonObject, UploadFile


def parse_macros(values: Sequence[str]) -> dict[str, str]:
    """``["K=V", ...]`` → ``{"K": "V"}``; the value may contain ``=``, the name may not be empty."""
    macros: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--macro")
        macros[name.strip()] = value
    return macros


async def submit_job(
    api: ApiClient,
    config: str,
    *,
    macros: dict[str, str],
    hold: bool,
    payloads: Sequence[Path] = (),
) -> JsonObject:
    """Submit a job of ``config`` (name or id); attach payload files before it is released.

    With payload files the job is created on hold, given its files, then released (unless
    ``hold`` asks to keep it waiting); if a file cannot be attached the job is cancelled.
    """
    jobconfig = await resolve_jobconfig(api, config)
    job = await api.jobconfig_run(int(jobconfig["id"]), macros=macros, hold=hold or bool(payloads))
    if not payloads:
        return job
    job_id = int(job["id"])
    try:
        for path in payloads:
            await api.job_payload_upload(job_id, UploadFile(path.name, path))
    except ClientError:
        with contextlib.suppress(ClientError):
            await api.job_cancel(job_id)
        raise
    return job if hold else await api.job_release(job_id)


def run_command(
    ctx: typer.Context,
    config: Annotated[str, typer.Argument(help="Jobconfig name or id.", show_default=False)],
    macro: Annotated[
        list[str] | None,
        typer.Option(
            "--macro",
            "-m",
            help="A job-level macro NAME=VALUE (repeatable); overrides the jobconfig's.",
            show_default=False,
        ),
    ] = None,
    payload: Annotated[
        list[Path] | None,
        typer.Option(
            "--payload",
            "-p",
            help="A file to hand the job as payload (repeatable).",
            exists=True,
            dir_okay=False,
            readable=True,
            show_default=False,
        ),
    ] = None,
    hold: Annotated[
        bool,
        typer.Option(
            "--hold", help="Create the job WAITING; it runs after `jobyard jobs release`."
        ),
    ] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Stream the log and wait for the end; exit 0 FINISHED, 10 ERROR, 11 FAILED, "
            "12 CANCELLED (see docs/cli.md).",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the job id.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the job as JSON.")] = False,
) -> None:
    """Submit a job of a jobconfig and print its id; with --follow, watch it to its end."""
    state = state_of(ctx)
    if json_output and follow:
        raise typer.BadParameter("--json and --follow do not mix (the log goes to stdout)")
    macros = parse_macros(macro or [])
    job = state.call(
        lambda api: submit_job(api, config, macros=macros, hold=hold, payloads=payload or [])
    )
    job_id = int(job["id"])
    if json_output:
        state.print_json(job)
    elif quiet:
        typer.echo(job_id)
    else:
        target = state.err if follow else state.out
        target.print(
            f"submitted job [bold]{job_id}[/] of {escape(config)} "
            f"([{'grey62' if hold else 'blue'}]{escape(str(job.get('status')))}[/])"
        )
    if hold:
        state.err.print(
            f"[dim]job {job_id} is on hold; run it with: jobyard jobs release {job_id}[/]"
        )
    if not follow:
        return
    raise typer.Exit(follow_and_report(state, job_id))
