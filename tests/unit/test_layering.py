"""The layers of docs/architecture.md, checked on the source: arrows point down only.

Every ``import`` of ``jobyard`` code in ``src/jobyard`` (at module level, in functions,
under ``TYPE_CHECKING``) is parsed with :mod:`ast` and checked against what its layer may
import. A new top-level package or module needs a rule here: decide where it sits.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import jobyard

SRC = Path(jobyard.__file__).parent

CLIENT = {"client", "client_admin", "client_types"}
#: What each top-level package or module of jobyard may import of jobyard (itself always).
ALLOWED: dict[str, set[str]] = {
    "__init__": set(),
    "core": set(),
    "settings": {"core"},
    "store": {"core"},
    "blobs": {"core"},
    "worker": {"core", "settings"},
    "service": {"core", "store", "blobs", "settings"},
    "engine": {"core", "store", "blobs", "settings", "worker"},
    # ``api.app`` is where the server's application is put together: it mounts the
    # console, and the authentication middleware leaves the console's paths to it.
    "api": {"core", "service", "settings", "web"},
    # The console is an interface like the API: it calls the same use cases.
    "web": {"core", "service", "settings"},
    "examples": {"core", "service"},
    "runtime": {"core", "store", "blobs", "settings", "service", "engine", "worker", "examples"},
    "server": {"core", "settings", "api", "runtime"},
    "client": CLIENT,
    "client_admin": CLIENT,
    "client_types": CLIENT,
    # ``jobyard up`` and ``jobyard keys`` run the server or open the store themselves,
    # ``jobyard worker`` runs a remote worker (over HTTP, with no store); every other
    # command speaks HTTP through the client.
    "cli": {"core", "settings", "server", "service", "store", "worker", *CLIENT},
}


def _layer(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _module(path: Path) -> list[str]:
    rel = path.relative_to(SRC).with_suffix("")
    parts = ["jobyard", *rel.parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` of every jobyard import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module(path) if path.name == "__init__.py" else _module(path)[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            yield node.lineno, name


def violations() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        layer = _layer(path)
        rule = ALLOWED.get(layer)
        if rule is None:
            found.append(f"{path.relative_to(SRC)}: no layering rule for {layer!r}")
            continue
        for line, name in imports_of(path):
            parts = name.split(".")
            if parts[0] != "jobyard" or len(parts) < 2:
                continue
            target = parts[1]
            if target != layer and target not in rule:
                found.append(f"{path.relative_to(SRC)}:{line}: {layer} imports {name}")
    return found


def test_every_import_follows_the_layering() -> None:
    assert violations() == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from jobyard.engine.bus import Bus\n", "service imports jobyard.engine.bus"),
        ("def f():\n    from ..engine import bus\n", "service imports jobyard.engine"),
        ("import jobyard.api.app\n", "service imports jobyard.api.app"),
    ],
)
def test_the_check_sees_every_kind_of_import(
    source: str, expected: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A forbidden import at module level, inside a function and relative is reported."""
    fake = tmp_path / "jobyard"
    (fake / "service").mkdir(parents=True)
    (fake / "service" / "bad.py").write_text(source, encoding="utf-8")
    monkeypatch.setattr(f"{__name__}.SRC", fake)
    assert [v.split(": ", 1)[1] for v in violations()] == [expected]
