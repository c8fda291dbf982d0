"""The templates part of ``jobyard apply`` and ``jobyard export`` against a server
without ``/api/v1/apply`` (see :mod:`jobyard.cli.applylocal`), and their report table.

Apply writes the file's templates (by name: create, replace, or leave alone) after
pushing packages and before any jobconfig, then resolves each jobconfig's
``template: NAME`` to an id: a template of the file, else one already on the server.
A template the server refuses fails the jobconfigs that name it, not the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from jobyard.cli.context import CliFailure
from jobyard.client import ApiClient, ApiError, JsonObject
from jobyard.service.apply.document import ApplyFile
from jobyard.service.apply.plan import (
    Action,
    PlanItem,
    format_change,
    plan_template,
)
from jobyard.service.apply.templatespec import TEMPLATE_FIELDS, PendingTemplate

if TYPE_CHECKING:
    from jobyard.service.apply.report import PackageResult

#: What a jobconfig's ``template`` resolves to: an id, a template still to be created
#: (dry run), or ``None`` when writing the template failed.
TemplateRef = int | PendingTemplate | None


async def server_templates(api: ApiClient, spec: ApplyFile) -> dict[str, JsonObject | None]:
    """The server's templates named by the file (its own, and those its jobconfigs name).

    A jobconfig naming a template that is neither in the file nor on the server is a
    mistake in the file: nothing is changed.
    """
    own = {t.name for t in spec.templates}
    named = {jc.template for jc in spec.jobconfigs if jc.template is not None}
    found = {name: await api.template_find(name) for name in sorted(own | named)}
    missing = sorted(n for n in named - own if found[n] is None)
    if missing:
        raise CliFailure(
            f"{spec.source}: no template named {', '.join(map(repr, missing))} "
            "in the file or on the server"
        )
    return found


def plan_templates(
    spec: ApplyFile,
    packages: Mapping[str, PackageResult],
    current: Mapping[str, JsonObject | None],
) -> list[PlanItem]:
    """One plan item per template of the file, in file order."""
    items: list[PlanItem] = []
    for decl in spec.templates:
        desired = dict(decl.spec)
        if decl.package is not None:
            desired["package_id"] = packages[decl.package].package_id
        items.append(plan_template(desired, current.get(decl.name)))
    return items


async def apply_template(api: ApiClient, item: PlanItem) -> PlanItem:
    """Create or replace one template; a refusal makes the item failed."""
    try:
        if item.action is Action.CREATE and item.desired is not None:
            created = await api.template_create(item.desired)
            return dataclasses.replace(item, jobconfig_id=int(created["id"]))
        if item.action is Action.UPDATE and item.desired is not None:
            if item.jobconfig_id is None:
                raise ValueError(f"plan error: template {item.name!r} to update has no id")
            await api.template_replace(item.jobconfig_id, item.desired)
    except ApiError as exc:
        detail = "; ".join(f"{k}: {v}" for k, v in exc.details.items())
        error = f"{exc.message} (HTTP {exc.status}, {exc.code})" + (f" {detail}" if detail else "")
        return dataclasses.replace(item, action=Action.FAILED, error=error)
    return item


def template_refs(
    items: Sequence[PlanItem], current: Mapping[str, JsonObject | None]
) -> dict[str, TemplateRef]:
    """Template name -> what jobconfigs naming it get as ``template_id``."""
    refs: dict[str, TemplateRef] = {
        name: int(found["id"]) for name, found in current.items() if found is not None
    }
    for item in items:
        if item.action is Action.FAILED:
            refs[item.name] = None
        elif item.jobconfig_id is not None:
            refs[item.name] = item.jobconfig_id
        else:
            refs[item.name] = PendingTemplate(item.name)
    return refs


def templates_table(
    items: Sequence[PlanItem], *, dry_run: bool, styles: Mapping[Action, str]
) -> Table:
    """The templates part of an apply report."""
    table = Table(box=None, pad_edge=False, header_style="bold", title_justify="left")
    table.title = "templates" + (" (dry run: nothing changed)" if dry_run else "")
    for column in ("NAME", "ACTION", "CHANGES"):
        table.add_column(column)
    for item in items:
        label = item.action.value if dry_run else item.action.done
        if item.action is Action.FAILED:
            changes = item.error
        else:
            created = item.action is Action.CREATE
            changes = "\n".join(format_change(c, created=created) for c in item.changes)
        table.add_row(Text(item.name), Text(label, style=styles[item.action]), Text(changes))
    return table


async def templates_for_export(
    api: ApiClient, jobconfigs: list[JsonObject]
) -> tuple[list[JsonObject], list[JsonObject]]:
    """The templates the jobconfigs name, and the jobconfigs with a ``template`` name added."""
    by_id: dict[int, JsonObject] = {}
    for jc in jobconfigs:
        template_id = jc.get("template_id")
        if template_id is not None and int(template_id) not in by_id:
            by_id[int(template_id)] = await api.template_get(int(template_id))
    named = [
        {**jc, "template": by_id[int(jc["template_id"])]["name"]}
        if jc.get("template_id") is not None
        else jc
        for jc in jobconfigs
    ]
    templates = [{f: t.get(f) for f in TEMPLATE_FIELDS} for t in by_id.values()]
    return named, templates
