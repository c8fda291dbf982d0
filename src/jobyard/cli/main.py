"""The ``jobyard`` command: global options, and one sub-application per command group."""

from __future__ import annotations

from typing import Annotated

import typer

from jobyard import __version__
from jobyard.cli import access as access_cli
from jobyard.cli import cron, jobconfigs, jobs, macros, packages, schedules
from jobyard.cli import templates as templates_cli
from jobyard.cli import users as users_cli
from jobyard.cli import workers as workers_cli
from jobyard.cli.apply import apply_command, export_command
from jobyard.cli.context import CliState
from jobyard.cli.login import login_command, logout_command
from jobyard.cli.purge import purge_command
from jobyard.cli.run import run_command
from jobyard.cli.server import db_app, keys_app, server_command, up_command
from jobyard.cli.stats import stats_command
from jobyard.cli.worker import worker_command

app = typer.Typer(
    name="jobyard",
    help="jobyard: a self-hosted job execution manager.\n\n"
    "Quick start: `jobyard up --example` in one terminal, then `jobyard jobs list`.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"jobyard {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="API URL (env JOBYARD_SERVER; default http://127.0.0.1:8080).",
            show_default=False,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="API token (env JOBYARD_TOKEN; default: $JOBYARD_HOME/admin.token if present).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Global options, shared by every command."""
    ctx.obj = CliState(server_option=server, token_option=token)


app.command("up")(up_command)
app.command("server")(server_command)
app.add_typer(db_app)
app.add_typer(keys_app)
app.add_typer(packages.app)
app.command("apply")(apply_command)
app.command("export")(export_command)
app.command("run")(run_command)
app.add_typer(jobs.app)
app.add_typer(jobconfigs.app)
app.add_typer(schedules.app)
app.add_typer(cron.app)
app.command("login")(login_command)
app.command("logout")(logout_command)
app.add_typer(users_cli.app)
app.add_typer(users_cli.tokens_app)
app.add_typer(templates_cli.app)
app.add_typer(macros.app)
app.add_typer(access_cli.app)
app.command("audit")(access_cli.audit_command)
app.command("purge")(purge_command)
app.command("stats")(stats_command)
app.add_typer(workers_cli.app)
app.command("worker")(worker_command)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="jobyard")
