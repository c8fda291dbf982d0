"""How API objects look on a terminal: status colours, times, durations, sizes, tables."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from jobyard.client import JsonObject

STATUS_STYLES: dict[str, str] = {
    "WAITING": "grey62",
    "SEQUENCED": "blue",
    "QUEUED": "cyan",
    "INITIALIZING": "yellow",
    "RUNNING": "bold yellow",
    "FINISHED": "bold green",
    "ERROR": "bold red",
    "FAILED": "bold magenta",
    "CANCELLED": "grey50",
}


def status_text(status: str | None) -> Text:
    """A job status, coloured the same way everywhere."""
    value = status or "?"
    return Text(value, style=STATUS_STYLES.get(value, ""))


def parse_time(value: Any) -> datetime | None:
    """An API timestamp (ISO 8601, UTC) as an aware datetime, or ``None``."""
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: Any) -> str:
    """An API timestamp in the local time zone, to the second; empty when missing."""
    parsed = parse_time(value)
    if parsed is None:
        return ""
    return parsed.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_seconds(seconds: float) -> str:
    """``0.4s``, ``12s``, ``3m05s``, ``2h03m``."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def job_duration(job: Mapping[str, Any], now: datetime | None = None) -> float | None:
    """Seconds the job ran (started → ended, or → ``now``); ``None`` if it has not started."""
    started = parse_time(job.get("started_at")) or parse_time(job.get("acquired_at"))
    if started is None:
        return None
    ended = parse_time(job.get("ended_at")) or now
    if ended is None:
        return None
    return (ended - started).total_seconds()


def format_size(size: Any) -> str:
    """A byte count for people: ``512 B``, ``1.5 KiB``, ``3.0 MiB``."""
    if not isinstance(size, int | float):
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover - the loop always returns


def format_value(value: Any) -> str:
    """A field value in a table cell: lists and mappings compact, ``None`` as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value) if value else "[]"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items()) if value else "{}"
    return str(value)


def timeout_text(job: Mapping[str, Any]) -> str:
    """The timeout a job runs under and where it comes from, e.g. ``1 min (entry point
    'main' of the package manifest)``; the job's own ``timeout`` when the server did not
    say (an older server)."""
    effective = job.get("effective_timeout")
    if not isinstance(effective, Mapping):
        own = job.get("timeout") or 0
        return f"{own} min" if own else "none"
    minutes = int(effective.get("minutes") or 0)
    source = effective.get("source")
    if not minutes:
        return "none"
    if source == "entrypoint":
        where = f"entry point {effective.get('entrypoint')!r} of the package manifest"
    elif source == "jobconfig":
        where = "jobconfig"
    else:
        where = "set on the job"
    return f"{minutes} min ({where})"


def new_table(*, title: str = "") -> Table:
    """The one table style of every listing: no box, bold headers, title on the left.

    On a terminal it fits the width; piped, the console is as wide as the longest row
    (see ``context.make_console``), and ``--plain`` prints it tab-separated instead.
    """
    table = Table(box=None, pad_edge=False, header_style="bold")
    if title:
        table.title = title
        table.title_justify = "left"
    return table


def table_as_tsv(table: Table) -> list[str]:
    """The table's header (when it shows one) and rows as tab-separated lines, unstyled.

    Tabs and newlines inside a cell become spaces, so each row stays one line.
    """
    columns = table.columns
    lines: list[str] = []
    if table.show_header:
        lines.append("\t".join(_plain_cell(c.header) for c in columns))
    rows = max((len(c._cells) for c in columns), default=0)
    for index in range(rows):
        lines.append(
            "\t".join(
                _plain_cell(c._cells[index]) if index < len(c._cells) else "" for c in columns
            )
        )
    return lines


def _plain_cell(cell: Any) -> str:
    if isinstance(cell, Text):
        text = cell.plain
    elif isinstance(cell, str):
        text = Text.from_markup(cell).plain
    else:
        text = str(cell)
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def fields_table(obj: Mapping[str, Any], fields: Sequence[str], *, title: str = "") -> Table:
    """Two columns, field and value, for one object."""
    table = Table.grid(padding=(0, 2))
    if title:
        table.title = title
        table.title_justify = "left"
    table.add_column(style="bold")
    table.add_column()
    for name in fields:
        if name not in obj:
            continue
        value = obj[name]
        if name == "status":
            table.add_row(name, status_text(value))
        elif name.endswith("_at"):
            table.add_row(name, format_time(value))
        else:
            table.add_row(name, Text(format_value(value)))
    return table


def jobs_table(jobs: Iterable[JsonObject], names: Mapping[int, str] | None = None) -> Table:
    """A listing of jobs, newest first as the API returns them."""
    names = names or {}
    table = new_table()
    for column in ("ID", "JOBCONFIG", "STATUS", "EXIT", "TRIGGER", "CREATED", "RAN", "REASON"):
        table.add_column(column, justify="right" if column in ("ID", "EXIT") else "left")
    for job in jobs:
        jobconfig_id = job.get("jobconfig_id")
        jobconfig = names.get(jobconfig_id, str(jobconfig_id)) if jobconfig_id else "(ad hoc)"
        duration = job_duration(job)
        table.add_row(
            str(job.get("id", "")),
            jobconfig,
            status_text(job.get("status")),
            format_value(job.get("exit_code")),
            format_value(job.get("trigger")),
            format_time(job.get("created_at")),
            format_seconds(duration) if duration is not None else "",
            Text(format_value(job.get("status_reason"))),
        )
    return table


def events_table(events: Iterable[JsonObject]) -> Table:
    """A job's status history, oldest first."""
    table = new_table(title="events")
    for column in ("AT", "STATUS", "ACTOR", "REASON"):
        table.add_column(column)
    for event in events:
        table.add_row(
            format_time(event.get("at")),
            status_text(event.get("status")),
            Text(format_value(event.get("actor"))),
            Text(format_value(event.get("reason"))),
        )
    return table


def outputs_table(outputs: Iterable[JsonObject]) -> Table:
    """A job's output files."""
    table = new_table(title="outputs")
    table.add_column("NAME")
    table.add_column("SIZE", justify="right")
    table.add_column("CREATED")
    for item in outputs:
        table.add_row(
            Text(str(item.get("name", ""))),
            format_size(item.get("size")),
            format_time(item.get("created_at")),
        )
    return table


def jobconfigs_table(items: Iterable[JsonObject]) -> Table:
    """A listing of jobconfigs."""
    table = new_table()
    for column in ("ID", "NAME", "PACKAGE", "RUNS", "MAX", "TIMEOUT", "ENABLED", "POOL"):
        table.add_column(column, justify="right" if column in ("ID", "PACKAGE", "MAX") else "left")
    for item in items:
        runs = item.get("entrypoint") or format_value(item.get("command"))
        timeout = item.get("timeout") or 0
        table.add_row(
            str(item.get("id", "")),
            Text(str(item.get("name", ""))),
            format_value(item.get("package_id")),
            Text(runs),
            format_value(item.get("max_concurrent")),
            f"{timeout} min" if timeout else "none",
            format_value(item.get("enabled")),
            Text(format_value(item.get("pool"))),
        )
    return table


def packages_table(items: Iterable[JsonObject]) -> Table:
    """A listing of packages."""
    table = new_table()
    for column in ("ID", "SHA256", "FILENAME", "KIND", "SIZE", "ENTRYPOINTS", "CREATED"):
        table.add_column(column, justify="right" if column in ("ID", "SIZE") else "left")
    for item in items:
        table.add_row(
            str(item.get("id", "")),
            str(item.get("sha256", ""))[:12],
            Text(str(item.get("filename", ""))),
            format_value(item.get("kind")),
            format_size(item.get("size")),
            Text(", ".join(entrypoint_names(item))),
            format_time(item.get("created_at")),
        )
    return table


def entrypoint_names(package: Mapping[str, Any]) -> list[str]:
    """The entry point names of a package answer (a list of names, or a name → spec mapping)."""
    entrypoints = package.get("entrypoints") or []
    if isinstance(entrypoints, Mapping):
        return sorted(str(name) for name in entrypoints)
    return [str(name) for name in entrypoints]
