"""``jobyard apply`` and ``jobyard export``: jobconfigs as code, round trip.

Apply is idempotent: packages are pushed first (the server keeps identical bytes once),
then the file's templates (see :mod:`jobyard.cli.templateapply`), then each jobconfig
of the file is looked up by name and created, replaced, or left alone when nothing
differs; then its schedules (when the file lists them) are matched
by name and created, patched, deleted or left alone. ``--dry-run`` computes the same
plan and changes nothing.

A jobconfig and its schedules go together: when the server refuses one of them (a bad
cron expression, say), what this run already changed for that jobconfig is put back
(best effort) and the item is reported as failed with the server's message.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from jobyard.cli.archive import prepared_package
from jobyard.cli.context import EXIT_API, EXIT_INPUT, CliState, state_of
from jobyard.service.apply.plan import (
    Action,
    PendingPackage,
    PlanItem,
    SchedulePlanItem,
    compute_plan,
    format_change,
    plan_schedules,
)
from jobyard.cli.render import entrypoint_names
from jobyard.cli.templateapply import (
    TemplateRef,
    apply_template,
    jsonable,
    plan_templates,
    server_templates,
    template_refs,
    templates_for_export,
    templates_table,
)
from jobyard.service.apply.nodes import SpecError
from jobyard.service.apply.document import (
    SPEC_FIELDS,
    ApplyFile,
    JobConfigDecl,
    PackageDecl,
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
    templates: list[PlanItem] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether some template or jobconfig could not be written."""
        return any(item.action is Action.FAILED for item in [*self.templates, *self.items])


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


def _desired(
    decl: JobConfigDecl, packages: dict[str, PackageResult], templates: dict[str, TemplateRef]
) -> dict[str, Any]:
    spec = dict(decl.spec)
    if decl.package is not None:
        spec["package_id"] = packages[decl.package].package_id
    if decl.template is not None:
        spec["template_id"] = templates.get(decl.template)
    return spec


async def apply_file(api: ApiClient, spec: ApplyFile, *, dry_run: bool = False) -> ApplyReport:
    """Push the file's packages, then bring each jobconfig of the file to its desired state.

    A jobconfig the server refuses is reported as failed and the others still go ahead;
    a package that cannot be pushed stops everything before any jobconfig changes.
    """
    known_templates = await server_templates(api, spec)
    packages: dict[str, PackageResult] = {}
    for decl in spec.packages.values():
        packages[decl.name] = await _package_for(api, decl, dry_run=dry_run)
    templates = plan_templates(spec, packages, known_templates)
    if not dry_run:
        templates = [await apply_template(api, item) for item in templates]
    refs = template_refs(templates, known_templates)
    desired = [_desired(decl, packages, refs) for decl in spec.jobconfigs]
    current = {d["name"]: await api.jobconfig_find(d["name"]) for d in desired}
    plan = compute_plan(desired, current)
    for index, jc in enumerate(spec.jobconfigs):
        if jc.template is not None and refs.get(jc.template) is None:
            error = f"its template {jc.template!r} could not be written (see above)"
            plan[index] = dataclasses.replace(plan[index], action=Action.FAILED, error=error)
    for index, jobconfig in enumerate(spec.jobconfigs):
        if jobconfig.schedules is not None:
            if plan[index].action is Action.FAILED:
                continue
            jobconfig_id = plan[index].jobconfig_id
            existing = await api.schedules_list(jobconfig_id) if jobconfig_id else []
            schedules = plan_schedules(jobconfig.schedules, existing)
            plan[index] = dataclasses.replace(plan[index], schedules=schedules)
    if dry_run:
        return ApplyReport(list(packages.values()), plan, dry_run=True, templates=templates)
    done = [await _apply_item(api, item) for item in plan]
    return ApplyReport(list(packages.values()), done, dry_run=False, templates=templates)


def _error_text(exc: ApiError) -> str:
    detail = "; ".join(f"{k}: {v}" for k, v in exc.details.items())
    return f"{exc.message} (HTTP {exc.status}, {exc.code})" + (f" {detail}" if detail else "")


Undo = Callable[[], Awaitable[object]]


async def _apply_item(api: ApiClient, item: PlanItem) -> PlanItem:
    """Write one jobconfig, then its schedules; on a refusal, put back what was written."""
    undo: list[Undo] = []
    step = ""
    try:
        if item.action is Action.CREATE and item.desired is not None:
            created = await api.jobconfig_create(item.desired)
            item = dataclasses.replace(item, jobconfig_id=created.get("id"))
            undo.append(_undo_create(api, int(created["id"])))
        elif item.action is Action.UPDATE and item.desired is not None:
            if item.jobconfig_id is None:
                raise ValueError(f"plan error: jobconfig {item.name!r} to update has no id")
            await api.jobconfig_replace(item.jobconfig_id, item.desired)
            if item.previous is not None:
                old = {f: item.previous[f] for f in SPEC_FIELDS if f in item.previous}
                undo.append(_undo_replace(api, item.jobconfig_id, old))
        done: list[SchedulePlanItem] = []
        for sched in _write_order(item.schedules or ()):
            step = sched.name
            done.append(await _apply_schedule(api, int(item.jobconfig_id or 0), sched, undo))
        step = ""
    except ApiError as exc:
        error = _error_text(exc)
        rollback = await _roll_back(undo)
        if step:
            error = f"schedule {step!r}: {error}"
        if undo:
            error += " — " + (rollback or "this jobconfig's changes of this run were put back")
        schedules = None
        if item.schedules is not None:
            schedules = tuple(
                dataclasses.replace(s, action=Action.FAILED, error=_error_text(exc))
                if s.name == step
                else dataclasses.replace(s, action=Action.UNCHANGED, changes=())
                for s in item.schedules
            )
        was_new = item.action is Action.CREATE
        return dataclasses.replace(
            item,
            action=Action.FAILED,
            error=error,
            jobconfig_id=None if was_new else item.jobconfig_id,
            schedules=schedules,
        )
    if item.schedules is not None:
        by_name = {s.name: s for s in done}
        item = dataclasses.replace(
            item, schedules=tuple(by_name.get(s.name, s) for s in item.schedules)
        )
    return item


def _write_order(items: tuple[SchedulePlanItem, ...]) -> list[SchedulePlanItem]:
    """Creations and updates in file order, deletions last (a refusal then deletes nothing)."""
    writes = [s for s in items if s.action in (Action.CREATE, Action.UPDATE)]
    return writes + [s for s in items if s.action is Action.DELETE]


def _undo_create(api: ApiClient, jobconfig_id: int) -> Undo:
    return lambda: api.jobconfig_delete(jobconfig_id)


def _undo_replace(api: ApiClient, jobconfig_id: int, old: dict[str, Any]) -> Undo:
    return lambda: api.jobconfig_replace(jobconfig_id, old)


async def _apply_schedule(
    api: ApiClient, jobconfig_id: int, item: SchedulePlanItem, undo: list[Undo]
) -> SchedulePlanItem:
    if item.action is Action.CREATE and item.body is not None:
        created = await api.schedule_create(jobconfig_id, item.body)
        schedule_id = int(created["id"])
        undo.append(lambda: api.schedule_delete(jobconfig_id, schedule_id))
        return dataclasses.replace(item, schedule_id=schedule_id)
    if item.schedule_id is None:
        raise ValueError(f"plan error: schedule {item.name!r} to change has no id")
    schedule_id = item.schedule_id
    if item.action is Action.UPDATE and item.body is not None:
        await api.schedule_patch(jobconfig_id, schedule_id, item.body)
        back = dict(item.undo or {})
        undo.append(lambda: api.schedule_patch(jobconfig_id, schedule_id, back))
    elif item.action is Action.DELETE:
        try:
            await api.schedule_delete(jobconfig_id, schedule_id)
        except ApiError as exc:
            if exc.status != 404:  # already gone is what was wanted
                raise
    return item


async def _roll_back(undo: list[Undo]) -> str:
    """Run the undo steps, newest first; say what could not be put back."""
    problems: list[str] = []
    for step in reversed(undo):
        try:
            await step()
        except ApiError as exc:
            problems.append(exc.message)
    return f"putting back this run's changes failed: {'; '.join(problems)}" if problems else ""


_ACTION_STYLES = {
    Action.CREATE: "bold green",
    Action.UPDATE: "bold yellow",
    Action.UNCHANGED: "dim",
    Action.FAILED: "bold red",
    Action.DELETE: "bold red",
}


def _changes_text(action: Action, changes: tuple[Any, ...], error: str) -> str:
    if action is Action.FAILED:
        return error
    created = action is Action.CREATE
    return "\n".join(format_change(c, created=created) for c in changes)


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
    if report.templates:
        tables.append(
            templates_table(report.templates, dry_run=report.dry_run, styles=_ACTION_STYLES)
        )
    configs = Table(box=None, pad_edge=False, header_style="bold", title_justify="left")
    configs.title = "jobconfigs" + (" (dry run: nothing changed)" if report.dry_run else "")
    for column in ("NAME", "ACTION", "CHANGES"):
        configs.add_column(column)
    for item in report.items:
        label = item.action.value if report.dry_run else item.action.done
        changes = _changes_text(item.action, item.changes, item.error)
        refused = [s for s in item.schedules or () if s.action is Action.FAILED]
        if refused:  # the schedule's row below has the server's message
            _message, _sep, rolled = item.error.partition(" — ")
            changes = f"schedule {refused[0].name!r} refused (below)" + (
                f"; {rolled}" if rolled else ""
            )
        configs.add_row(
            Text(item.name), Text(label, style=_ACTION_STYLES[item.action]), Text(changes)
        )
        for sched in item.schedules or ():
            label = sched.action.value if report.dry_run else sched.action.done
            name = Text("  schedule ", style="dim")
            name.append(sched.name)
            configs.add_row(
                name,
                Text(label, style=_ACTION_STYLES[sched.action]),
                Text(_changes_text(sched.action, sched.changes, sched.error)),
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
    text = ", ".join(words)
    declared = [s for item in report.items for s in item.schedules or ()]
    if any(item.schedules is not None for item in report.items):
        by_action: dict[Action, int] = {}
        for sched in declared:
            by_action[sched.action] = by_action.get(sched.action, 0) + 1
        parts = [
            f"{by_action.get(a, 0)} {a.value if report.dry_run else a.done}"
            for a in (Action.CREATE, Action.UPDATE, Action.DELETE, Action.UNCHANGED)
        ]
        if by_action.get(Action.FAILED):
            parts.append(f"{by_action[Action.FAILED]} failed")
        text += "; schedules: " + ", ".join(parts)
    if report.templates:
        kinds = [item.action for item in report.templates]
        shown = [
            f"{kinds.count(a)} {a.value if report.dry_run else a.done}"
            for a in (Action.CREATE, Action.UPDATE, Action.UNCHANGED, Action.FAILED)
            if a is not Action.FAILED or kinds.count(a)
        ]
        text = "templates: " + ", ".join(shown) + "; jobconfigs: " + text
    return text


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
        "templates": [_item_json(item, report.dry_run) for item in report.templates],
        "jobconfigs": [_item_json(item, report.dry_run) for item in report.items],
    }


def _item_json(item: PlanItem, dry_run: bool) -> JsonObject:
    out: JsonObject = {
        "name": item.name,
        "id": item.jobconfig_id,
        "action": item.action.value if dry_run else item.action.done,
        "changes": _changes_json(item.changes),
        "error": item.error or None,
    }
    if item.schedules is not None:
        out["schedules"] = [
            {
                "name": s.name,
                "id": s.schedule_id,
                "action": s.action.value if dry_run else s.action.done,
                "changes": _changes_json(s.changes),
                "error": s.error or None,
            }
            for s in item.schedules
        ]
    return out


def _changes_json(changes: tuple[Any, ...]) -> list[JsonObject]:
    return [{"field": c.field, "old": jsonable(c.old), "new": jsonable(c.new)} for c in changes]


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
    A jobconfig with a `schedules` list gets exactly those schedules (matched by name:
    created, changed, or deleted when not listed); without the key its schedules stay.
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


async def fetch_for_export(
    api: ApiClient, names: list[str]
) -> tuple[list[JsonObject], list[JsonObject]]:
    """The named jobconfigs (all when ``names`` is empty) with their ``schedules`` and
    ``template`` names, and the templates they name.

    A missing name is a 404.
    """
    found: list[JsonObject] = []
    if not names:
        found = await collect_all(lambda cursor: api.jobconfigs_list(cursor=cursor, limit=100))
    for name in names:
        item = await api.jobconfig_find(name)
        if item is None:
            raise ApiError(404, "not_found", f"no jobconfig named {name!r}")
        found.append(item)
    found = [{**item, "schedules": await api.schedules_list(int(item["id"]))} for item in found]
    return await templates_for_export(api, found)


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
    """Write jobconfigs (and the templates they name) as an apply file (packages by
    `package_id`); applying it is a no-op."""
    state = state_of(ctx)
    items, templates = state.call(lambda api: fetch_for_export(api, list(names or [])))
    text = dump_export(items, templates)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        state.fail(f"{output}: {exc.strerror or exc}")
    state.err.print(f"wrote {len(items)} jobconfig(s) to {output}")
