"""What every command shares: settings, the API connection, consoles, errors and exit codes.

Commands stay thin: they parse options, make one call through :meth:`CliState.call`
(which enters async code with ``asyncio.run``) and render the answer. Everything
that can go wrong talking to the server ends here, printed the same way, with the
same exit code.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from jobyard.cli import credentials
from jobyard.cli.render import table_as_tsv
from jobyard.client import ApiClient, ApiError, ServerUnreachable
from jobyard.core.jobs import JobStatus
from jobyard.core.serverurl import read_server_url, server_url_path
from jobyard.settings import Settings

T = TypeVar("T")

# The exit codes of every command, one meaning each (docs/cli.md lists them).
EXIT_OK = 0
#: Reserved for a failure of the CLI itself (an uncaught exception prints a traceback).
EXIT_CLI_BUG = 1
#: Usage error: an unknown option, a missing or malformed argument (Typer/Click's code).
EXIT_USAGE = 2
#: The server answered with an error (refused the request: 4xx/5xx) or an answer the
#: CLI cannot use.
EXIT_API = 4
#: A local input is wrong (YAML file, path, a file that would be overwritten): nothing
#: was sent, or nothing was written.
EXIT_INPUT = 5
#: The server could not be reached (refused connection, timeout, DNS).
EXIT_UNREACHABLE = 6
#: ``run --follow``, ``jobs log -f``: the program ran and reported failure (ERROR).
EXIT_JOB_ERROR = 10
#: ``run --follow``: the platform could not carry the job to an end (FAILED: abort,
#: timeout, lost worker).
EXIT_JOB_FAILED = 11
#: ``run --follow``: the job was cancelled before it ran (CANCELLED).
EXIT_JOB_CANCELLED = 12
#: Interrupted by Ctrl-C (128 + SIGINT), the shell convention.
EXIT_INTERRUPTED = 130

_STATUS_EXIT: dict[JobStatus, int] = {
    JobStatus.FINISHED: EXIT_OK,
    JobStatus.ERROR: EXIT_JOB_ERROR,
    JobStatus.FAILED: EXIT_JOB_FAILED,
    JobStatus.CANCELLED: EXIT_JOB_CANCELLED,
}


def exit_code_for_status(status: str) -> int:
    """The exit code of a followed job: 0 only for FINISHED; 4 for a status that is not an end
    (the server answered something the CLI cannot use)."""
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


#: What ``--output`` accepts: Rich tables, tab-separated lines (``--plain``), or JSON.
OUTPUT_FORMATS = ("table", "plain", "json")
#: Width of a console that is not a terminal: rows are never cut or wrapped when piped.
PIPE_WIDTH = 100_000


class TableConsole(Console):
    """A console that prints Rich tables tab-separated when ``plain`` is set (``--plain``)."""

    plain: bool = False

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """Print as Rich does, except tables in plain mode (one TSV line per row)."""
        if self.plain and objects and all(isinstance(o, Table) for o in objects):
            for table in objects:
                for line in table_as_tsv(table):
                    self.file.write(line + "\n")
            self.file.flush()
            return
        super().print(*objects, **kwargs)


def make_console(*, stderr: bool = False) -> TableConsole:
    """A console for stdout or stderr: terminal width on a terminal, unbounded when piped."""
    stream = sys.stderr if stderr else sys.stdout
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = False
    return TableConsole(
        stderr=stderr, highlight=False, soft_wrap=True, width=None if terminal else PIPE_WIDTH
    )


def _output_option(ctx: typer.Context, param: Any, value: str | None) -> str | None:
    if value is not None:
        state_of(ctx).set_output(value)
    return value


def _plain_option(ctx: typer.Context, param: Any, value: bool) -> bool:
    if value:
        state_of(ctx).set_output("plain")
    return value


def _json_option(ctx: typer.Context, param: Any, value: bool) -> bool:
    # Given options are processed before absent ones, so a ``--output json`` given
    # anywhere on the line is known here even when ``--json`` itself is absent.
    if value:
        state_of(ctx).set_output("json")
    return bool(value) or state_of(ctx).output == "json"


#: ``--output table|plain|json`` of every list and show command.
OutputOpt = Annotated[
    Literal["table", "plain", "json"] | None,
    typer.Option(
        "--output",
        help="table (default), plain (tab-separated, no styles) or json.",
        callback=_output_option,
        show_default=False,
    ),
]
#: ``--plain``: the same as ``--output plain``.
PlainFlag = Annotated[
    bool,
    typer.Option("--plain", help="Same as --output plain (tab-separated).", callback=_plain_option),
]
#: ``--json``: the same as ``--output json``.
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Same as --output json.", callback=_json_option)
]


@dataclass
class CliState:
    """Global options and lazily built settings, shared by every command through ``ctx.obj``."""

    server_option: str | None = None
    token_option: str | None = None
    out: TableConsole = field(default_factory=make_console)
    err: TableConsole = field(default_factory=lambda: make_console(stderr=True))
    output: str = "table"
    #: The running command (``jobyard policies list``), for messages.
    command_path: str = "jobyard"
    _settings: Settings | None = None

    def set_output(self, value: str) -> None:
        """Choose the output format (table, plain or json) of this invocation."""
        self.output = value
        self.out.plain = value == "plain"

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
        """The API URL: ``--server``, else ``JOBYARD_SERVER``, else the URL a local
        ``jobyard up`` wrote to ``$JOBYARD_HOME/server.url``, else the default."""
        return self.server_and_source[0]

    @property
    def server_and_source(self) -> tuple[str, str]:
        """The API URL and where it came from (said when the server cannot be reached)."""
        if self.server_option:
            return self.server_option.rstrip("/"), "--server"
        settings = self.settings()
        if "server" in settings.model_fields_set:
            return settings.server.rstrip("/"), "JOBYARD_SERVER"
        written = read_server_url(settings.home)
        if written:
            return written, str(server_url_path(settings.home))
        return settings.server.rstrip("/"), "the default"

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
        if exc.status == 403 and exc.details.get("required_role") == "admin":
            command = self.command_path
            self.err.print(
                f"  [dim]hint: `{escape(command)}` needs an admin: use an admin's token "
                "(--token or JOBYARD_TOKEN, or `jobyard login` as an admin)[/]"
            )
        if exc.status == 401:
            self.err.print(
                "  [dim]hint: pass --token or set JOBYARD_TOKEN "
                "(a local `jobyard up` writes its admin token to $JOBYARD_HOME/admin.token)[/]"
            )
        raise typer.Exit(EXIT_API)

    def unreachable(self, exc: ServerUnreachable) -> NoReturn:
        """Print why the server could not be reached, and whence its URL, and exit 6."""
        if exc.refused:
            message = f"cannot reach jobyard at {exc.url}: is `jobyard up` running?"
        else:
            reason = str(exc.cause) or type(exc.cause).__name__
            message = f"cannot reach jobyard at {exc.url}: {reason}"
        self.err.print(f"[bold red]error:[/] [red]{escape(message)}[/]")
        source = self.server_and_source[1]
        self.err.print(
            f"  [dim]the URL came from {escape(source)}; set JOBYARD_SERVER (or --server) "
            "to the URL `jobyard up` printed, or JOBYARD_HOME to its data folder[/]"
        )
        raise typer.Exit(EXIT_UNREACHABLE)

    def fail(self, message: str, exit_code: int = EXIT_INPUT) -> NoReturn:
        """Print a local error and exit with ``exit_code``."""
        self.err.print(f"[bold red]error:[/] {escape(message)}")
        raise typer.Exit(exit_code)

    def print_json(self, data: Any) -> None:
        """Raw JSON on stdout, for scripts (no colours, no wrapping)."""
        typer.echo(json.dumps(data, indent=2, sort_keys=False, default=str))

    def print_warnings(self, answer: Any) -> None:
        """The ``warnings`` of a successful answer (a pool nobody serves...), in yellow on
        stderr: the write was done, but the caller should know. Stdout keeps the data, so
        ``--json`` output stays machine-readable."""
        if not isinstance(answer, Mapping):
            return
        for warning in answer.get("warnings") or []:
            if isinstance(warning, Mapping):
                message = escape(str(warning.get("message") or warning.get("code") or ""))
                self.err.print(f"[bold yellow]warning:[/] [yellow]{message}[/]")


def state_of(ctx: typer.Context) -> CliState:
    """The :class:`CliState` of this invocation (created by the root callback)."""
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):
        obj = CliState()
        ctx.find_root().obj = obj
    if ctx.parent is not None:  # a command, not the root: remembered for messages
        obj.command_path = ctx.command_path
    return obj


def home_token_path(home: Path) -> Path:
    """Where ``jobyard up`` writes the admin token, and where the CLI looks for it."""
    return home / "admin.token"
