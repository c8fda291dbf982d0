"""``jobyard jobconfigs ...``: list, show and delete job configurations.

Creating and changing them is ``jobyard apply``'s job (configuration as code).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from jobyard.cli.context import JsonFlag, OutputOpt, PlainFlag, state_of
from jobyard.cli.lookup import resolve_jobconfig
from jobyard.cli.render import fields_table, jobconfigs_table
from jobyard.client import ApiClient, JsonObject, collect_all
from jobyard.service.apply.document import SPEC_FIELDS

app = typer.Typer(
    name="jobconfigs",
    help="List, show and delete jobconfigs (create and change them with `jobyard apply`).",
    no_args_is_help=True,
)

JOBCONFIG_FIELDS = ("id", *SPEC_FIELDS, "created_at", "updated_at")

ConfigRef = Annotated[str, typer.Argument(help="Jobconfig name or id.", show_default=False)]


async def all_jobconfigs(api: ApiClient) -> list[JsonObject]:
    """Every jobconfig, following the cursor to the last page."""
    return await collect_all(lambda cursor: api.jobconfigs_list(cursor=cursor, limit=100))


@app.command("list")
def list_command(
    ctx: typer.Context,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """List every jobconfig."""
    state = state_of(ctx)
    items = state.call(all_jobconfigs)
    if json_output:
        state.print_json({"items": items})
    elif not items:
        state.err.print("no jobconfigs (create some with: jobyard apply -f FILE.yaml)")
    else:
        state.out.print(jobconfigs_table(items))


@app.command("show")
def show_command(
    ctx: typer.Context,
    config: ConfigRef,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Show one jobconfig."""
    state = state_of(ctx)
    item = state.call(lambda api: resolve_jobconfig(api, config))
    if json_output:
        state.print_json(item)
        return
    extra = [k for k in item if k not in JOBCONFIG_FIELDS]
    state.out.print(fields_table(item, [*JOBCONFIG_FIELDS, *extra]))


async def delete_jobconfig(api: ApiClient, config: str) -> JsonObject:
    """Delete the jobconfig named (or numbered) ``config``; return what was deleted."""
    item = await resolve_jobconfig(api, config)
    await api.jobconfig_delete(int(item["id"]))
    return item


@app.command("delete")
def delete_command(ctx: typer.Context, config: ConfigRef) -> None:
    """Delete a jobconfig."""
    state = state_of(ctx)
    item = state.call(lambda api: delete_jobconfig(api, config))
    state.out.print(f"deleted jobconfig {item.get('id')} ({escape(str(item.get('name')))})")
