"""``jobyard workers list``: the worker registry (health, slots in use, jobs held)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from jobyard.cli.context import JsonFlag, OutputOpt, PlainFlag, state_of
from jobyard.cli.render import format_seconds, format_time, format_value, new_table
from jobyard.client import ApiClient, JsonObject

app = typer.Typer(
    name="workers", help="List workers: health, pools, slots in use.", no_args_is_help=True
)

#: Colours of the heartbeat states, as on the console's workers page.
HEALTH_STYLES = {"healthy": "green", "late": "yellow", "lost": "bold red", "draining": "cyan"}


def workers_table(items: Iterable[JsonObject]) -> Table:
    """One row per worker; HOST and PID columns only when the answer has them (admins)."""
    rows = list(items)
    admin = any(item.get("host") is not None for item in rows)
    labelled = any(item.get("labels") for item in rows)
    table = new_table()
    columns = ["ID", "POOL", "KIND", "HEALTH", "HEARTBEAT", "BUSY", "JOBS"]
    if admin:
        columns[3:3] = ["HOST", "PID", "VERSION"]
    if labelled:
        columns.insert(2, "LABELS")
    for column in columns:
        table.add_column(column, justify="right" if column in ("PID", "BUSY") else "left")
    for item in rows:
        jobs = [f"#{job.get('id')}" for job in item.get("jobs") or []]
        hidden = int(item.get("jobs_hidden") or 0)
        if hidden:
            jobs.append(f"+{hidden} not shown")
        age = item.get("heartbeat_age_seconds")
        beat = format_time(item.get("heartbeat_at"))
        if isinstance(age, int | float):
            beat = f"{beat} ({format_seconds(float(age))} ago)"
        health = str(item.get("health", ""))
        cells: list[Any] = [
            Text(str(item.get("id", ""))),
            Text(str(item.get("pool", ""))),
            str(item.get("kind", "")),
            Text(health, style=HEALTH_STYLES.get(health, "")),
            beat,
            f"{item.get('slots_busy', 0)}/{item.get('slots', 0)}",
            Text(" ".join(jobs)),
        ]
        if admin:
            cells[3:3] = [
                Text(str(item.get("host") or "")),
                str(item.get("pid") or ""),
                Text(str(item.get("version") or "")),
            ]
        if labelled:
            cells.insert(2, Text(format_value(item.get("labels") or {})))
        table.add_row(*cells)
    return table


async def _all_workers(
    api: ApiClient, *, limit: int, cursor: str | None, all_pages: bool
) -> JsonObject:
    """One page from ``cursor``, or every page merged into one answer."""
    answer = await api.workers_list(cursor=cursor, limit=limit)
    if not all_pages:
        return answer
    items = list(answer.get("items") or [])
    while answer.get("next_cursor"):
        answer = await api.workers_list(cursor=str(answer["next_cursor"]), limit=limit)
        items.extend(answer.get("items") or [])
    return {**answer, "items": items, "next_cursor": None}


@app.command("list")
def list_command(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="Workers per page.", min=1, max=500)
    ] = 100,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Continue a listing where a page ended.")
    ] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Fetch every page.")] = False,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """List the workers heard from in the last hour: pool, health, slots in use, the jobs
    they hold (those you may view; the others are counted). Host, PID, version: admins."""
    state = state_of(ctx)
    answer = state.call(
        lambda api: _all_workers(api, limit=limit, cursor=cursor, all_pages=all_pages)
    )
    if json_output:
        state.print_json(answer)
        return
    items = answer.get("items") or []
    if not items:
        state.err.print("no worker has reported (start one with: jobyard up)")
        return
    state.out.print(workers_table(items))
    state.err.print(
        f"{answer.get('slots_busy', 0)} of {answer.get('slots_total', 0)} slot(s) in use",
        markup=False,
    )
    if answer.get("older_lost"):
        state.err.print(
            f"{answer['older_lost']} worker(s) lost more than an hour ago not shown", markup=False
        )
    if answer.get("next_cursor"):
        state.err.print(f"more: --cursor {answer['next_cursor']} (or --all)", markup=False)


@app.command("drain")
def drain_command(
    ctx: typer.Context,
    worker_id: Annotated[str, typer.Argument(help="The worker's id (see: jobyard workers list).")],
    json_output: JsonFlag = False,
) -> None:
    """Ask a worker to drain (admins): at its next heartbeat it claims no new jobs and
    lets its running ones finish; a remote worker then exits, the local slots of
    ``jobyard up`` stay idle (shown ``draining``) until the server restarts."""
    state = state_of(ctx)
    answer = state.call(lambda api: api.worker_drain(worker_id))
    if json_output:
        state.print_json(answer)
        return
    state.err.print(
        f"worker {answer.get('id', worker_id)} asked to drain: it finishes its running jobs "
        "and takes no new ones",
        markup=False,
    )


token_app = typer.Typer(
    name="token",
    help="Worker tokens: what `jobyard worker` authenticates with (admins only).",
    no_args_is_help=True,
)
app.add_typer(token_app)


@token_app.command("create")
def token_create_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="What the token is for (a host, a fleet).")],
    pool: Annotated[
        str | None, typer.Option("--pool", help="The only pool its workers may serve.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Create a worker token; its value is printed once (on stdout): keep it in a file
    only the worker's user can read and start the worker with --token-file."""
    state = state_of(ctx)
    answer = state.call(lambda api: api.worker_token_create(name, pool))
    if json_output:
        state.print_json(answer)
        return
    state.out.print(str(answer.get("token", "")), markup=False, highlight=False)
    scope = f"pool {pool}" if pool else "any pool"
    state.err.print(
        f"worker token {answer.get('id')} ({name}, {scope}) created: the value above is "
        "shown this once",
        markup=False,
    )


@token_app.command("list")
def token_list_command(
    ctx: typer.Context,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """List worker tokens (never their values)."""
    state = state_of(ctx)
    items = state.call(lambda api: api.worker_tokens_list())
    if json_output:
        state.print_json(items)
        return
    if not items:
        state.err.print("no worker token (create one with: jobyard workers token create NAME)")
        return
    table = new_table()
    for column in ("ID", "NAME", "POOL", "CREATED", "BY", "LAST USED", "REVOKED"):
        table.add_column(column, justify="right" if column == "ID" else "left")
    for item in items:
        table.add_row(
            str(item.get("id")),
            Text(str(item.get("name", ""))),
            Text(str(item.get("pool") or "(any)")),
            format_time(item.get("created_at")),
            Text(str(item.get("created_by", ""))),
            format_time(item.get("last_used_at")) if item.get("last_used_at") else "",
            "yes" if item.get("revoked") else "",
        )
    state.out.print(table)


@token_app.command("revoke")
def token_revoke_command(
    ctx: typer.Context, token_id: Annotated[int, typer.Argument(help="The token's id.")]
) -> None:
    """Revoke a worker token: workers using it are refused within seconds."""
    state = state_of(ctx)
    answer = state.call(lambda api: api.worker_token_revoke(token_id))
    state.err.print(f"worker token {answer.get('id')} ({answer.get('name')}) revoked", markup=False)
