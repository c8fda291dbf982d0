"""``jobyard apply`` and ``jobyard export``: jobconfigs as code, round trip.

The server plans and applies the document (``POST /api/v1/apply``), so the CLI, scripts
and any other client share one implementation. The CLI only reads the file (its
problems reported with ``file:line`` before anything is sent), computes the sha256 of
each package path, asks the server for the plan (a dry run), pushes the packages the
server does not hold yet, and then applies: the report it prints is the server's.
A document the server cannot plan comes back with each problem's path, which the CLI
turns into a line of the file.

An older server without ``/api/v1/apply`` gets the same plan computed here (see
:mod:`jobyard.cli.applylocal`).
"""

from __future__ import annotations

import sys
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape

from jobyard.cli.applylocal import apply_file, fetch_for_export
from jobyard.cli.applyreport import report_from_json, report_tables, summary
from jobyard.cli.archive import prepared_package
from jobyard.cli.context import EXIT_API, EXIT_INPUT, CliFailure, CliState, state_of
from jobyard.cli.exportpaths import keep_package_paths
from jobyard.client import ApiClient, ApiError, JsonObject
from jobyard.service.apply.document import (
    ApplyFile,
    load_apply_file,
)
from jobyard.service.apply.exportform import dump_export
from jobyard.service.apply.nodes import Problem, SpecError, line_at, loc_of
from jobyard.service.apply.report import ApplyReport, report_json


def _load(state: CliState, path: Path) -> ApplyFile:
    try:
        return load_apply_file(path)
    except SpecError as exc:
        _print_problems(state, exc)
        raise typer.Exit(EXIT_INPUT) from exc


def _print_problems(state: CliState, exc: SpecError) -> None:
    for problem in exc.problems:
        state.err.print(f"[bold red]error:[/] {escape(problem.render(exc.source))}")


def _plain(value: Any) -> Any:
    """The document as JSON can carry it (YAML date-times become ISO 8601 text)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


class _Document:
    """The file as sent to the server: its data with package paths replaced by sha256,
    and its node tree to find the line of a problem the server names by path."""

    def __init__(self, spec: ApplyFile, path: Path) -> None:
        text = path.read_text(encoding="utf-8")
        self.spec = spec
        self.root = yaml.compose(text, Loader=yaml.SafeLoader)
        self.data: dict[str, Any] = _plain(yaml.safe_load(text))

    def hash_packages(self) -> None:
        """Give every package its sha256 (of the bytes apply would push)."""
        for decl in self.spec.packages.values():
            if decl.path is None:
                continue
            with prepared_package(decl.path) as prepared:
                sha256 = prepared.sha256
            if decl.sha256 is not None and decl.sha256 != sha256:
                raise CliFailure(
                    f"{self.spec.source}:{decl.line}: packages.{decl.name}: the file's sha256 "
                    f"{decl.sha256[:12]}… is not that of {decl.given_path} ({sha256[:12]}…): "
                    "remove the `sha256` line (apply computes it) or fix it"
                )
            self.data["packages"][decl.name] = {"sha256": sha256}

    def problems(self, details: JsonObject) -> SpecError:
        """The server's problems of the document, located in the file."""
        found: list[Problem] = []
        for raw in details.get("problems") or []:
            where = str(raw.get("where") or "")
            line = line_at(self.root, loc_of(where)) if where else raw.get("line")
            found.append(Problem(str(raw.get("message")), line, where))
        return SpecError(self.spec.source, found)


async def _push_missing(api: ApiClient, doc: _Document, plan: JsonObject) -> set[str]:
    """Push each package the plan says the server lacks; the names pushed."""
    wanted = {str(p.get("name")) for p in plan.get("packages") or [] if p.get("state") == "new"}
    for decl in doc.spec.packages.values():
        if decl.name in wanted and decl.path is not None:
            with prepared_package(decl.path) as prepared:
                await api.package_upload(prepared.upload)
    return wanted


async def _server_has_apply(api: ApiClient) -> bool:
    """Whether the server plans documents itself (``GET /api/v1/apply`` answers)."""
    try:
        await api.apply_schema()
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True


async def apply_via_server(api: ApiClient, doc: _Document, *, dry_run: bool) -> JsonObject:
    """The server's report: its plan (dry run), or what it applied after the push.

    ``apply_refused`` (nothing applied) answers its report too; the other errors raise.
    """
    doc.hash_packages()
    try:
        plan = await api.apply(doc.data, dry_run=True)
        if dry_run:
            return plan
        pushed = await _push_missing(api, doc, plan)
        report = await api.apply(doc.data, dry_run=False)
    except ApiError as exc:
        report_body = exc.details.get("report")
        if exc.code == "apply_refused" and isinstance(report_body, dict):
            return report_body
        if exc.code == "invalid_document":
            raise doc.problems(exc.details) from exc
        raise
    for package in report.get("packages") or []:
        if package.get("name") in pushed:
            package["state"] = "pushed"
    return report


async def _apply(api: ApiClient, spec: ApplyFile, path: Path, *, dry_run: bool) -> JsonObject:
    if not await _server_has_apply(api):
        return report_json(await apply_file(api, spec, dry_run=dry_run))
    return await apply_via_server(api, _Document(spec, path), dry_run=dry_run)


def apply_command(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Option(
            "--file", "-f", help="The YAML file to apply.", dir_okay=False, show_default=False
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Create or update jobconfigs (and push packages) from a YAML file; idempotent.

    Each jobconfig is looked up by name: created when missing, replaced when a field
    differs, left alone otherwise. Fields left out of the file take their defaults.
    A jobconfig with a `schedules` list gets exactly those schedules (matched by name:
    created, changed, or deleted when not listed); without the key its schedules stay.
    The server applies the file all or nothing; only packages it lacks are pushed.
    """
    state = state_of(ctx)
    spec = _load(state, file)
    try:
        answer = state.call(lambda api: _apply(api, spec, file, dry_run=dry_run))
    except SpecError as exc:
        _print_problems(state, exc)
        raise typer.Exit(EXIT_INPUT) from exc
    report: ApplyReport = report_from_json(answer)
    state.print_warnings(answer)
    if json_output:
        state.print_json(answer)
    else:
        for table in report_tables(report):
            state.out.print(table)
        state.out.print(summary(report))
    if report.failed:
        raise typer.Exit(EXIT_API)


async def _export(api: ApiClient, names: list[str]) -> tuple[str, int]:
    """The export document's text and how many jobconfigs it holds."""
    try:
        text = await api.export(names)
    except ApiError as exc:
        if (
            exc.status != 404
            or exc.code not in ("http_error", "not_found")
            or (exc.code == "not_found" and not exc.message.startswith("no such API route"))
        ):
            raise
        items, templates = await fetch_for_export(api, names)
        return dump_export(items, templates), len(items)
    loaded = yaml.safe_load(text) or {}
    return text, len(loaded.get("jobconfigs") or [])


def export_command(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Jobconfig names to export (default: all).", show_default=False),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write to this file instead of stdout.", dir_okay=False
        ),
    ] = None,
) -> None:
    """Write jobconfigs (with their schedules, the templates they name and the packages
    they use, by name and sha256) as an apply file; applying it is a no-op.

    Over an existing apply file (`-o jobs.yaml`), packages whose bytes are those of a
    `path` of that file keep its name and path.
    """
    state = state_of(ctx)
    text, count = state.call(lambda api: _export(api, list(names or [])))
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    text = keep_package_paths(text, output)
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        state.fail(f"{output}: {exc.strerror or exc}")
    state.err.print(f"wrote {count} jobconfig(s) to {output}")
