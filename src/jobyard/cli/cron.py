"""``jobyard cron next``: preview the fire times of Quartz cron expressions, locally.

No server is involved: the expression is evaluated by the same code the scheduler uses.
With ``--batch`` the command is a filter from JSON lines to JSON lines, one answer per
input line, flushed as it goes (so it also works as a co-process).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Annotated, Any, NoReturn

import typer
from rich.markup import escape

from jobyard.cli.context import EXIT_USAGE, state_of
from jobyard.core.cron.preview import DEFAULT_COUNT, DEFAULT_TZ, MAX_COUNT, iso, preview
from jobyard.core.errors import InvalidInput

#: Bad input (expression, zone, after, count, arguments): the usual usage-error code.

BATCH_KEYS = ("expr", "after", "tz", "count")

app = typer.Typer(
    name="cron",
    help="Preview Quartz cron expressions: their next fire times, computed locally.",
    no_args_is_help=True,
)


@dataclass(frozen=True)
class Defaults:
    """What a batch line that omits ``after``, ``tz`` or ``count`` gets."""

    after: str | None = None
    tz: str = DEFAULT_TZ
    count: int = DEFAULT_COUNT


@app.command("next")
def next_command(
    ctx: typer.Context,
    expr: Annotated[
        str | None,
        typer.Argument(
            help="Quartz cron expression, quoted: seconds minutes hours day-of-month month "
            "day-of-week \\[year], e.g. '0 0 12 ? * MON-FRI'. Not with --batch.",
            metavar="EXPR",
            show_default=False,
        ),
    ] = None,
    after: Annotated[
        str | None,
        typer.Option(
            "--after",
            help="Fire times strictly after this ISO 8601 date-time, e.g. 2026-03-29T01:30:00 "
            "(wall time in --tz), 2026-03-29T01:30:00+01:00 or 2026-03-29T00:30:00Z. "
            "Default: now.",
            show_default=False,
        ),
    ] = None,
    count: Annotated[
        int,
        typer.Option("--count", "-n", help=f"How many fire times to print (1-{MAX_COUNT})."),
    ] = DEFAULT_COUNT,
    tz: Annotated[
        str,
        typer.Option(
            "--tz",
            help="IANA time zone the expression runs in and the times are printed in, "
            "e.g. Europe/Berlin.",
        ),
    ] = DEFAULT_TZ,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch",
            help='Read JSON lines {"expr": ..., "after": ..., "tz": ..., "count": ...} from '
            'stdin (all but expr optional) and write one JSON line per input line: {"next": '
            '\\[times]} or {"error": "message"}. --after, --tz and --count set the defaults.',
        ),
    ] = False,
) -> None:
    """Print the next fire times of EXPR, one per line, in ISO 8601 with their offset."""
    state = state_of(ctx)

    def fail(message: str) -> NoReturn:
        state.err.print(f"[bold red]error:[/] [red]{escape(message)}[/]")
        raise typer.Exit(EXIT_USAGE)

    if batch:
        if expr is not None:
            fail("give either EXPR or --batch (expressions then come from stdin), not both")
        stdin = getattr(sys.stdin, "buffer", sys.stdin)  # bytes: bad UTF-8 is one bad line
        run_batch(stdin, sys.stdout, Defaults(after=after, tz=tz, count=count))
        return
    if expr is None:
        fail("missing EXPR, e.g. jobyard cron next '0 0 12 * * ?' (or --batch to read stdin)")
    try:
        times = preview(expr, after=after, tz=tz, count=count)
    except InvalidInput as exc:
        fail(exc.message)
    for line in iso(times):
        typer.echo(line)
    if not times:
        state.err.print("[dim]no fire time: the expression does not fire after that instant[/]")
    elif len(times) < count:
        state.err.print(f"[dim]only {len(times)}: the expression fires no more after that[/]")


def run_batch(stdin: IO[bytes] | IO[str], stdout: IO[str], defaults: Defaults) -> None:
    """Answer every non-blank line of ``stdin`` with exactly one JSON line on ``stdout``."""
    try:
        while raw := stdin.readline():
            if raw.strip():
                stdout.write(answer_line(raw, defaults) + "\n")
                stdout.flush()
    except BrokenPipeError:  # the reader went away (e.g. `| head`): nothing left to do
        _silence_stdout()


def answer_line(raw: bytes | str, defaults: Defaults = Defaults()) -> str:
    """One JSON answer for one JSON request line; never raises."""
    try:
        return json.dumps({"next": iso(preview(**_request(raw, defaults)))})
    except InvalidInput as exc:
        return json.dumps({"error": exc.message})
    except Exception as exc:  # never crash, never skip a line
        return json.dumps({"error": f"unexpected error: {type(exc).__name__}: {exc}"})


def _request(raw: bytes | str, defaults: Defaults) -> dict[str, Any]:
    """The keyword arguments of :func:`preview` from one line, or :class:`InvalidInput`."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"line is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise InvalidInput(
            'each line must be a JSON object such as {"expr": "0 0 12 * * ?", "tz": "UTC"}'
        )
    unknown = sorted(str(k) for k in data if k not in BATCH_KEYS)
    if unknown:
        raise InvalidInput(
            f"unknown key(s) {', '.join(map(repr, unknown))}: the keys are " + ", ".join(BATCH_KEYS)
        )
    expr = data.get("expr")
    if not isinstance(expr, str):
        raise InvalidInput("expr: required, a string such as '0 0 12 * * ?'")
    after = data.get("after")
    if after is None:
        after = defaults.after
    elif not isinstance(after, str):
        raise InvalidInput("after: must be an ISO 8601 date-time string (or null for now)")
    tz = data.get("tz")
    if tz is None:
        tz = defaults.tz
    elif not isinstance(tz, str):
        raise InvalidInput("tz: must be a string naming an IANA time zone, e.g. 'Europe/Berlin'")
    count = data.get("count")
    if count is None:
        count = defaults.count
    elif isinstance(count, bool) or not isinstance(count, int):
        raise InvalidInput(f"count: must be an integer from 1 to {MAX_COUNT}")
    return {"expr": expr, "after": after, "tz": tz, "count": count}


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the exit flush does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
