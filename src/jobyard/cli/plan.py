"""What ``jobyard apply`` would do: desired jobconfigs against the server's, as pure data.

No I/O here, so the decision "create, update or leave alone, and which fields change"
is tested on its own, and ``--dry-run`` shows exactly what a real apply would do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from jobyard.cli.yamlspec import SPEC_FIELDS, spec_defaults


class Action(StrEnum):
    """What happens to one jobconfig."""

    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    FAILED = "failed"

    @property
    def done(self) -> str:
        """The past tense shown after a real apply."""
        return {"create": "created", "update": "updated"}.get(self.value, self.value)


@dataclass(frozen=True, slots=True)
class PendingPackage:
    """A package not on the server yet (``--dry-run``): its id is known only after a push."""

    name: str
    sha256: str

    def __str__(self) -> str:
        return f"<new package {self.name} {self.sha256[:12]}>"


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field whose value differs: ``old`` is ``None`` for a jobconfig to create."""

    field: str
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class PlanItem:
    """The decision for one jobconfig of the file."""

    name: str
    action: Action
    changes: tuple[FieldChange, ...] = ()
    jobconfig_id: int | None = None
    desired: Mapping[str, Any] | None = None
    error: str = ""


def normalise(field: str, value: Any) -> Any:
    """The comparable form of a field value, so that equal settings compare equal.

    Exit codes are a set (order and repeats do not matter); a missing description is "";
    macro values are strings.
    """
    if value is None:
        return "" if field == "description" else None
    if field == "success_exit_codes" and isinstance(value, list | tuple):
        return sorted({int(v) for v in value})
    if field == "macros" and isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    if field == "command" and isinstance(value, list | tuple):
        return [str(v) for v in value]
    return value


def diff_fields(desired: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    """The writable fields whose desired value differs from the current one.

    A field the server does not report is taken at its default, so a server that leaves
    out defaults is not mistaken for one holding different values.
    """
    defaults = spec_defaults()
    changes: list[FieldChange] = []
    for field in SPEC_FIELDS:
        if field not in desired:
            continue
        new = desired[field]
        old = current.get(field, defaults.get(field))
        if normalise(field, new) != normalise(field, old):
            changes.append(FieldChange(field, old, new))
    return tuple(changes)


def plan_jobconfig(desired: Mapping[str, Any], current: Mapping[str, Any] | None) -> PlanItem:
    """Create when absent, update when a field differs, otherwise leave it alone."""
    name = str(desired["name"])
    if current is None:
        defaults = spec_defaults()
        shown = tuple(
            FieldChange(f, None, desired[f])
            for f in SPEC_FIELDS
            if f != "name"
            and f in desired
            and normalise(f, desired[f]) != normalise(f, defaults.get(f))
        )
        return PlanItem(name, Action.CREATE, shown, None, desired)
    changes = diff_fields(desired, current)
    jobconfig_id = current.get("id")
    action = Action.UPDATE if changes else Action.UNCHANGED
    return PlanItem(name, action, changes, jobconfig_id, desired)


def compute_plan(
    desired: Sequence[Mapping[str, Any]], current: Mapping[str, Mapping[str, Any] | None]
) -> list[PlanItem]:
    """One :class:`PlanItem` per desired jobconfig, in file order; ``current`` is keyed by name."""
    return [plan_jobconfig(d, current.get(str(d["name"]))) for d in desired]


def format_change(change: FieldChange, *, created: bool = False) -> str:
    """``timeout: 30 → 45`` (or ``timeout: 30`` for a jobconfig being created)."""
    if created:
        return f"{change.field}: {_show(change.new)}"
    return f"{change.field}: {_show(change.old)} → {_show(change.new)}"


def _show(value: Any) -> str:
    if value is None:
        return "∅"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if value == "" or value != value.strip() or " " in value else value
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)
