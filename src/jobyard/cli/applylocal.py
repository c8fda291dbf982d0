"""Apply and export against a server without ``/api/v1/apply`` (an older jobyard).

Such a server has only the per-object routes, so the plan is computed here (with the
planner the server uses, :mod:`jobyard.service.apply.plan`) from what the API shows, and
written object by object: a jobconfig the server refuses is reported as failed (its own
writes of this run put back, best effort) and the others still go ahead. A server with
``/api/v1/apply`` plans and applies the document itself (:mod:`jobyard.cli.apply`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from jobyard.cli.archive import prepared_package
from jobyard.cli.render import entrypoint_names
from jobyard.cli.templateapply import (
    TemplateRef,
    apply_template,
    plan_templates,
    server_templates,
    template_refs,
    templates_for_export,
)
from jobyard.client import ApiClient, ApiError, JsonObject, collect_all
from jobyard.service.apply.document import SPEC_FIELDS, ApplyFile, JobConfigDecl, PackageDecl
from jobyard.service.apply.plan import (
    Action,
    PendingPackage,
    PlanItem,
    SchedulePlanItem,
    compute_plan,
    plan_schedules,
)
from jobyard.service.apply.report import ApplyReport, PackageResult


async def _package_for(api: ApiClient, decl: PackageDecl, *, dry_run: bool) -> PackageResult:
    if decl.path is None:
        return await _package_by_sha256(api, decl)
    with prepared_package(decl.path) as prepared:
        if not dry_run:
            answer = await api.package_upload(prepared.upload)
            return PackageResult(
                decl.name,
                str(answer.get("sha256") or prepared.sha256),
                int(answer["id"]),
                entrypoint_names(answer),
                "pushed",
            )
    known = await collect_all(lambda cursor: api.packages_list(cursor=cursor, limit=100))
    for package in known:
        if package.get("sha256") == prepared.sha256:
            return PackageResult(
                decl.name, prepared.sha256, int(package["id"]), entrypoint_names(package), "exists"
            )
    pending = PendingPackage(decl.name, prepared.sha256)
    return PackageResult(decl.name, prepared.sha256, pending, [], "new")


async def _package_by_sha256(api: ApiClient, decl: PackageDecl) -> PackageResult:
    """A package the document gives by sha256 only: it must be on the server already."""
    known = await collect_all(lambda cursor: api.packages_list(cursor=cursor, limit=100))
    for package in known:
        if package.get("sha256") == decl.sha256:
            ids = entrypoint_names(package)
            return PackageResult(decl.name, str(decl.sha256), int(package["id"]), ids, "exists")
    raise ApiError(
        422,
        "invalid_document",
        f"package {decl.name!r}: no package with sha256 {str(decl.sha256)[:12]}… on the "
        "server: give its `path` so that apply pushes it",
    )


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
