"""``jobyard login`` and ``jobyard logout``: password login, tokens kept per server."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from jobyard.cli import credentials
from jobyard.cli.context import EXIT_INPUT, CliState, state_of
from jobyard.client import ApiClient, ApiError, JsonObject


def read_password(state: CliState, from_stdin: bool, prompt: str = "Password") -> str:
    """The password from standard input (first line) or a hidden prompt."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt(prompt, hide_input=True)
    if not password:
        state.fail("empty password", EXIT_INPUT)
    return password


def login_command(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", "-n", help="User name (prompted for when missing).", show_default=False
        ),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Log in with a name and password; the tokens are kept for this server.

    They go to ~/.config/jobyard/credentials.json (mode 0600) and are used by every
    command given no --token or JOBYARD_TOKEN; an expired access token is refreshed.
    """
    state = state_of(ctx)
    if name is None:
        name = typer.prompt("User name")
    password = read_password(state, password_stdin)
    server = state.server

    async def work(_: ApiClient) -> JsonObject:
        async with ApiClient(server, "") as anonymous:
            return await anonymous.login(name, password)

    answer = state.call(work)
    path = credentials.save(server, credentials.entry_of(server, name, answer))
    minutes = int(answer.get("expires_in", 0)) // 60
    state.out.print(
        f"logged in to {escape(server)} as [bold]{escape(name)}[/] "
        f"(access token valid {minutes} min, refreshed automatically; saved in {escape(str(path))})"
    )


def logout_command(ctx: typer.Context) -> None:
    """Revoke this server's saved login tokens and forget them."""
    state = state_of(ctx)
    server = state.server
    entry = credentials.stored(server)
    if entry is None:
        state.err.print(f"not logged in to {escape(server)}")
        return
    access = credentials.access_token(server)
    entry = credentials.stored(server) or entry

    async def work(_: ApiClient) -> None:
        async with ApiClient(server, access) as api:
            try:
                await api.logout(str(entry.get("refresh_token") or "") or None)
            except ApiError as exc:
                if exc.status != 401:  # already expired or revoked: nothing left to revoke
                    raise

    state.call(work)
    credentials.forget(server)
    state.out.print(f"logged out of {escape(server)}")
