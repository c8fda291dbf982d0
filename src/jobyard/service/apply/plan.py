"""What an apply would do: desired jobconfigs against the server's, as pure data.

No I/O here, so the decision "create, update or leave alone, and which fields change"
is tested on its own, and a dry run shows exactly what a real apply would do. The
same goes for the schedules of a jobconfig, matched by name: create, update (a PATCH of
the fields that differ), delete (not in the file), or leave alone; and for the templates
of the file, by name, like jobconfigs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from jobyard.service.apply.document import SPEC_FIELDS, spec_defaults
from jobyard.service.apply.schedulespec import (
    SCHEDULE_DEFAULTS,
    ScheduleDecl,
    current_minutes,
    every_text,
    instant,
    normalise_cron,
)
from jobyard.service.apply.templatespec import TEMPLATE_DEFAULTS, TEMPLATE_FIELDS


class Action(StrEnum):
    """What happens to one jobconfig."""

    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    DELETE = "delete"  # schedules only: not in the file any more

    @property
    def done(self) -> str:
        """The past tense shown after a real apply."""
        past = {"create": "created", "update": "updated", "delete": "deleted"}
        return past.get(self.value, self.value)


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
class SchedulePlanItem:
    """The decision for one schedule of a jobconfig."""

    name: str
    action: Action
    changes: tuple[FieldChange, ...] = ()
    schedule_id: int | None = None
    body: Mapping[str, Any] | None = None  # create: the POST body; update: the PATCH body
    undo: Mapping[str, Any] | None = None  # update: the PATCH body that puts it back
    error: str = ""


@dataclass(frozen=True, slots=True)
class Basis:
    """What the plan read of an existing object, compared again inside the transaction
    of a real apply: its ``updated_at`` and, when the plan compared its schedules, the
    ``(id, version)`` of each (by id)."""

    updated_at: datetime
    schedules: tuple[tuple[int, int], ...] | None = None


@dataclass(frozen=True, slots=True)
class PlanItem:
    """The decision for one jobconfig (or template) of the file."""

    name: str
    action: Action
    changes: tuple[FieldChange, ...] = ()
    jobconfig_id: int | None = None  # for a template: the template's id
    desired: Mapping[str, Any] | None = None
    error: str = ""
    previous: Mapping[str, Any] | None = None  # update: the server's jobconfig before
    #: ``None``: the file says nothing about this jobconfig's schedules.
    schedules: tuple[SchedulePlanItem, ...] | None = None
    #: ``None``: no such object on the server when planned.
    basis: Basis | None = None


def normalise(field: str, value: Any) -> Any:
    """The comparable form of a field value, so that equal settings compare equal.

    Exit codes and parameters are sets (order and repeats do not matter); a missing
    description is ""; macro values are strings.
    """
    if field == "retention":
        given = value if isinstance(value, Mapping) else {}
        return {k: given.get(k) for k in ("max_age_days", "max_jobs")}
    if value is None:
        return "" if field == "description" else None
    if field == "success_exit_codes" and isinstance(value, list | tuple):
        return sorted({int(v) for v in value})
    if field == "macros" and isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    if field == "command" and isinstance(value, list | tuple):
        return [str(v) for v in value]
    if field == "parameters" and isinstance(value, list | tuple):
        return sorted({str(v) for v in value})
    return value


def diff_fields(
    desired: Mapping[str, Any],
    current: Mapping[str, Any],
    fields: Sequence[str] = SPEC_FIELDS,
    defaults: Mapping[str, Any] | None = None,
) -> tuple[FieldChange, ...]:
    """The writable fields whose desired value differs from the current one.

    A field the server does not report is taken at its default, so a server that leaves
    out defaults is not mistaken for one holding different values.
    """
    defaults = spec_defaults() if defaults is None else defaults
    changes: list[FieldChange] = []
    for field in fields:
        if field not in desired:
            continue
        new = desired[field]
        old = current.get(field, defaults.get(field))
        if normalise(field, new) != normalise(field, old):
            changes.append(FieldChange(field, old, new))
    return tuple(changes)


def plan_jobconfig(
    desired: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    fields: Sequence[str] = SPEC_FIELDS,
    defaults: Mapping[str, Any] | None = None,
) -> PlanItem:
    """Create when absent, update when a field differs, otherwise leave it alone."""
    name = str(desired["name"])
    defaults = spec_defaults() if defaults is None else defaults
    if current is None:
        shown = tuple(
            FieldChange(f, None, desired[f])
            for f in fields
            if f != "name"
            and f in desired
            and normalise(f, desired[f]) != normalise(f, defaults.get(f))
        )
        return PlanItem(name, Action.CREATE, shown, None, desired)
    changes = diff_fields(desired, current, fields, defaults)
    jobconfig_id = current.get("id")
    action = Action.UPDATE if changes else Action.UNCHANGED
    previous = current if changes else None
    return PlanItem(name, action, changes, jobconfig_id, desired, previous=previous)


def plan_template(desired: Mapping[str, Any], current: Mapping[str, Any] | None) -> PlanItem:
    """A template of the file against the server's of that name (as for a jobconfig)."""
    return plan_jobconfig(desired, current, TEMPLATE_FIELDS, TEMPLATE_DEFAULTS)


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


# -- schedules ------------------------------------------------------------------------


@dataclass(slots=True)
class _ScheduleDiff:
    changes: list[FieldChange]
    patch: dict[str, Any]
    undo: dict[str, Any]

    def add(self, name: str, old: Any, new: Any, key: str, value: Any, undo: Any) -> None:
        self.changes.append(FieldChange(name, old, new))
        self.patch[key] = value
        self.undo.setdefault(key, undo)


def diff_schedule(decl: ScheduleDecl, current: Mapping[str, Any]) -> _ScheduleDiff:
    """What differs between a schedule of the file and the server's of the same name.

    A ``start_at`` the file leaves out is not compared for an interval (the server chose
    the anchor); for cron it means none. Changing kind (cron ↔ interval) shows both fields.
    """
    diff = _ScheduleDiff([], {}, {})
    cur_cron = current.get("cron")
    cur_minutes = current_minutes(current) if cur_cron is None else None
    cur_start = current.get("start_at")
    switched = (decl.cron is None) != (cur_cron is None)
    if switched:  # restoring the old kind needs all of its timing fields
        diff.undo.update(cron=cur_cron, interval_minutes=cur_minutes, start_at=cur_start)
    if decl.cron is not None:
        if cur_cron is None or normalise_cron(str(cur_cron)) != decl.cron:
            diff.add("cron", cur_cron, decl.cron, "cron", decl.cron, cur_cron)
        if switched:
            diff.changes.append(FieldChange("every", every_text(cur_minutes), None))
    else:
        if cur_minutes != decl.interval_minutes:
            new = every_text(decl.interval_minutes)
            old = every_text(cur_minutes)
            diff.add("every", old, new, "interval_minutes", decl.interval_minutes, cur_minutes)
        if switched:
            diff.changes.append(FieldChange("cron", cur_cron, None))
    if decl.start_at is not None:
        wanted = instant(decl.start_at, decl.timezone)
        if wanted is None or wanted != instant(cur_start, "UTC"):
            diff.add("start_at", cur_start, decl.start_at, "start_at", decl.start_at, cur_start)
    elif decl.cron is not None and cur_start and not switched:
        diff.add("start_at", cur_start, None, "start_at", None, cur_start)
    for key, default in SCHEDULE_DEFAULTS.items():
        new = getattr(decl, key)
        old = current.get(key, default)
        if normalise(key, new) != normalise(key, old if old is not None else default):
            diff.add(key, old, new, key, new, old)
    return diff


def _creation(decl: ScheduleDecl) -> tuple[FieldChange, ...]:
    shown = [
        FieldChange("cron", None, decl.cron)
        if decl.cron is not None
        else FieldChange("every", None, every_text(decl.interval_minutes))
    ]
    if decl.start_at is not None:
        shown.append(FieldChange("start_at", None, decl.start_at))
    for key, default in SCHEDULE_DEFAULTS.items():
        value = getattr(decl, key)
        if normalise(key, value) != normalise(key, default):
            shown.append(FieldChange(key, None, value))
    return tuple(shown)


def plan_schedules(
    declared: Sequence[ScheduleDecl], current: Sequence[Mapping[str, Any]]
) -> tuple[SchedulePlanItem, ...]:
    """The file's schedules (by name) against the server's: file order, then deletions."""
    by_name = {str(s.get("name")): s for s in current}
    items: list[SchedulePlanItem] = []
    for decl in declared:
        found = by_name.pop(decl.name, None)
        if found is None:
            items.append(
                SchedulePlanItem(decl.name, Action.CREATE, _creation(decl), body=decl.body())
            )
            continue
        diff = diff_schedule(decl, found)
        items.append(
            SchedulePlanItem(
                decl.name,
                Action.UPDATE if diff.changes else Action.UNCHANGED,
                tuple(diff.changes),
                int(found["id"]),
                diff.patch or None,
                diff.undo or None,
            )
        )
    for name, gone in by_name.items():
        items.append(SchedulePlanItem(name, Action.DELETE, (), int(gone["id"])))
    return tuple(items)
