"""``jobyard templates ...``: list, show, delete, clone, export and import templates.

Creating and changing templates is also ``jobyard apply``'s job (a top-level
``templates:`` list in the YAML file); ``export``/``import`` move one template with its
jobconfigs and their schedules between servers as JSON (packages by sha256).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from jobyard.cli.context import JsonFlag, OutputOpt, PlainFlag, state_of
from jobyard.cli.lookup import parse_id
from jobyard.cli.render import fields_table, format_value, jobconfigs_table, new_table
from jobyard.client import ApiClient, ApiError, JsonObject, collect_all

app = typer.Typer(
    name="templates",
    help="List, show, delete, clone, export and import templates (shared package and "
    "entry point of jobconfigs).",
    no_args_is_help=True,
)

TEMPLATE_FIELDS = (
    "id", "name", "description", "package_id", "entrypoint", "command", "owner",
    "created_at", "updated_at",
)  # fmt: skip

TemplateRef = Annotated[str, typer.Argument(help="Template name or id.", show_default=False)]


async def resolve_template(api: ApiClient, ref: str) -> JsonObject:
    """The template with id ``ref`` (all digits) or named ``ref``; a 404 when there is none."""
    template_id = parse_id(ref)
    if template_id is not None:
        return await api.template_get(template_id)
    found = await api.template_find(ref)
    if found is None:
        raise ApiError(404, "not_found", f"no template named {ref!r}")
    return found


def templates_table(items: list[JsonObject]) -> Table:
    """A listing of templates."""
    table = new_table()
    for column in ("ID", "NAME", "PACKAGE", "RUNS", "OWNER", "DESCRIPTION"):
        table.add_column(column, justify="right" if column in ("ID", "PACKAGE") else "left")
    for item in items:
        runs = item.get("entrypoint") or format_value(item.get("command"))
        table.add_row(
            str(item.get("id", "")),
            Text(str(item.get("name", ""))),
            format_value(item.get("package_id")),
            Text(runs),
            Text(format_value(item.get("owner"))),
            Text(str(item.get("description") or "")),
        )
    return table


@app.command("list")
def list_command(
    ctx: typer.Context,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """List every template."""
    state = state_of(ctx)
    items = state.call(
        lambda api: collect_all(lambda cursor: api.templates_list(cursor=cursor, limit=100))
    )
    if json_output:
        state.print_json({"items": items})
    elif not items:
        state.err.print("no templates (create some with `templates:` in jobyard apply -f FILE)")
    else:
        state.out.print(templates_table(items))


async def _with_jobconfigs(api: ApiClient, ref: str) -> JsonObject:
    item = await resolve_template(api, ref)
    return {**item, "jobconfigs": await api.template_jobconfigs(int(item["id"]))}


@app.command("show")
def show_command(
    ctx: typer.Context,
    template: TemplateRef,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Show one template and the jobconfigs that name it."""
    state = state_of(ctx)
    item = state.call(lambda api: _with_jobconfigs(api, template))
    if json_output:
        state.print_json(item)
        return
    children = item.pop("jobconfigs")
    state.out.print(fields_table(item, TEMPLATE_FIELDS))
    if children:
        state.out.print(jobconfigs_table(children))
    else:
        state.out.print("no jobconfigs name this template")


async def _delete(api: ApiClient, ref: str) -> JsonObject:
    item = await resolve_template(api, ref)
    await api.template_delete(int(item["id"]))
    return item


@app.command("delete")
def delete_command(ctx: typer.Context, template: TemplateRef) -> None:
    """Delete a template (refused while jobconfigs name it)."""
    state = state_of(ctx)
    item = state.call(lambda api: _delete(api, template))
    state.out.print(f"deleted template {item.get('id')} ({escape(str(item.get('name')))})")


@app.command("clone")
def clone_command(
    ctx: typer.Context,
    template: TemplateRef,
    name: Annotated[str, typer.Argument(help="Name of the copy.", show_default=False)],
    with_jobconfigs: Annotated[
        bool, typer.Option("--with-jobconfigs", help="Copy its jobconfigs too (no schedules).")
    ] = False,
    prefix: Annotated[
        str | None,
        typer.Option(
            "--prefix",
            help="Name prefix of copied jobconfigs (default: 'NAME.').",
            show_default=False,
        ),
    ] = None,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Copy a template (and with --with-jobconfigs its jobconfigs, renamed PREFIX+name)."""
    state = state_of(ctx)

    async def work(api: ApiClient) -> JsonObject:
        source = await resolve_template(api, template)
        return await api.template_clone(
            int(source["id"]), name, with_jobconfigs=with_jobconfigs, jobconfig_prefix=prefix
        )

    result = state.call(work)
    state.print_warnings(result)
    if json_output:
        state.print_json(result)
        return
    copy = result["template"]
    state.out.print(f"created template {copy['id']} ({escape(str(copy['name']))})")
    for jc in result.get("jobconfigs") or []:
        state.out.print(f"created jobconfig {jc['id']} ({escape(str(jc['name']))})")
    for owner, names in (result.get("secure_macros_skipped") or {}).items():
        state.err.print(
            f"[yellow]note:[/] secure macros of {escape(owner)} not copied (set them again): "
            + escape(", ".join(names))
        )


@app.command("export")
def export_command(
    ctx: typer.Context,
    template: TemplateRef,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write to this file instead of stdout.", dir_okay=False
        ),
    ] = None,
) -> None:
    """Write a template with its jobconfigs and schedules as JSON (for `templates import`)."""
    state = state_of(ctx)

    async def work(api: ApiClient) -> JsonObject:
        item = await resolve_template(api, template)
        return await api.template_export(int(item["id"]))

    text = json.dumps(state.call(work), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        state.fail(f"{output}: {exc.strerror or exc}")
    state.err.print(f"wrote template export to {output}")


def _report_table(report: JsonObject) -> Table:
    table = new_table()
    for column in ("KIND", "NAME", "ID", "ACTION"):
        table.add_column(column)
    t = report["template"]
    table.add_row("template", Text(str(t["name"])), str(t["id"]), t["action"])
    for jc in report.get("jobconfigs") or []:
        table.add_row("jobconfig", Text(str(jc["name"])), str(jc["id"]), jc["action"])
        for s in jc.get("schedules") or []:
            table.add_row("  schedule", Text(str(s["name"])), str(s["id"]), s["action"])
    return table


@app.command("import")
def import_command(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="A file written by `templates export`.", dir_okay=False)
    ],
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Create or update a template and its jobconfigs by name from an export file.

    Its packages (by sha256) must be uploaded first (`jobyard packages push`).
    """
    state = state_of(ctx)
    try:
        document: Any = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        state.fail(f"{file}: {exc}")
    if not isinstance(document, dict):
        state.fail(f"{file}: not a template export (a JSON object)")
    report = state.call(lambda api: api.template_import(document))
    state.print_warnings(report)
    if json_output:
        state.print_json(report)
    else:
        state.out.print(_report_table(report))
