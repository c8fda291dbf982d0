"""How an apply report is printed: tables of packages, templates and jobconfigs (with
their schedules) and a one-line summary; and the report read back from the API's JSON."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from jobyard.cli.templateapply import templates_table
from jobyard.client import JsonObject
from jobyard.service.apply.plan import (
    Action,
    FieldChange,
    PendingPackage,
    PlanItem,
    SchedulePlanItem,
    format_change,
)
from jobyard.service.apply.report import ApplyReport, PackageResult

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


def report_tables(report: ApplyReport) -> list[Table]:
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
            templates_table(report.templates, dry_run=report.planned, styles=_ACTION_STYLES)
        )
    configs = Table(box=None, pad_edge=False, header_style="bold", title_justify="left")
    configs.title = "jobconfigs" + _title_note(report)
    for column in ("NAME", "ACTION", "CHANGES"):
        configs.add_column(column)
    for item in report.items:
        label = item.action.value if report.planned else item.action.done
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
            label = sched.action.value if report.planned else sched.action.done
            name = Text("  schedule ", style="dim")
            name.append(sched.name)
            configs.add_row(
                name,
                Text(label, style=_ACTION_STYLES[sched.action]),
                Text(_changes_text(sched.action, sched.changes, sched.error)),
            )
    tables.append(configs)
    return tables


def summary(report: ApplyReport) -> str:
    counts: dict[Action, int] = {}
    for item in report.items:
        counts[item.action] = counts.get(item.action, 0) + 1
    words = [
        f"{counts.get(a, 0)} {a.value if report.planned else a.done}"
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
            f"{by_action.get(a, 0)} {a.value if report.planned else a.done}"
            for a in (Action.CREATE, Action.UPDATE, Action.DELETE, Action.UNCHANGED)
        ]
        if by_action.get(Action.FAILED):
            parts.append(f"{by_action[Action.FAILED]} failed")
        text += "; schedules: " + ", ".join(parts)
    if report.templates:
        kinds = [item.action for item in report.templates]
        shown = [
            f"{kinds.count(a)} {a.value if report.planned else a.done}"
            for a in (Action.CREATE, Action.UPDATE, Action.UNCHANGED, Action.FAILED)
            if a is not Action.FAILED or kinds.count(a)
        ]
        text = "templates: " + ", ".join(shown) + "; jobconfigs: " + text
    return text


def _title_note(report: ApplyReport) -> str:
    if report.rolled_back:
        return " (refused: nothing changed)"
    return " (dry run: nothing changed)" if report.dry_run else ""


_ACTIONS = {a.value: a for a in Action} | {a.done: a for a in Action}


def _changes(raw: Any) -> tuple[FieldChange, ...]:
    return tuple(
        FieldChange(str(c.get("field")), c.get("old"), c.get("new"))
        for c in raw or ()
        if isinstance(c, dict)
    )


def _item(raw: JsonObject) -> PlanItem:
    schedules = None
    if isinstance(raw.get("schedules"), list):
        schedules = tuple(
            SchedulePlanItem(
                str(s.get("name")),
                _ACTIONS[str(s.get("action"))],
                _changes(s.get("changes")),
                s.get("id"),
                error=str(s.get("error") or ""),
            )
            for s in raw["schedules"]
        )
    return PlanItem(
        str(raw.get("name")),
        _ACTIONS[str(raw.get("action"))],
        _changes(raw.get("changes")),
        raw.get("id"),
        error=str(raw.get("error") or ""),
        schedules=schedules,
    )


def _package(raw: JsonObject) -> PackageResult:
    name, sha256 = str(raw.get("name")), str(raw.get("sha256"))
    package_id = raw.get("id")
    return PackageResult(
        name,
        sha256,
        int(package_id) if package_id is not None else PendingPackage(name, sha256),
        [str(e) for e in raw.get("entrypoints") or []],
        str(raw.get("state")),
    )


def report_from_json(raw: JsonObject) -> ApplyReport:
    """The report of ``POST /api/v1/apply`` (its JSON) as the CLI prints it."""
    packages = [
        PackageResult(
            str(p.get("name")),
            str(p.get("sha256")),
            int(p["id"])
            if p.get("id") is not None
            else PendingPackage(str(p.get("name")), str(p.get("sha256"))),
            [str(e) for e in p.get("entrypoints") or []],
            str(p.get("state")),
        )
        for p in raw.get("packages") or []
    ]
    return ApplyReport(
        packages,
        [_item(i) for i in raw.get("jobconfigs") or []],
        dry_run=bool(raw.get("dry_run")),
        templates=[_item(t) for t in raw.get("templates") or []],
        rolled_back=bool(raw.get("rolled_back")),
    )
