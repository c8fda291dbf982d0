"""Template use cases: create, read, replace, patch, delete, list, clone, their jobconfigs.

Export and import of a template with its jobconfigs live in
:mod:`jobyard.service.template_transfer`.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from jobyard.core.errors import InvalidInput, NotFound
from jobyard.core.models import JobConfig, Page
from jobyard.core.templates import CloneResult, Template, TemplateSpec
from jobyard.core.validation import check_command, check_name, check_patch
from jobyard.service.context import Context

SPEC_FIELDS: frozenset[str] = frozenset(f.name for f in fields(TemplateSpec))
#: Fields that may be cleared with null; the others always hold a value.
NULLABLE_FIELDS: frozenset[str] = frozenset({"package_id", "entrypoint", "command"})
#: What the copies of a template's jobconfigs are called by default when cloning:
#: ``<new template name>.<jobconfig name>`` (unique per clone, and names stay valid).
DEFAULT_PREFIX_SEPARATOR = "."


async def _validate(ctx: Context, spec: TemplateSpec) -> None:
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


async def create(ctx: Context, spec: TemplateSpec, *, owner: str | None = None) -> Template:
    """Create a template; ``owner`` is the creating user."""
    await _validate(ctx, spec)
    return await ctx.store.template_insert(spec, owner=owner)


async def get(ctx: Context, template_id: int) -> Template:
    """Read one template."""
    return await ctx.store.template_get(template_id)


async def list_(
    ctx: Context, *, name: str | None, cursor: str | None, limit: int
) -> Page[Template]:
    """List templates, or find one by exact name (a page of zero or one)."""
    if name is not None:
        try:
            return Page(items=[await ctx.store.template_get_by_name(name)], next_cursor=None)
        except NotFound:
            return Page(items=[], next_cursor=None)
    return await ctx.store.templates_list(cursor=cursor, limit=limit)


def spec_of(t: Template) -> TemplateSpec:
    """The writable part of a stored template."""
    return TemplateSpec(**{k: v for k, v in asdict(t).items() if k in SPEC_FIELDS})


async def replace(ctx: Context, template_id: int, spec: TemplateSpec) -> Template:
    """PUT: every writable field is replaced (unset ones take their defaults)."""
    await ctx.store.template_get(template_id)
    await _validate(ctx, spec)
    return await ctx.store.template_update(template_id, asdict(spec))


async def patch(ctx: Context, template_id: int, changes: dict[str, Any]) -> Template:
    """PATCH: only the given fields change; the result must still be valid."""
    check_patch(changes, SPEC_FIELDS, NULLABLE_FIELDS)
    current = await ctx.store.template_get(template_id)
    merged = TemplateSpec(**{**asdict(spec_of(current)), **changes})
    await _validate(ctx, merged)
    return await ctx.store.template_update(template_id, changes)


async def delete(ctx: Context, template_id: int) -> None:
    """Delete a template (and its macros); 409 while jobconfigs name it."""
    await ctx.store.template_delete(template_id)


async def jobconfigs_of(ctx: Context, template_id: int) -> list[JobConfig]:
    """The jobconfigs that name this template."""
    return await ctx.store.template_jobconfigs(template_id)


async def clone(
    ctx: Context,
    template_id: int,
    *,
    name: str,
    owner: str | None,
    with_jobconfigs: bool = False,
    jobconfig_prefix: str | None = None,
) -> CloneResult:
    """Copy a template; with ``with_jobconfigs`` also its jobconfigs, renamed.

    A copied jobconfig is called ``jobconfig_prefix + its name``; the default prefix is
    the new template's name and a dot (``acme`` cloned as ``globex``: ``etl`` becomes
    ``globex.etl``). Copies name the new template, keep every other field, get no
    schedules, and are owned by the caller. All or nothing: a name clash is a 409.
    """
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
    return await ctx.store.template_clone(
        template_id, name=name, owner=owner, jobconfig_prefix=prefix
    )
