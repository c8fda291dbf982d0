"""``jobyard export -o FILE`` over an apply file: keep the file's package names and paths.

The server knows a package by its bytes (sha256), not by the folder it came from. When
the file written to already declares packages by ``path``, each exported package whose
bytes are those of such a path keeps that name and path, so exporting over the file the
jobconfigs were applied from gives it back as written (``etl: {path: ./etl}``), and
applying it stays a no-op while the folder is unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from jobyard.cli.archive import prepared_package
from jobyard.cli.context import CliFailure
from jobyard.service.apply.document import SpecError, load_apply_file
from jobyard.service.apply.exportform import dump_yaml


def _paths_by_sha256(path: Path) -> dict[str, tuple[str, str]]:
    """sha256 -> (name, path as written) of the packages the file declares by path."""
    try:
        spec = load_apply_file(path, check_paths=False)
    except SpecError:
        return {}  # not an apply file (or not a valid one): nothing to keep
    found: dict[str, tuple[str, str]] = {}
    for decl in spec.packages.values():
        if decl.path is None or decl.given_path is None or not decl.path.exists():
            continue
        try:
            with prepared_package(decl.path) as prepared:
                found.setdefault(prepared.sha256, (decl.name, decl.given_path))
        except CliFailure:
            continue
    return found


def keep_package_paths(text: str, existing: Path) -> str:
    """The exported document with the packages of ``existing`` back by name and path."""
    if not existing.is_file():
        return text
    known = _paths_by_sha256(existing)
    document: dict[str, Any] = yaml.safe_load(text) or {}
    packages: dict[str, Any] = document.get("packages") or {}
    if not known or not packages:
        return text
    renamed: dict[str, str] = {}
    kept: dict[str, Any] = {}
    taken = set(packages)
    for name, entry in packages.items():
        match = known.get(str((entry or {}).get("sha256")))
        if match is None or (match[0] != name and match[0] in taken):
            kept[name] = entry
            continue
        new_name, given = match
        renamed[name] = new_name
        taken.add(new_name)
        kept[new_name] = {"path": given}
    if not renamed:
        return text
    document["packages"] = kept
    for section in ("templates", "jobconfigs"):
        for item in document.get(section) or []:
            if item.get("package") in renamed:
                item["package"] = renamed[item["package"]]
    return dump_yaml(document)
