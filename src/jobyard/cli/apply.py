"""``jobyard apply`` and ``jobyard export``: jobconfigs as code, round trip.

Apply is idempotent: packages are pushed first (the server keeps identical bytes once),
then each jobconfig of the file is looked up by name and created, replaced, or left
alone when nothing differs. ``--dry-run`` computes the same plan and changes nothing.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from jobyard.cli.archive import prepared_package
from jobyard.cli.context import EXIT_API, EXIT_INPUT, CliState, state_of
from jobyard.cli.plan import (
    Action,
    PendingPackage,
    PlanItem,
    compute_plan,
    format_change,
)
from jobyard.cli.render import entrypoint_names
from jobyard.cli.yamlspec import (
    ApplyFile,
    JobConfigDecl,
    PackageDecl,
    SpecError,
    dump_export,
    load_apply_file,
)
from jobyard.client import ApiClient, ApiError, JsonObject, collect_all


@dataclass(frozen=True, slots=True)
class PackageResult:
    """A package of the file after apply: its server id (or pending, in a dry run)."""

    name: str
    path: Path
    sha256: str
    package_id: int | PendingPackage
    entrypoints: list[str] = field(default_factory=list)
    state: str = "pushed"  # "pushed" | "exists" | "new" (the last two in a dry run)


@dataclass(frozen=True, slots=True)
class ApplyReport:
    """Everything apply did (or would do)."""

    packages: list[PackageResult]
    items: list[PlanItem]
    dry_run: bool

    @property
    def failed(self) -> bool:
        """Whether some jobconfig could not be written."""
        return any(item.action is Action.FAILED for item in self.items)


async def _package_for(api: ApiClient, decl: PackageDecl, *, dry_run: bool) -> PackageResult:
    with prepared_package(decl.path) as prepared:
        if not dry_run:
            answer = await api.package_upload(prepared.upload)
            return PackageResult(
                decl.name,
                decl.path,
                str(answer.get("sha256") or prepared.sha256),
                int(answer["id"]),
                entrypoint_names(answer),
            )
    known = await collect_all(lambda cursor: api.packages_list(cursor=cursor, limit=100))
    for package in known:
        if package.get("sha256") == prepared.sha256:
            return PackageResult(
                decl.name,
                decl.path,
                prepared.sha256,
                int(package["id"]),
                entrypoint_names(package),
                "exists",
            )
    pending = PendingPackage(decl.name, prepared.sha256)
    return PackageResult(decl.name, decl.path, prepared.sha256, pending, [], "new")


def _desired(decl: JobConfigDecl, packages: dict[str, PackageResult]) -> dict[str, Any]:
    spec = dict(decl.spec)
    if decl.package is not None:
        spec["package_id"] = packages[decl.package].package_id
    return spec


async def apply_file(api: ApiClient, spec: ApplyFile, *, dry_run: bool = False) -> ApplyReport:
    """Push the file's packages, then bring each jobconfig of the file to its desired state.

    A jobconfig the server refuses is reported as failed and the others still go ahead;
    a package that cannot be pushed stops everything before any jobconfig changes.
    """
    packages: dict[str, PackageResult] = {}
    for decl in spec.packages.values():
        packages[decl.name] = await _package_for(api, decl, dry_run=dry_run)
    desired = [_desired(decl, packages) for decl in spec.jobconfigs]
    current = {d["name"]: await api.jobconfig_find(d["name"]) for d in desired}
    plan = compute_plan(desired, current)
    if dry_run:
        return ApplyReport(list(packages.values()), plan, dry_run=True)
    done: list[PlanItem] = []
    for item in plan:
        try:
            if item.action is Action.CREATE and item.desired is not None:
                created = await api.jobconfig_create(item.desired)
                item = dataclasses.replace(item, jobconfig_id=created.get("id"))
            elif item.action is Action.UPDATE and item.desired is not None:
                assert item.jobconfig_id is not None
                await api.jobconfig_replace(item.jobconfig_id, item.desired)
        except ApiError as exc:
            detail = "; ".join(f"{k}: {v}" for k, v in exc.details.items())
            error = f"{exc.message} (HTTP {exc.status}, {exc.code})" + (
                f" {detail}" if detail else ""
            )
            item = dataclasses.replace(item, action=Action.FAILED, error=error)
        done.append(item)
    return ApplyReport(list(packages.values()), done, dry_run=False)


_ACTION_STYLES = {
    Action.CREATE: "bold green",
    Action.UPDATE: "bold yellow",
    Action.UNCHANGED: "dim",
    Action.FAILED: "bold red",
}


def _report_tables(report: ApplyReport) -> list[Table]:
    tables: list[Table] = []
    if report.packages:
        packages = Table(box=None, pad_edge=False, header_style="bold", title_justify="left")
        packages.title = "packages"
        for column in ("NAME", "ID", "SHA256", "ENTRYPOINTS", "STATE"):
            packages.add_column(column)
        for p in report.packages:
            packages.add_row(
                Text(p.name),
                Text(str(p.package_id)),
                p.sha256[:12],
                Text(", ".join(p.entrypoints)),
                p.state,
            )
        tables.append(packages)
    configs = Table(box=None, pad_edge=False, header_style="bold", title_justify="left")
    configs.title = "jobconfigs" + (" (dry run: nothing changed)" if report.dry_run else "")
    for column in ("NAME", "ACTION", "CHANGES"):
        configs.add_column(column)
    for item in report.items:
        label = item.action.value if report.dry_run else item.action.done
        if item.action is Action.FAILED:
            changes = item.error
        else:
            created = item.action is Action.CREATE
            changes = "\n".join(format_change(c, created=created) for c in item.changes)
        configs.add_row(
            Text(item.name), Text(label, style=_ACTION_STYLES[item.action]), Text(changes)
        )
    tables.append(configs)
    return tables


def _summary(report: ApplyReport) -> str:
    counts: dict[Action, int] = {}
    for item in report.items:
        counts[item.action] = counts.get(item.action, 0) + 1
    words = [
        f"{counts.get(a, 0)} {a.value if report.dry_run else a.done}"
        for a in (Action.CREATE, Action.UPDATE, Action.UNCHANGED)
    ]
    if counts.get(Action.FAILED):
        words.append(f"{counts[Action.FAILED]} failed")
    return ", ".join(words)


def report_json(report: ApplyReport) -> JsonObject:
    """The machine-readable form of an apply report (``--json``)."""
    return {
        "dry_run": report.dry_run,
        "packages": [
            {
                "name": p.name,
                "id": p.package_id if isinstance(p.package_id, int) else None,
                "sha256": p.sha256,
                "entrypoints": p.entrypoints,
                "state": p.state,
            }
            for p in report.packages
        ],
        "jobconfigs": [
            {
                "name": item.name,
                "id": item.jobconfig_id,
                "action": item.action.value if report.dry_run else item.action.done,
                "changes": [
                    {"field": c.field, "old": _jsonable(c.old), "new": _jsonable(c.new)}
                    for c in item.changes
                ],
                "error": item.error or None,
            }
            for item in report.items
        ],
    }


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, PendingPackage) else value


def _load(state: CliState, path: Path) -> ApplyFile:
    try:
        return load_apply_file(path)
    except SpecError as exc:
        for problem in exc.problems:
            state.err.print(f"[bold red]error:[/] {escape(problem.render(exc.source))}")
        raise typer.Exit(EXIT_INPUT) from exc


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
    """
    state = state_of(ctx)
    spec = _load(state, file)
    report = state.call(lambda api: apply_file(api, spec, dry_run=dry_run))
    if json_output:
        state.print_json(report_json(report))
    else:
        for table in _report_tables(report):
            state.out.print(table)
        state.out.print(_summary(report))
    if report.failed:
        raise typer.Exit(EXIT_API)


async def fetch_for_export(api: ApiClient, names: list[str]) -> list[JsonObject]:
    """The named jobconfigs (all when ``names`` is empty); a missing name is a 404."""
    if not names:
        return await collect_all(lambda cursor: api.jobconfigs_list(cursor=cursor, limit=100))
    found: list[JsonObject] = []
    for name in names:
        item = await api.jobconfig_find(name)
        if item is None:
            raise ApiError(404, "not_found", f"no jobconfig named {name!r}")
        found.append(item)
    return found


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
    """Write jobconfigs as an apply file (packages by `package_id`); applying it is a no-op."""
    state = state_of(ctx)
    items = state.call(lambda api: fetch_for_export(api, list(names or [])))
    text = dump_export(items)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        state.fail(f"{output}: {exc.strerror or exc}")
    state.err.print(f"wrote {len(items)} jobconfig(s) to {output}")
