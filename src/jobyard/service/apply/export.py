"""Export: the apply document of the jobconfigs a caller may view (``GET /api/v1/export``).

Applying the export is a no-op: every field is written as the planner reads it back,
packages by name with their sha256 (``package: NAME`` and ``packages: {NAME: {sha256}}``),
templates by name when the caller may view them (else by ``template_id``).
"""

from __future__ import annotations

import re
from typing import Any

from jobyard.core.errors import NotFound
from jobyard.core.models import JobConfig
from jobyard.core.validation import NAME_RE
from jobyard.service import jobconfigs, schedules, templates
from jobyard.service.apply.exportform import export_document
from jobyard.service.apply.run import jobconfig_view, schedule_view, template_view
from jobyard.service.context import Context, Principal

_ARCHIVE_SUFFIX = re.compile(r"\.(zip|jar|tar|tgz|tar\.gz|tar\.bz2|tar\.xz|tbz2|txz)$", re.I)


def package_name(filename: str, taken: set[str]) -> str:
    """A document name for a package: its file name without the archive suffix, made a
    valid name, and unique among ``taken`` (``-2``, ``-3``, … appended)."""
    stem = _ARCHIVE_SUFFIX.sub("", filename)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).lstrip("._-")[:120] or "package"
    name, n = stem, 1
    while name in taken or not NAME_RE.match(name):
        n += 1
        name = f"{stem}-{n}"
    taken.add(name)
    return name


async def _visible_jobconfigs(
    ctx: Context, principal: Principal, names: list[str]
) -> list[JobConfig]:
    if names:
        found: list[JobConfig] = []
        for name in names:
            page = await jobconfigs.list_(ctx, principal, name=name, cursor=None, limit=1)
            if not page.items:
                raise NotFound(f"no jobconfig named {name!r}", {"name": name})
            found.append(page.items[0])
        return found
    everything: list[JobConfig] = []
    cursor: str | None = None
    while True:
        page = await jobconfigs.list_(ctx, principal, name=None, cursor=cursor, limit=500)
        everything.extend(page.items)
        if page.next_cursor is None:
            return everything
        cursor = page.next_cursor


async def export(ctx: Context, principal: Principal, names: list[str]) -> dict[str, Any]:
    """The document of the named jobconfigs (all the caller may view when none), with
    their schedules, the templates they name and the packages they use."""
    chosen = await _visible_jobconfigs(ctx, principal, names)
    items: list[dict[str, Any]] = []
    named: dict[int, dict[str, Any] | None] = {}
    for jc in chosen:
        item = jobconfig_view(jc)
        item["schedules"] = [schedule_view(s) for s in await schedules.list_(ctx, principal, jc.id)]
        if jc.template_id is not None:
            if jc.template_id not in named:
                try:
                    found = await templates.get(ctx, principal, jc.template_id)
                    named[jc.template_id] = template_view(found)
                except NotFound:
                    named[jc.template_id] = None  # not viewable: stays a template_id
            shown = named[jc.template_id]
            if shown is not None:
                item["template"] = shown["name"]
        items.append(item)
    exported_templates = [t for t in named.values() if t is not None]
    package_ids = sorted(
        {
            int(x["package_id"])
            for x in [*items, *exported_templates]
            if x.get("package_id") is not None
        }
    )
    taken: set[str] = set()
    packages: dict[int, tuple[str, str]] = {}
    for package_id in package_ids:
        try:
            package = await ctx.store.package_get(package_id)
        except NotFound:
            continue
        packages[package_id] = (package_name(package.filename, taken), package.sha256)
    return export_document(items, exported_templates, packages)
