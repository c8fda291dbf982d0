"""Export and import of a template with its jobconfigs and their schedules.

The exported document names nothing by id that would not transfer to another server:
packages go by sha256 (upload the same package there first), the template and the
jobconfigs by name, and jobconfigs say nothing of their template (they belong to the
one in the document). Secure values never appear: the jobconfig ``macros`` field holds
plain values only, and the layered macros of the template live in the macros API.

Import creates or updates by name: the template, then each jobconfig (pointed at the
template), then, for a jobconfig whose entry has a ``schedules`` list, exactly those
schedules (matched by name; the others of that jobconfig are deleted). It reports what
it did to each object: ``created``, ``updated`` or ``unchanged`` (``deleted`` for
schedules).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from jobyard.core.errors import Conflict, InvalidInput, NotFound
from jobyard.core.models import JobConfigSpec
from jobyard.core.schedules import Schedule, ScheduleSpec
from jobyard.core.templates import Template, TemplateSpec
from jobyard.service import access, jobconfigs, pools, schedules, templates
from jobyard.service.context import Context, Principal

FORMAT = "jobyard.template/1"
#: Jobconfig fields carried by an export besides name, package and entry point/command.
JOBCONFIG_FIELDS = (
    "description",
    "macros",
    "parameters",
    "max_concurrent",
    "timeout",
    "success_exit_codes",
    "enabled",
    "pool",
    "labels",
)
SCHEDULE_FIELDS = tuple(f for f in asdict(ScheduleSpec()) if f != "name")


@dataclass(frozen=True, slots=True)
class BundleJobConfig:
    """One jobconfig of an import: its spec without ids, its package by sha256."""

    spec: JobConfigSpec
    package_sha256: str | None = None
    schedules: list[ScheduleSpec] | None = None  # None: leave its schedules alone


@dataclass(frozen=True, slots=True)
class Bundle:
    """A template with its jobconfigs, as an import receives it."""

    template: TemplateSpec
    package_sha256: str | None = None
    jobconfigs: list[BundleJobConfig] = field(default_factory=list)


# -- export ---------------------------------------------------------------------------


async def _package_ref(ctx: Context, package_id: int | None) -> dict[str, Any] | None:
    if package_id is None:
        return None
    package = await ctx.store.package_get(package_id)
    return {"sha256": package.sha256, "filename": package.filename}


def _schedule_json(s: Schedule) -> dict[str, Any]:
    out: dict[str, Any] = {"name": s.name}
    for key in SCHEDULE_FIELDS:
        value = getattr(s, key)
        out[key] = value.isoformat() if hasattr(value, "isoformat") else value
    out["misfire_policy"] = s.misfire_policy.value
    return out


async def export(
    ctx: Context, template_id: int, principal: Principal | None = None
) -> dict[str, Any]:
    """The template, its jobconfigs and their schedules as a JSON-ready document.

    With a ``principal`` (an API caller): needs ``view`` on the template, and only the
    jobconfigs it may view are included.
    """
    if principal is None:
        t = await ctx.store.template_get(template_id)
        children = await ctx.store.template_jobconfigs(template_id)
    else:
        t = await templates.get(ctx, principal, template_id)
        children = await templates.jobconfigs_of(ctx, principal, template_id)
    document: dict[str, Any] = {
        "format": FORMAT,
        "template": {
            "name": t.name,
            "description": t.description,
            "package": await _package_ref(ctx, t.package_id),
            "entrypoint": t.entrypoint,
            "command": t.command,
            "labels": dict(t.labels),
        },
        "jobconfigs": [],
    }
    for jc in children:
        item: dict[str, Any] = {
            "name": jc.name,
            "package": await _package_ref(ctx, jc.package_id),
            "entrypoint": jc.entrypoint,
            "command": jc.command,
        }
        item.update({key: getattr(jc, key) for key in JOBCONFIG_FIELDS})
        item["schedules"] = [_schedule_json(s) for s in await ctx.store.schedules_list(jc.id)]
        document["jobconfigs"].append(item)
    return document


# -- import ---------------------------------------------------------------------------


async def _package_id(ctx: Context, sha256: str | None, where: str) -> int | None:
    if sha256 is None:
        return None
    package = await ctx.store.package_get_by_sha256(sha256.lower())
    if package is None:
        raise InvalidInput(
            f"{where}: no package with sha256 {sha256} on this server: upload it first",
            {"field": "package", "sha256": sha256},
        )
    return package.id


def name_taken(kind: str, name: str) -> Conflict:
    """What creating a ``kind`` under a name that exists answers (the store's wording).

    An import meeting an object of that name that the caller may not view answers
    this, never naming its id: the name is the caller's own input.
    """
    return Conflict(f"a {kind} named {name!r} already exists", {"name": name})


async def _import_template(
    ctx: Context, spec: TemplateSpec, owner: str | None, principal: Principal | None
) -> tuple[Template, str]:
    try:
        current = await ctx.store.template_get_by_name(spec.name)
    except NotFound:
        created = await templates.create(ctx, spec, owner=owner, principal=principal)
        return created, "created"
    if principal is not None and not await access.can(ctx, principal, "view", "templates", current):
        raise name_taken("template", spec.name)
    if templates.spec_of(current) == spec:
        if principal is not None:
            await access.require(ctx, principal, "view", "templates", current)
        return current, "unchanged"
    return await templates.replace(ctx, current.id, spec, principal=principal), "updated"


async def _import_jobconfig(
    ctx: Context,
    spec: JobConfigSpec,
    owner: str | None,
    principal: Principal | None,
    with_schedules: bool,
) -> tuple[int, str]:
    try:
        current = await ctx.store.jobconfig_get_by_name(spec.name)
    except NotFound:
        created = await jobconfigs.create(ctx, spec, owner=owner, principal=principal)
        return created.id, "created"
    if principal is not None and not await access.can(
        ctx, principal, "view", "jobconfigs", current
    ):
        raise name_taken("jobconfig", spec.name)
    if jobconfigs.spec_of(current) == spec:
        if principal is not None:
            action = "edit" if with_schedules else "view"
            await access.require(ctx, principal, action, "jobconfigs", current)
        return current.id, "unchanged"
    return (await jobconfigs.replace(ctx, current.id, spec, principal=principal)).id, "updated"


def _same_schedule(current: Schedule, wanted: ScheduleSpec) -> bool:
    have = schedules.spec_of(current)
    if wanted.start_at is None and wanted.interval_minutes is not None:
        have = replace(have, start_at=None)  # the server chose the anchor
    return replace(have, name=None) == replace(wanted, name=None)


async def _import_schedules(
    ctx: Context, jobconfig_id: int, wanted: list[ScheduleSpec], principal: Principal | None
) -> list[dict[str, Any]]:
    existing = {s.name: s for s in await ctx.store.schedules_list(jobconfig_id)}
    report: list[dict[str, Any]] = []
    for spec in wanted:
        current = existing.pop(spec.name or "", None)
        if current is None:
            created = await schedules.create(ctx, jobconfig_id, spec, principal=principal)
            report.append({"name": created.name, "id": created.id, "action": "created"})
        elif _same_schedule(current, spec):
            report.append({"name": current.name, "id": current.id, "action": "unchanged"})
        else:
            await schedules.replace_(ctx, jobconfig_id, current.id, spec, principal=principal)
            report.append({"name": current.name, "id": current.id, "action": "updated"})
    for gone in existing.values():
        await schedules.delete(ctx, jobconfig_id, gone.id, principal=principal)
        report.append({"name": gone.name, "id": gone.id, "action": "deleted"})
    return report


async def import_(
    ctx: Context, bundle: Bundle, *, owner: str | None, principal: Principal | None = None
) -> dict[str, Any]:
    """Create or update the template and its jobconfigs by name; report what changed.

    With a ``principal`` (an API caller), existing objects need ``edit`` to change
    (``view`` to be reported unchanged), and each change is audited.

    Packages are checked before anything is written; a refusal later on (an invalid
    jobconfig, say) leaves what was written before it in place (the report of a second
    import shows it as ``unchanged``). A job's SESSION_ID imports nothing (403).
    """
    if principal is not None:
        access.refuse_job_token(principal, "import templates")
    names = [item.spec.name for item in bundle.jobconfigs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInput(
            f"jobconfig names appear twice: {', '.join(duplicates)}", {"names": duplicates}
        )
    template_package = await _package_id(ctx, bundle.package_sha256, "template")
    packages = [
        await _package_id(ctx, item.package_sha256, f"jobconfig {item.spec.name}")
        for item in bundle.jobconfigs
    ]
    spec = replace(bundle.template, package_id=template_package)
    template, action = await _import_template(ctx, spec, owner, principal)
    report: dict[str, Any] = {
        "template": {"name": template.name, "id": template.id, "action": action},
        "jobconfigs": [],
    }
    for item, package_id in zip(bundle.jobconfigs, packages, strict=True):
        jc_spec = replace(item.spec, package_id=package_id, template_id=template.id)
        with_schedules = item.schedules is not None
        jobconfig_id, jc_action = await _import_jobconfig(
            ctx, jc_spec, owner, principal, with_schedules
        )
        entry: dict[str, Any] = {"name": jc_spec.name, "id": jobconfig_id, "action": jc_action}
        if item.schedules is not None:
            entry["schedules"] = await _import_schedules(
                ctx, jobconfig_id, item.schedules, principal
            )
        report["jobconfigs"].append(entry)
    pairs = [
        (item.spec.name, item.spec.pool, item.spec.labels or bundle.template.labels)
        for item in bundle.jobconfigs
    ]
    report["warnings"] = [asdict(n) for n in await pools.unserved(ctx, pairs)]
    return report
