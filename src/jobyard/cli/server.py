"""``jobyard up`` (API, maintenance and local workers), ``jobyard server`` (the same without
local slots), ``jobyard db`` and ``jobyard keys``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from jobyard.cli.context import EXIT_API, EXIT_INPUT, state_of

db_app = typer.Typer(name="db", help="Manage the database schema.", no_args_is_help=True)
keys_app = typer.Typer(
    name="keys", help="Manage the key that encrypts secure macros.", no_args_is_help=True
)


_PortOption = Annotated[
    int | None,
    typer.Option("--port", "-p", help="Port to listen on (env JOBYARD_PORT).", min=0, max=65535),
]
_HostOption = Annotated[
    str | None, typer.Option("--host", help="Address to listen on (env JOBYARD_HOST).")
]
_HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Data folder: database, packages, logs (env JOBYARD_HOME)."),
]


def up_command(
    ctx: typer.Context,
    example: Annotated[
        bool, typer.Option("--example", help="Load the example package and jobconfigs.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", help="Local worker slots (env JOBYARD_WORKERS).", min=0),
    ] = None,
    port: _PortOption = None,
    host: _HostOption = None,
    home: _HomeOption = None,
) -> None:
    """Run the API, maintenance and local worker slots (SQLite under home by default).

    For one machine, or a server that also runs jobs itself.
    `jobyard server` is the same without local slots.
    """
    _serve(ctx, example=example, workers=workers, port=port, host=host, home=home)


def server_command(
    ctx: typer.Context,
    port: _PortOption = None,
    host: _HostOption = None,
    home: _HomeOption = None,
) -> None:
    """Run the API, the scheduler and maintenance, with no local worker slots.

    Use it for several servers on one PostgreSQL (JOBYARD_DATABASE_URL)
    behind a load balancer: jobs run on worker hosts or on the slots of
    `jobyard up` servers, never here. The servers wake each other's workers
    through PostgreSQL, elect one of them to run maintenance, and share the
    firing of schedules. Same as `jobyard up --workers 0`.

    On one machine, use `jobyard up` (API and workers in one command).
    """
    _serve(ctx, example=False, workers=0, port=port, host=host, home=home)


def _serve(
    ctx: typer.Context,
    *,
    example: bool,
    workers: int | None,
    port: int | None,
    host: str | None,
    home: Path | None,
) -> None:
    """What `up` and `server` share: settings from options and environment, then serve."""
    state = state_of(ctx)
    overrides: dict[str, Any] = {
        key: value
        for key, value in {"workers": workers, "port": port, "host": host, "home": home}.items()
        if value is not None
    }
    settings = state.settings(**overrides)
    from jobyard.server import run_server  # lazily: client commands need no server code

    try:
        run_server(settings, example=example)  # asyncio.run(serve(...))
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


@keys_app.command("rotate")
def rotate_command(ctx: typer.Context) -> None:
    """Make a new current key and re-encrypt every secure macro with it (server side).

    The old key stays as $JOBYARD_HOME/secret.key.<id> (it still decrypts); restart
    the servers and workers afterwards so they encrypt with the new key.
    """
    state = state_of(ctx)
    settings = state.settings()
    if settings.secret_key:
        state.fail(
            "the current key comes from JOBYARD_SECRET_KEY, which this command cannot change: "
            "save the old key in $JOBYARD_HOME/secret.key.old, set JOBYARD_SECRET_KEY to the "
            "new key, then run `jobyard keys reencrypt` (docs/security.md)",
            EXIT_INPUT,
        )
    import asyncio

    from jobyard.core.crypto import SecretError, commit_new_key, stage_new_key
    from jobyard.service.macros import reencrypt_all
    from jobyard.store.factory import open_store

    async def rotate() -> tuple[str, str, int]:
        staged, rotation = stage_new_key(settings.home)
        store = await open_store(settings.effective_database_url, migrate=False)
        try:
            count = await reencrypt_all(store, staged)
        finally:
            await store.close()
        commit_new_key(settings.home, rotation)
        return rotation.old_id, rotation.new_id, count

    try:
        old_id, new_id, count = asyncio.run(rotate())
    except (SecretError, OSError) as exc:
        state.fail(f"cannot rotate the key: {getattr(exc, 'message', None) or exc}", EXIT_API)
    state.out.print(
        f"new key {new_id} is current; {count} secure value(s) re-encrypted; old key kept as "
        f"{settings.home / f'secret.key.{old_id}'}",
        markup=False,
    )


@keys_app.command("reencrypt")
def reencrypt_command(ctx: typer.Context) -> None:
    """Re-encrypt every secure macro with the current key (after changing JOBYARD_SECRET_KEY)."""
    state = state_of(ctx)
    settings = state.settings()
    import asyncio

    from jobyard.core.crypto import Keyring, SecretError
    from jobyard.service.macros import reencrypt_all
    from jobyard.store.factory import open_store

    async def reencrypt() -> tuple[str, int]:
        ring = Keyring.load(settings.home, settings.secret_key)
        store = await open_store(settings.effective_database_url, migrate=False)
        try:
            return ring.current_id, await reencrypt_all(store, ring)
        finally:
            await store.close()

    try:
        current, count = asyncio.run(reencrypt())
    except (SecretError, OSError) as exc:
        state.fail(f"cannot re-encrypt: {getattr(exc, 'message', None) or exc}", EXIT_API)
    state.out.print(f"{count} secure value(s) re-encrypted with key {current}", markup=False)


def _masked(url: str) -> str:
    """The URL without its password, fit to print."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]
