"""Pure checks of user input that do not need the database."""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from typing import Any

from jobyard.core.errors import InvalidInput

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MACRO_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

#: Set by the worker for every job; a user macro may not shadow them.
EXECUTION_MACROS: frozenset[str] = frozenset(
    {
        "JOB_ID",
        "JOB_CONFIG_ID",
        "JOB_TEMPLATE_ID",
        "LOCAL_JOB_SPEC_DIR",
        "LOCAL_JOB_OUT_DIR",
        "JOB_PAYLOAD_DIR",
        "SESSION_ID",
        "JOBYARD_API_URL",
    }
)


def check_name(name: str, what: str = "name") -> None:
    """Names are URL-safe: ASCII letters, digits, '.', '_', '-', starting alphanumeric, ≤128."""
    if not NAME_RE.match(name):
        raise InvalidInput(
            f"invalid {what} {name!r}: use 1-128 ASCII letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            {"field": what},
        )


def check_macros(macros: Mapping[str, str], field: str = "macros") -> None:
    """Macro names must be environment-variable names and not execution macros."""
    for key, value in macros.items():
        if not MACRO_RE.match(key):
            raise InvalidInput(
                f"invalid macro name {key!r}: use ASCII letters, digits and '_', not starting "
                "with a digit",
                {"field": field, "macro": key},
            )
        if key in EXECUTION_MACROS:
            raise InvalidInput(
                f"macro {key!r} is set by jobyard for every job and cannot be overridden",
                {"field": field, "macro": key},
            )
        if "\x00" in value:
            raise InvalidInput(
                f"macro {key!r} contains a NUL character", {"field": field, "macro": key}
            )


def check_command(command: list[str] | None, field: str = "command") -> None:
    """A command is a non-empty argv list without NUL characters."""
    if command is None:
        return
    if not command or not command[0]:
        raise InvalidInput(
            f"{field} must be a non-empty list: [program, arg, ...]", {"field": field}
        )
    if any("\x00" in part for part in command):
        raise InvalidInput(f"{field} contains a NUL character", {"field": field})


def check_exit_codes(codes: list[int], field: str = "success_exit_codes") -> None:
    """Success exit codes: a non-empty list of 0..255."""
    if not codes:
        raise InvalidInput(f"{field} must list at least one exit code", {"field": field})
    bad = [c for c in codes if not 0 <= c <= 255]
    if bad:
        raise InvalidInput(f"{field} must be between 0 and 255, got {bad}", {"field": field})


def check_patch(
    changes: Mapping[str, Any], fields: Set[str], nullable: Set[str], what: str = ""
) -> None:
    """A PATCH body names only writable ``fields`` and nulls only ``nullable`` ones."""
    unknown = sorted(set(changes) - set(fields))
    if unknown:
        label = f"unknown {what} fields" if what else "unknown fields"
        raise InvalidInput(f"{label}: {', '.join(unknown)}", {"fields": unknown})
    nulls = sorted(k for k, v in changes.items() if v is None and k not in nullable)
    if nulls:
        raise InvalidInput(
            f"{', '.join(nulls)} cannot be null: give a value or leave the field out",
            {"fields": nulls},
        )
