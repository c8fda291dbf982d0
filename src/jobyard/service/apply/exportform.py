"""The export form of apply documents: what the server holds, written so that applying
it back is a no-op (defaults and computed fields left out, packages by name)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from jobyard.service.apply.document import RETRY_DEFAULTS, SPEC_FIELDS, full_retention
from jobyard.service.apply.schedulespec import export_schedule
from jobyard.service.apply.templatespec import export_templates


class _ExportDumper(yaml.SafeDumper):
    """Block style for structure, flow style (``[sh, -c, ...]``) for short scalar lists."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(not isinstance(v, list | dict) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_ExportDumper.add_representer(list, _represent_list)


def export_document(
    jobconfigs: Iterable[Mapping[str, Any]],
    templates: Iterable[Mapping[str, Any]] = (),
    packages: Mapping[int, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """The apply-file form of jobconfigs as the API returns them.

    A jobconfig's ``schedules`` (a list the caller adds to the API object) are written
    when there are any; its ``template`` (a name the caller adds) replaces ``template_id``,
    and ``templates`` (as the API returns them) come first. ``packages`` (id -> name and
    sha256) writes those packages by name (``package: NAME`` and a ``packages`` section
    giving each one's sha256); a package not in it stays a ``package_id``.
    """
    packages = packages or {}
    document: dict[str, Any] = {}
    used: dict[str, dict[str, str]] = {}

    def by_name(item: dict[str, Any]) -> dict[str, Any]:
        package_id = item.get("package_id")
        if not isinstance(package_id, int) or package_id not in packages:
            return item
        name, sha256 = packages[package_id]
        used[name] = {"sha256": sha256}
        return {
            ("package" if k == "package_id" else k): (name if k == "package_id" else v)
            for k, v in item.items()
        }

    exported_templates = [by_name(t) for t in export_templates(templates)]
    items: list[dict[str, Any]] = []
    for jc in jobconfigs:
        item: dict[str, Any] = {}
        for f in SPEC_FIELDS:
            value = jc.get(f)
            if value is None or (f in ("parameters", "labels") and not value):
                continue
            if f in RETRY_DEFAULTS and value == RETRY_DEFAULTS[f]:
                continue  # the default policy: a file without the field means the same
            if f == "retention":
                value = {k: v for k, v in full_retention(value).items() if v is not None}
                if not value:
                    continue
            if f == "template_id" and jc.get("template"):
                f, value = "template", jc["template"]
            item[f] = dict(value) if isinstance(value, Mapping) else value
        schedules = jc.get("schedules")
        if schedules:
            item["schedules"] = [export_schedule(s) for s in schedules]
        items.append(by_name(item))
    if used:
        document["packages"] = dict(sorted(used.items()))
    if exported_templates:
        document["templates"] = exported_templates
    document["jobconfigs"] = items
    return document


def dump_yaml(document: Mapping[str, Any]) -> str:
    """An apply document as YAML text (block style, short scalar lists in flow style)."""
    return yaml.dump(
        dict(document),
        Dumper=_ExportDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )


def dump_export(
    jobconfigs: Iterable[Mapping[str, Any]], templates: Iterable[Mapping[str, Any]] = ()
) -> str:
    """YAML text that ``jobyard apply`` reads back as exactly these jobconfigs (and templates)."""
    return dump_yaml(export_document(jobconfigs, templates))
