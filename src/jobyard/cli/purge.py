"""``jobyard purge [--dry-run]``: run a retention pass on the server now (admins)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from jobyard.cli.context import JsonFlag, OutputOpt, PlainFlag, state_of
from jobyard.cli.render import new_table
from jobyard.client import ApiClient
from jobyard.client_types import JsonObject

#: Rows of the table, in order: (answer field, label).
ROWS: tuple[tuple[str, str], ...] = (
    ("jobs", "ended jobs"),
    ("events", "job events"),
    ("tokens", "session tokens"),
    ("log_files", "log files"),
    ("files", "payload/output files"),
    ("packages", "packages"),
    ("blobs", "blob files"),
    ("bytes", "bytes"),
    ("audit_rows", "audit rows"),
    ("orphans", "orphan files"),
)


def purge_table(report: JsonObject) -> Table:
    """What went (or would go) as a two-column table."""
    title = "would be purged (dry run)" if report.get("dry_run") else "purged"
    table = new_table(title=title)
    table.add_column("what")
    table.add_column("count", justify="right")
    for field, label in ROWS:
        table.add_row(label, str(report.get(field, 0)))
    return table


def purge_command(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would go; change nothing.")
    ] = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
    json_output: JsonFlag = False,
) -> None:
    """Purge ended jobs past their retention, old audit rows and unused packages now."""
    state = state_of(ctx)

    async def work(api: ApiClient) -> JsonObject:
        return await api.purge(dry_run=dry_run)

    report = state.call(work)
    if json_output:
        state.print_json(report)
    else:
        state.out.print(purge_table(report))
