"""Template use cases: create, read, replace, patch, delete, list, clone, their jobconfigs.

Export and import of a template with its jobconfigs live in
:mod:`jobyard.service.template_transfer`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, fields
from typing import Any

from jobyard.core.cursors import decode_cursor
from jobyard.core.errors import Forbidden, InvalidInput, NotFound
from jobyard.core.models import JobConfig, Page
from jobyard.core.templates import CloneResult, Template, TemplateSpec
from jobyard.core.validation import NAME_RE, check_command, check_name, check_patch
from jobyard.service import access, auditlog, pools
from jobyard.service.context import Context, Principal

SPEC_FIELDS: frozenset[str] = frozenset(f.name for f in fields(TemplateSpec))
#: Fields that may be cleared with null; the others always hold a value.
NULLABLE_FIELDS: frozenset[str] = frozenset({"package_id", "entrypoint", "command"})
#: What the copies of a template's jobconfigs are called by default when cloning:
#: ``<new template name>.<jobconfig name>`` (unique per clone, and names stay valid).
DEFAULT_PREFIX_SEPARATOR = "."


async def validate(ctx: Context, spec: TemplateSpec) -> None:
    """A template may hold a package (with or without an entry point) or a command, or
    nothing to run at all (then its jobconfigs bring their own and share only macros)."""
    check_name(spec.name)
    check_command(spec.command)
    if spec.entrypoint is not None and spec.command is not None:
        raise InvalidInput(
            "give either 'entrypoint' or 'command', not both", {"field": "entrypoint"}
        )
    if spec.package_id is None:
        if spec.entrypoint is not None:
            raise InvalidInput(
                "'entrypoint' needs a 'package_id' whose manifest defines it",
                {"field": "package_id"},
            )
        return
    try:
        package = await ctx.store.package_get(spec.package_id)
    except NotFound:
        raise InvalidInput(
            f"package {spec.package_id} does not exist", {"field": "package_id"}
        ) from None
    if spec.entrypoint is not None and spec.entrypoint not in package.entrypoints:
        known = ", ".join(sorted(package.entrypoints)) or "none (no jobyard.toml manifest)"
        raise InvalidInput(
            f"package {spec.package_id} has no entry point {spec.entrypoint!r}; it has: {known}",
            {"field": "entrypoint", "available": sorted(package.entrypoints)},
        )


async def _audit(
    ctx: Context,
    principal: Principal | None,
    verb: str,
    template_id: int,
    details: dict[str, Any] | None,
    remote_addr: str | None,
) -> None:
    if principal is not None:
        await auditlog.record(
            ctx, principal, f"template.{verb}", "template", template_id, details, remote_addr
        )


async def create(
    ctx: Context,
    spec: TemplateSpec,
    *,
    owner: str | None = None,
    principal: Principal | None = None,
    remote_addr: str | None = None,
) -> Template:
    """Create a template; ``owner`` is the creating user (audited with a ``principal``)
    and its first definer. A job's SESSION_ID creates no template (403)."""
    if principal is not None:
        access.refuse_job_token(principal, "create templates")
    await validate(ctx, spec)
    created = await ctx.store.template_insert(spec, owner=owner)
    await _audit(ctx, principal, "create", created.id, {"name": created.name}, remote_addr)
    return created


async def get(
    ctx: Context, principal: Principal, template_id: int, action: str = "view"
) -> Template:
    """Read one template the caller may ``action`` (404 if it may not even view it)."""
    template = await ctx.store.template_get(template_id)
    await access.require(ctx, principal, action, "templates", template)
    return template


async def list_(
    ctx: Context, principal: Principal, *, name: str | None, cursor: str | None, limit: int
) -> Page[Template]:
    """List the templates the caller may view, or find one by exact name.

    A page may hold fewer than ``limit`` items; ``next_cursor`` says whether more follow.
    """
    decode_cursor(cursor)  # a bad cursor is refused also where it is not used
    visible = await access.visible_template_filter(ctx, principal)
    if name is not None:
        if not NAME_RE.match(name):
            return Page(items=[], next_cursor=None)
        try:
            found = await ctx.store.template_get_by_name(name)
        except NotFound:
            return Page(items=[], next_cursor=None)
        if visible is not None and not visible.admits(found.id, found.owner):
            return Page(items=[], next_cursor=None)
        return Page(items=[found], next_cursor=None)
    page = await ctx.store.templates_list(cursor=cursor, limit=limit)
    if visible is None:
        return page
    items = [t for t in page.items if visible.admits(t.id, t.owner)]
    return Page(items=items, next_cursor=page.next_cursor)


def spec_of(t: Template) -> TemplateSpec:
    """The writable part of a stored template."""
    return TemplateSpec(**{k: v for k, v in asdict(t).items() if k in SPEC_FIELDS})


async def replace(
    ctx: Context,
    template_id: int,
    spec: TemplateSpec,
    *,
    principal: Principal | None = None,
    remote_addr: str | None = None,
) -> Template:
    """PUT: every writable field is replaced (unset ones take their defaults).

    With a ``principal`` (an API caller): needs ``edit``, and is audited. When what its
    jobconfigs run really changes, the caller becomes its definer.
    """
    if principal is not None:
        access.refuse_job_token(principal, "change templates")
    current = await ctx.store.template_get(template_id)
    if principal is not None:
        await access.require(ctx, principal, "edit", "templates", current)
    await validate(ctx, spec)
    updated = await ctx.store.template_update(
        template_id, asdict(spec), changed_by=None if principal is None else principal.name
    )
    details = {"fields": sorted(SPEC_FIELDS)}
    await _audit(ctx, principal, "update", template_id, details, remote_addr)
    return updated


async def patch(
    ctx: Context,
    principal: Principal,
    template_id: int,
    changes: dict[str, Any],
    *,
    remote_addr: str | None = None,
) -> Template:
    """PATCH: only the given fields change; the result must still be valid (``edit``)."""
    access.refuse_job_token(principal, "change templates")
    current = await get(ctx, principal, template_id, "edit")
    check_patch(changes, SPEC_FIELDS, NULLABLE_FIELDS)
    merged = TemplateSpec(**{**asdict(spec_of(current)), **changes})
    await validate(ctx, merged)
    updated = await ctx.store.template_update(template_id, changes, changed_by=principal.name)
    await _audit(ctx, principal, "update", template_id, {"fields": sorted(changes)}, remote_addr)
    return updated


async def delete(
    ctx: Context, principal: Principal, template_id: int, *, remote_addr: str | None = None
) -> None:
    """Delete a template (and its macros); 409 while jobconfigs name it (``delete``)."""
    access.refuse_job_token(principal, "delete templates")
    current = await get(ctx, principal, template_id, "delete")
    await ctx.store.template_delete(template_id)
    await _audit(ctx, principal, "delete", template_id, {"name": current.name}, remote_addr)


async def jobconfigs_of(ctx: Context, principal: Principal, template_id: int) -> list[JobConfig]:
    """The jobconfigs that name this template (those the caller may view)."""
    await get(ctx, principal, template_id)
    children = await ctx.store.template_jobconfigs(template_id)
    visible = await access.visible_jobconfig_filter(ctx, principal)
    if visible is None:
        return children
    return [j for j in children if visible.admits(j.id, j.owner, j.template_id)]


async def require_all_children(ctx: Context, principal: Principal, template_id: int) -> None:
    """Refuse (403) unless the caller may view every jobconfig of the template.

    Copying or exporting a template with its jobconfigs must not reveal hidden ones.
    """
    visible = await access.visible_jobconfig_filter(ctx, principal)
    if visible is None:
        return
    for jc in await ctx.store.template_jobconfigs(template_id):
        if not visible.admits(jc.id, jc.owner, jc.template_id):
            raise Forbidden(
                f"template {template_id} has jobconfigs you may not view: "
                "you may not copy or export it with its jobconfigs",
                {"template_id": template_id},
            )


async def clone(
    ctx: Context,
    principal: Principal,
    template_id: int,
    *,
    name: str,
    owner: str | None,
    with_jobconfigs: bool = False,
    jobconfig_prefix: str | None = None,
    remote_addr: str | None = None,
) -> CloneResult:
    """Copy a template; with ``with_jobconfigs`` also its jobconfigs, renamed.

    A copied jobconfig is called ``jobconfig_prefix + its name``; the default prefix is
    the new template's name and a dot (``acme`` cloned as ``globex``: ``etl`` becomes
    ``globex.etl``). Copies name the new template, keep every other field, get no
    schedules, and are owned by the caller. All or nothing: a name clash is a 409.
    Needs ``view`` on the template (and, with jobconfigs, on each of them); audited.
    A job's SESSION_ID clones nothing (403): it creates no definitions.
    """
    access.refuse_job_token(principal, "clone templates")
    await get(ctx, principal, template_id)
    if with_jobconfigs:
        await require_all_children(ctx, principal, template_id)
    check_name(name)
    prefix = None
    if with_jobconfigs:
        prefix = jobconfig_prefix
        if prefix is None:
            prefix = name + DEFAULT_PREFIX_SEPARATOR
        for jc in await ctx.store.template_jobconfigs(template_id):
            check_name(prefix + jc.name, "jobconfig_prefix")
    elif jobconfig_prefix is not None:
        raise InvalidInput(
            "'jobconfig_prefix' only applies with 'with_jobconfigs': true",
            {"field": "jobconfig_prefix"},
        )
    result = await ctx.store.template_clone(
        template_id, name=name, owner=owner, jobconfig_prefix=prefix
    )
    details = {"clone_of": template_id, "name": name, "with_jobconfigs": with_jobconfigs}
    await _audit(ctx, principal, "clone", result.template.id, details, remote_addr)
    pairs = [(jc.name, jc.pool, jc.labels or result.template.labels) for jc in result.jobconfigs]
    return dataclasses.replace(result, warnings=await pools.unserved(ctx, pairs))
