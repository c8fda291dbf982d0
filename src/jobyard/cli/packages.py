"""``jobyard packages ...``: push a file or folder as a package; list packages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from jobyard.cli.archive import prepared_package
from jobyard.cli.context import JsonFlag, OutputOpt, PlainFlag, state_of
from jobyard.cli.render import entrypoint_names, packages_table
from jobyard.client import ApiClient, JsonObject, Page, collect_all

app = typer.Typer(
    name="packages", help="Push and list packages (the programs jobs run).", no_args_is_help=True
)


async def push_package(api: ApiClient, path: Path) -> JsonObject:
    """Upload ``path``: a file as it is, a folder as its deterministic zip (same sha each time)."""
    with prepared_package(path) as prepared:
        return await api.package_upload(prepared.upload)


@app.command("push")
def push_command(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(
            help="A file (script, .zip, .tar.gz: sent as is) or a folder (zipped).",
            exists=True,
            show_default=False,
        ),
    ],
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Push a package; pushing the same content again returns the same package."""
    state = state_of(ctx)
    package = state.call(lambda api: push_package(api, path))
    if json_output:
        state.print_json(package)
        return
    names = entrypoint_names(package)
    state.out.print(
        Text.assemble(("package ", "dim"), (str(package.get("id")), "bold"), f"  {path}")
    )
    state.out.print(f"sha256       {package.get('sha256')}")
    state.out.print(Text(f"entrypoints  {', '.join(names) if names else '(none)'}"))


async def list_packages(api: ApiClient, *, limit: int, cursor: str | None, all_pages: bool) -> Page:
    """One page of packages from ``cursor``, or every page."""
    if all_pages:
        items = await collect_all(lambda c: api.packages_list(cursor=c, limit=limit))
        return Page(items, None)
    return await api.packages_list(cursor=cursor, limit=limit)


@app.command("list")
def list_command(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="Packages per page.", min=1, max=500)
    ] = 50,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Continue a listing where a page ended.")
    ] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Fetch every page.")] = False,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """List packages."""
    state = state_of(ctx)
    page = state.call(
        lambda api: list_packages(api, limit=limit, cursor=cursor, all_pages=all_pages)
    )
    if json_output:
        state.print_json({"items": page.items, "next_cursor": page.next_cursor})
        return
    if not page.items:
        state.err.print("no packages (push one with: jobyard packages push PATH)")
        return
    state.out.print(packages_table(page.items))
    if page.next_cursor:
        state.err.print(f"more: --cursor {page.next_cursor} (or --all)", markup=False)
