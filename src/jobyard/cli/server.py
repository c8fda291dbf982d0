"""``jobyard up`` (API, maintenance and local workers) and ``jobyard db``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from jobyard.cli.context import EXIT_API, state_of

db_app = typer.Typer(name="db", help="Manage the database schema.", no_args_is_help=True)


def up_command(
    ctx: typer.Context,
    example: Annotated[
        bool, typer.Option("--example", help="Load the example package and jobconfigs.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", help="Local worker slots (env JOBYARD_WORKERS).", min=0),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", "-p", help="Port to listen on (env JOBYARD_PORT).", min=0, max=65535
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on (env JOBYARD_HOST).")
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Data folder: database, packages, logs (env JOBYARD_HOME)."),
    ] = None,
) -> None:
    """Run the API, maintenance and local worker slots (SQLite under home by default)."""
    state = state_of(ctx)
    overrides: dict[str, Any] = {
        key: value
        for key, value in {"workers": workers, "port": port, "host": host, "home": home}.items()
        if value is not None
    }
    settings = state.settings(**overrides)
    from jobyard.server import run_server  # lazily: client commands need no server code

    try:
        run_server(settings, example=example)  # asyncio.run(serve(...)), uvloop when present
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@db_app.command("upgrade")
def upgrade_command(ctx: typer.Context) -> None:
    """Apply pending schema migrations to the database of JOBYARD_DATABASE_URL (or home)."""
    state = state_of(ctx)
    url = state.settings().effective_database_url
    from sqlalchemy.exc import SQLAlchemyError

    from jobyard.store.factory import upgrade_database  # lazily, as above

    try:
        upgrade_database(url)
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        state.fail(f"cannot upgrade the database {_masked(url)}: {reason}", EXIT_API)
    state.out.print(f"database upgraded: {_masked(url)}", markup=False)


def _masked(url: str) -> str:
    """The URL without its password, fit to print."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]
