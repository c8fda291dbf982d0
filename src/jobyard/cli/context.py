"""What every command shares: settings, the API connection, consoles, errors and exit codes.

Commands stay thin: they parse options, make one call through :meth:`CliState.call`
(which enters async code with ``asyncio.run``) and render the answer. Everything
that can go wrong talking to the server ends here, printed the same way, with the
same exit code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from jobyard.cli import credentials
from jobyard.client import ApiClient, ApiError, ServerUnreachable
from jobyard.core.jobs import JobStatus
from jobyard.settings import Settings

T = TypeVar("T")

EXIT_OK = 0
#: ``run --follow``: the program ran and reported failure.
EXIT_JOB_ERROR = 1
#: ``run --follow``: the platform could not carry the job to an end (abort, timeout, lost worker).
#: Usage errors (bad options) also exit 2, as in every Click/Typer program.
EXIT_JOB_FAILED = 2
#: ``run --follow``: the job was cancelled before it ran.
EXIT_JOB_CANCELLED = 3
#: The server refused a request or could not be reached.
EXIT_API = 4
#: A local input is wrong (YAML file, path): nothing was sent.
EXIT_INPUT = 5
#: Interrupted by Ctrl-C (128 + SIGINT), the shell convention.
EXIT_INTERRUPTED = 130

_STATUS_EXIT: dict[JobStatus, int] = {
    JobStatus.FINISHED: EXIT_OK,
    JobStatus.ERROR: EXIT_JOB_ERROR,
    JobStatus.FAILED: EXIT_JOB_FAILED,
    JobStatus.CANCELLED: EXIT_JOB_CANCELLED,
}


def exit_code_for_status(status: str) -> int:
    """The exit code of a followed job: 0 only for FINISHED; 4 for a status that is not an end."""
    try:
        return _STATUS_EXIT.get(JobStatus(status), EXIT_API)
    except ValueError:
        return EXIT_API


class CliFailure(Exception):
    """A problem found on this side (bad input file, missing path): message plus exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_INPUT) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass
class CliState:
    """Global options and lazily built settings, shared by every command through ``ctx.obj``."""

    server_option: str | None = None
    token_option: str | None = None
    out: Console = field(default_factory=lambda: Console(highlight=False, soft_wrap=True))
    err: Console = field(
        default_factory=lambda: Console(stderr=True, highlight=False, soft_wrap=True)
    )
    _settings: Settings | None = None

    def settings(self, **overrides: Any) -> Settings:
        """The settings from ``JOBYARD_*`` (and the TOML file), with ``overrides`` winning."""
        if overrides:
            return self._build_settings(overrides)
        if self._settings is None:
            self._settings = self._build_settings({})
        return self._settings

    def _build_settings(self, overrides: Mapping[str, Any]) -> Settings:
        try:
            return Settings(**overrides)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            self.fail(f"invalid settings: {problems}", EXIT_INPUT)

    @property
    def server(self) -> str:
        """The API URL: ``--server``, else ``JOBYARD_SERVER``, else the local default."""
        return (self.server_option or self.settings().server).rstrip("/")

    @property
    def token(self) -> str:
        """``--token``, else ``JOBYARD_TOKEN``, else the token of ``jobyard login`` for this
        server (refreshed when expired), else the admin token ``jobyard up`` wrote."""
        if self.token_option:
            return self.token_option
        settings = self.settings()
        if settings.token:
            return settings.token
        saved = credentials.access_token(self.server)
        if saved:
            return saved
        token_file = home_token_path(settings.home)
        try:
            return token_file.read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def client(self) -> ApiClient:
        """A new API client for this invocation's server and token."""
        return ApiClient(self.server, self.token)

    def call(self, work: Callable[[ApiClient], Awaitable[T]]) -> T:
        """Run ``work`` with a connected client inside ``asyncio.run``; report failures and exit."""

        async def session() -> T:
            async with self.client() as api:
                return await work(api)

        try:
            return asyncio.run(session())
        except ApiError as exc:
            self.api_error(exc)
        except ServerUnreachable as exc:
            self.unreachable(exc)
        except CliFailure as exc:
            self.fail(exc.message, exc.exit_code)

    # -- reporting --------------------------------------------------------------------

    def api_error(self, exc: ApiError) -> NoReturn:
        """Print an API error (message, HTTP status, code, details) and exit 4."""
        self.err.print(
            f"[bold red]error:[/] [red]{escape(exc.message)}[/] "
            f"[dim](HTTP {exc.status}, {escape(exc.code)})[/]"
        )
        for key, value in exc.details.items():
            shown = value if isinstance(value, str) else json.dumps(value, default=str)
            self.err.print(f"  [dim]{escape(str(key))}:[/] {escape(shown)}")
        if exc.status == 401:
            self.err.print(
                "  [dim]hint: pass --token or set JOBYARD_TOKEN "
                "(a local `jobyard up` writes its admin token to $JOBYARD_HOME/admin.token)[/]"
            )
        raise typer.Exit(EXIT_API)

    def unreachable(self, exc: ServerUnreachable) -> NoReturn:
        """Print why the server could not be reached and exit 4."""
        if exc.refused:
            message = f"cannot reach jobyard at {exc.url}: is `jobyard up` running?"
        else:
            reason = str(exc.cause) or type(exc.cause).__name__
            message = f"cannot reach jobyard at {exc.url}: {reason}"
        self.err.print(f"[bold red]error:[/] [red]{escape(message)}[/]")
        raise typer.Exit(EXIT_API)

    def fail(self, message: str, exit_code: int = EXIT_INPUT) -> NoReturn:
        """Print a local error and exit with ``exit_code``."""
        self.err.print(f"[bold red]error:[/] {escape(message)}")
        raise typer.Exit(exit_code)

    def print_json(self, data: Any) -> None:
        """Raw JSON on stdout, for scripts (no colours, no wrapping)."""
        typer.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def state_of(ctx: typer.Context) -> CliState:
    """The :class:`CliState` of this invocation (created by the root callback)."""
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):
        obj = CliState()
        ctx.find_root().obj = obj
    return obj


def home_token_path(home: Path) -> Path:
    """Where ``jobyard up`` writes the admin token, and where the CLI looks for it."""
    return home / "admin.token"
