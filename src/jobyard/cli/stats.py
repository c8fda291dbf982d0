"""``jobyard stats [CONFIG]``: job statistics as a table, then a sparkline.

One row per jobconfig (or the one named), then the total: counts by end status,
duration p50/p95/p99/max and queue wait p50/p95; under it a sparkline of the jobs that
ended per bucket of the range. ``--output json`` prints the server's answer as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from jobyard.cli.context import JsonFlag, OutputOpt, PlainFlag, state_of
from jobyard.cli.lookup import resolve_jobconfig
from jobyard.cli.render import format_seconds, new_table
from jobyard.client import ApiClient
from jobyard.client_types import JsonObject

#: Eight levels of a sparkline, lowest first.
BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int]) -> str:
    """One character per value, scaled to the largest (a blank for zero)."""
    top = max(values, default=0)
    if top <= 0:
        return " " * len(values)
    out = []
    for value in values:
        if value <= 0:
            out.append(" ")
        else:
            out.append(BARS[min(len(BARS) - 1, (value * len(BARS) - 1) // top)])
    return "".join(out)


def _seconds(value: Any) -> str:
    if value is None:
        return "-"
    seconds = float(value)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms" if seconds >= 0.01 else f"{seconds * 1000:.1f}ms"
    return format_seconds(seconds)


def _row(name: str, summary: JsonObject) -> list[str]:
    counts = summary.get("counts", {})
    d = summary.get("duration_seconds", {})
    w = summary.get("queue_wait_seconds", {})
    return [
        name,
        str(summary.get("total", 0)),
        str(counts.get("FINISHED", 0)),
        str(counts.get("ERROR", 0)),
        str(counts.get("FAILED", 0)),
        str(counts.get("CANCELLED", 0)),
        _seconds(d.get("p50")),
        _seconds(d.get("p95")),
        _seconds(d.get("p99")),
        _seconds(d.get("max")),
        _seconds(w.get("p50")),
        _seconds(w.get("p95")),
    ]


def stats_table(answer: JsonObject) -> Table:
    """The answer of ``GET /jobstats`` as a table (one row per jobconfig, then the total)."""
    table = new_table(title="ended jobs")
    for header in ("jobconfig", "ended", "FINISHED", "ERROR", "FAILED", "CANCELLED"):
        table.add_column(header, justify="left" if header == "jobconfig" else "right")
    for header in ("run p50", "p95", "p99", "max", "wait p50", "p95"):
        table.add_column(header, justify="right")
    for item in answer.get("jobconfigs", []):
        name = item.get("name") or (
            "(ad-hoc)" if item.get("jobconfig_id") is None else f"#{item['jobconfig_id']}"
        )
        table.add_row(*_row(str(name), item))
    table.add_row(*_row("total", answer.get("overall", {})), style="bold")
    return table


def sparkline_line(answer: JsonObject) -> str:
    """``ended per hour, <since> to <until> (UTC): <sparkline> (max N)``."""
    totals = [int(b.get("total", 0)) for b in answer.get("buckets", [])]
    return (
        f"ended per {answer.get('bucket', 'hour')}, {answer.get('since', '?')} to "
        f"{answer.get('until', '?')}: {sparkline(totals)} (max {max(totals, default=0)})"
    )


def stats_command(
    ctx: typer.Context,
    config: Annotated[
        str | None,
        typer.Argument(help="A jobconfig (name or id); default: every one you may view."),
    ] = None,
    bucket: Annotated[
        Literal["hour", "day"], typer.Option("--bucket", help="Bucket of the sparkline (UTC).")
    ] = "hour",
    since: Annotated[
        str | None,
        typer.Option("--since", help="ISO 8601 with a zone; default 24 h / 30 days ago."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="ISO 8601 with a zone; default now.")
    ] = None,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Statistics of ended jobs: counts by end status, run times, queue waits, a sparkline."""
    state = state_of(ctx)

    async def work(api: ApiClient) -> JsonObject:
        jobconfig_id = None
        if config is not None:
            jobconfig_id = int((await resolve_jobconfig(api, config))["id"])
        return await api.jobstats(
            jobconfig_id=jobconfig_id, since=since, until=until, bucket=bucket
        )

    answer = state.call(work)
    if json_output:
        state.print_json(answer)
    else:
        state.out.print(stats_table(answer))
        state.out.print(sparkline_line(answer), soft_wrap=True)
