"""Jobconfig use cases: create, read, replace, patch, delete, list."""

from __future__ import annotations

from dataclasses import asdict, fields
from dataclasses import replace as with_fields
from typing import Any

from jobyard.core.cursors import decode_cursor
from jobyard.core.errors import InvalidInput, NotFound
from jobyard.core.macros import check_parameter_names
from jobyard.core.models import JobConfig, JobConfigSpec, Package, Page
from jobyard.core.templates import RunTarget, effective_target
from jobyard.core.validation import (
    NAME_RE,
    check_command,
    check_exit_codes,
    check_macros,
    check_name,
    check_patch,
)
from jobyard.service import access, auditlog
from jobyard.service.context import Context, Principal

SPEC_FIELDS: frozenset[str] = frozenset(f.name for f in fields(JobConfigSpec))
#: Fields that may be cleared with null; the others always hold a value.
NULLABLE_FIELDS: frozenset[str] = frozenset(
    {
        "package_id",
        "entrypoint",
        "command",
        "template_id",
        "retention_max_age_days",
        "retention_max_jobs",
    }
)


async def check_run_target(
    ctx: Context,
    package_id: int | None,
    entrypoint: str | None,
    command: list[str] | None,
    template_id: int | None = None,
) -> Package | None:
    """Check that (package, entrypoint, command) names something runnable.

    Allowed: a command alone; a package with an entry point from its manifest; a package
    with a command run inside it; a single-file package alone (the file is the program).
    With a template, what the jobconfig does not set itself comes from the template
    (:func:`jobyard.core.templates.effective_target`) and the result is checked.
    """
    check_command(command)
    if entrypoint is not None and command is not None:
        raise InvalidInput(
            "give either 'entrypoint' or 'command', not both", {"field": "entrypoint"}
        )
    if template_id is not None:
        try:
            template = await ctx.store.template_get(template_id)
        except NotFound:
            raise unknown_template(template_id) from None
        inherited = RunTarget(template.package_id, template.entrypoint, template.command)
        own = RunTarget(package_id, entrypoint, command)
        target = effective_target(own, inherited)
        package_id, entrypoint, command = target.package_id, target.entrypoint, target.command
    if package_id is None:
        if entrypoint is not None:
            raise InvalidInput(
                "'entrypoint' needs a 'package_id' whose manifest defines it",
                {"field": "package_id"},
            )
        if command is None:
            raise InvalidInput(
                "nothing to run: give 'command', or 'package_id' (with 'entrypoint')",
                {"field": "command"},
            )
        return None
    try:
        package = await ctx.store.package_get(package_id)
    except NotFound:
        raise InvalidInput(
            f"package {package_id} does not exist", {"field": "package_id"}
        ) from None
    if entrypoint is not None and entrypoint not in package.entrypoints:
        known = ", ".join(sorted(package.entrypoints)) or "none (no jobyard.toml manifest)"
        raise InvalidInput(
            f"package {package_id} has no entry point {entrypoint!r}; it has: {known}",
            {"field": "entrypoint", "available": sorted(package.entrypoints)},
        )
    if entrypoint is None and command is None and package.kind != "file":
        if len(package.entrypoints) == 1:
            return package
        known = ", ".join(sorted(package.entrypoints)) or "none"
        raise InvalidInput(
            f"package {package_id} is an archive: name an 'entrypoint' (available: {known}) "
            "or give a 'command'",
            {"field": "entrypoint"},
        )
    return package


async def _validate(ctx: Context, spec: JobConfigSpec) -> JobConfigSpec:
    """Check a whole spec (422 saying what to fix); returns it with ``parameters`` sorted."""
    spec = check_spec(spec)
    await check_run_target(ctx, spec.package_id, spec.entrypoint, spec.command, spec.template_id)
    return spec


def check_spec(spec: JobConfigSpec) -> JobConfigSpec:
    """The checks of a spec that need no database (all but what it runs); returns it
    with ``parameters`` sorted. Apply runs these on a jobconfig whose template it
    creates in the same transaction, and checks what it runs against the file."""
    check_name(spec.name)
    check_macros(spec.macros)
    spec = with_fields(spec, parameters=check_parameter_names(spec.parameters))
    check_exit_codes(spec.success_exit_codes)
    check_name(spec.pool, "pool")
    if spec.max_concurrent < 0:
        raise InvalidInput(
            "max_concurrent must be ≥ 0 (0 = unlimited)", {"field": "max_concurrent"}
        )
    if spec.timeout < 0:
        raise InvalidInput("timeout must be ≥ 0 minutes (0 = none)", {"field": "timeout"})
    _check_retention(spec)
    return spec


def _check_retention(spec: JobConfigSpec) -> None:
    """Retention overrides are numbers ≥ 0 (an integer for ``max_jobs``) or null."""
    age, count = spec.retention_max_age_days, spec.retention_max_jobs
    if age is not None and (
        isinstance(age, bool) or not isinstance(age, int | float) or not 0 <= age < float("inf")
    ):
        raise InvalidInput(
            "retention.max_age_days must be a number of days ≥ 0 (0 = keep forever) or null "
            "(the global setting)",
            {"field": "retention.max_age_days"},
        )
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise InvalidInput(
            "retention.max_jobs must be an integer ≥ 0 (0 = no limit) or null (the global setting)",
            {"field": "retention.max_jobs"},
        )


def unknown_template(template_id: int) -> InvalidInput:
    """What naming a template that does not exist, or that the caller may not view, answers.

    One answer for both, so that template ids cannot be probed through jobconfigs.
    """
    return InvalidInput(f"template {template_id} does not exist", {"field": "template_id"})


async def _require_template_view(
    ctx: Context, principal: Principal | None, template_id: int | None
) -> None:
    """A caller may only name a template it may view (else the answer of a missing one)."""
    if principal is None or template_id is None:
        return
    try:
        template = await ctx.store.template_get(template_id)
    except NotFound:
        return  # _validate reports the missing template
    if not await access.can(ctx, principal, "view", "templates", template):
        raise unknown_template(template_id)


async def create(
    ctx: Context,
    spec: JobConfigSpec,
    *,
    owner: str | None = None,
    principal: Principal | None = None,
    remote_addr: str | None = None,
) -> JobConfig:
    """Create a jobconfig after checking that it names something runnable.

    ``owner`` (the creating user) is who its scheduled jobs are submitted by, and its
    first definer. With a ``principal`` (an API caller) the template must be viewable
    by it and the creation is audited; without one (internal callers) neither happens.
    A job's SESSION_ID creates no jobconfig (403).
    """
    if principal is not None:
        access.refuse_job_token(principal, "create jobconfigs")
    await _require_template_view(ctx, principal, spec.template_id)
    spec = await _validate(ctx, spec)
    created = await ctx.store.jobconfig_insert(spec, owner=owner)
    if principal is not None:
        details = {"name": created.name}
        await auditlog.record(
            ctx, principal, "jobconfig.create", "jobconfig", created.id, details, remote_addr
        )
    return created


async def get(
    ctx: Context, principal: Principal, jobconfig_id: int, action: str = "view"
) -> JobConfig:
    """Read one jobconfig the caller may ``action`` (404 if it may not even view it)."""
    jobconfig = await ctx.store.jobconfig_get(jobconfig_id)
    await access.require(ctx, principal, action, "jobconfigs", jobconfig)
    return jobconfig


async def list_(
    ctx: Context, principal: Principal, *, name: str | None, cursor: str | None, limit: int
) -> Page[JobConfig]:
    """List the jobconfigs the caller may view, or find one by exact name.

    A page may hold fewer than ``limit`` items (those the caller may not view are
    left out); ``next_cursor`` still says whether more follow.
    """
    decode_cursor(cursor)  # a bad cursor is refused also where it is not used
    visible = await access.visible_jobconfig_filter(ctx, principal)
    if name is not None:
        if not NAME_RE.match(name):
            return Page(items=[], next_cursor=None)
        try:
            found = await ctx.store.jobconfig_get_by_name(name)
        except NotFound:
            return Page(items=[], next_cursor=None)
        if visible is not None and not visible.admits(found.id, found.owner, found.template_id):
            return Page(items=[], next_cursor=None)
        return Page(items=[found], next_cursor=None)
    page = await ctx.store.jobconfigs_list(cursor=cursor, limit=limit)
    if visible is None:
        return page
    items = [j for j in page.items if visible.admits(j.id, j.owner, j.template_id)]
    return Page(items=items, next_cursor=page.next_cursor)


def spec_of(jc: JobConfig) -> JobConfigSpec:
    """The writable part of a stored jobconfig."""
    return JobConfigSpec(**{k: v for k, v in asdict(jc).items() if k in SPEC_FIELDS})


async def replace(
    ctx: Context,
    jobconfig_id: int,
    spec: JobConfigSpec,
    *,
    principal: Principal | None = None,
    remote_addr: str | None = None,
) -> JobConfig:
    """PUT: every writable field is replaced (unset ones take their defaults).

    With a ``principal`` (an API caller): needs ``edit``, and is audited. When what it
    runs really changes, the caller becomes its definer.
    """
    if principal is not None:
        access.refuse_job_token(principal, "change jobconfigs")
    current = await ctx.store.jobconfig_get(jobconfig_id)
    if principal is not None:
        await access.require(ctx, principal, "edit", "jobconfigs", current)
        if spec.template_id != current.template_id:
            await _require_template_view(ctx, principal, spec.template_id)
    spec = await _validate(ctx, spec)
    updated = await ctx.store.jobconfig_update(
        jobconfig_id, asdict(spec), changed_by=None if principal is None else principal.name
    )
    if principal is not None:
        details = {"fields": sorted(SPEC_FIELDS)}
        await auditlog.record(
            ctx, principal, "jobconfig.update", "jobconfig", jobconfig_id, details, remote_addr
        )
    return updated


async def patch(
    ctx: Context,
    principal: Principal,
    jobconfig_id: int,
    changes: dict[str, Any],
    *,
    remote_addr: str | None = None,
) -> JobConfig:
    """PATCH: only the given fields change; the result must still be valid (``edit``).

    When what it runs really changes, the caller becomes its definer.
    """
    access.refuse_job_token(principal, "change jobconfigs")
    current = await get(ctx, principal, jobconfig_id, "edit")
    check_patch(changes, SPEC_FIELDS, NULLABLE_FIELDS)
    merged = JobConfigSpec(**{**asdict(spec_of(current)), **changes})
    if merged.template_id != current.template_id:
        await _require_template_view(ctx, principal, merged.template_id)
    merged = await _validate(ctx, merged)
    if "parameters" in changes:
        changes = {**changes, "parameters": merged.parameters}
    updated = await ctx.store.jobconfig_update(jobconfig_id, changes, changed_by=principal.name)
    details = {"fields": sorted(changes)}
    await auditlog.record(
        ctx, principal, "jobconfig.update", "jobconfig", jobconfig_id, details, remote_addr
    )
    return updated


async def delete(
    ctx: Context, principal: Principal, jobconfig_id: int, *, remote_addr: str | None = None
) -> None:
    """Delete a jobconfig whose jobs have all ended, with their history and files.

    Its jobs' logs, outputs and payloads go with it, and so do the packages it and
    its jobs used when nothing else uses them (no blob is left behind).
    """
    access.refuse_job_token(principal, "delete jobconfigs")
    current = await get(ctx, principal, jobconfig_id, "delete")
    removed = await ctx.store.jobconfig_delete(jobconfig_id)
    await ctx.retention.remove_jobconfig_leftovers(removed)
    details = {"name": current.name}
    await auditlog.record(
        ctx, principal, "jobconfig.delete", "jobconfig", jobconfig_id, details, remote_addr
    )
