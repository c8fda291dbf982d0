"""No ``assert`` statement checks anything at run time in ``src/``.

``python -O`` strips assert statements, so a check written as one vanishes in an
optimised deployment; runtime checks must raise explicit errors.
"""

from __future__ import annotations

import ast
from pathlib import Path

import jobyard

SRC = Path(jobyard.__file__).parent


def test_no_assert_statements_in_src() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Assert):
                found.append(f"{rel}:{node.lineno}")
    assert found == [], f"assert statements (gone under python -O): {found}"
