"""Assertions on finished ``jobyard`` CLI subprocesses (end-to-end tests)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.server import jobyard_command


def ok(result: subprocess.CompletedProcess[str], code: int = 0) -> subprocess.CompletedProcess[str]:
    """Assert the exit code, showing both streams when it is not the expected one."""
    assert result.returncode == code, (
        f"exit {result.returncode} (wanted {code}) for {result.args}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    """The command's stdout as JSON (after asserting exit code 0)."""
    return json.loads(ok(result).stdout)


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``jobyard ARGS`` of the code under test (text streams, 120 s at most)."""
    return subprocess.run(
        [*jobyard_command(), *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
