"""What an apply did (or would do), and its JSON form: the answer of ``POST /api/v1/apply``.

The CLI prints this report as tables (or as it is with ``--json``), so a script, the CLI
and the API see the same plan for the same document.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from jobyard.core.models import Notice
from jobyard.service.apply.plan import Action, FieldChange, PendingPackage, PlanItem
from jobyard.service.apply.templatespec import PendingTemplate


@dataclass(frozen=True, slots=True)
class PackageResult:
    """A package of the document: its server id (or pending, in a dry run).

    ``state``: ``unchanged`` (already on the server), ``pushed`` (the CLI uploaded new
    bytes), ``new`` (dry run: would be pushed), ``exists`` (dry run of an older CLI).
    """

    name: str
    sha256: str
    package_id: int | PendingPackage
    entrypoints: list[str] = field(default_factory=list)
    state: str = "unchanged"
    path: str | None = None


@dataclass(frozen=True, slots=True)
class ApplyReport:
    """Everything apply did (or would do).

    ``rolled_back``: a write was refused, so nothing of this apply was written (its
    transaction was rolled back, or never began) and the items show what was planned
    (present tense), the refused one as failed.
    """

    packages: list[PackageResult]
    items: list[PlanItem]
    dry_run: bool
    templates: list[PlanItem] = field(default_factory=list)
    rolled_back: bool = False
    #: Worth knowing though not refused: pools of its jobconfigs no live worker serves.
    warnings: list[Notice] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether some template or jobconfig could not be written."""
        return any(item.action is Action.FAILED for item in [*self.templates, *self.items])

    @property
    def planned(self) -> bool:
        """Whether the items say what would happen (dry run, or rolled back) or what did."""
        return self.dry_run or self.rolled_back


def jsonable(value: Any) -> Any:
    """Placeholders of a dry run as text; anything else as it is."""
    return str(value) if isinstance(value, PendingPackage | PendingTemplate) else value


def report_json(report: ApplyReport) -> dict[str, Any]:
    """The machine-readable form of an apply report (the API's answer, ``--json``)."""
    out: dict[str, Any] = {
        "dry_run": report.dry_run,
        "packages": [
            {
                "name": p.name,
                "id": p.package_id if isinstance(p.package_id, int) else None,
                "sha256": p.sha256,
                "entrypoints": p.entrypoints,
                "state": p.state,
            }
            for p in report.packages
        ],
        "templates": [_item_json(item, report.planned) for item in report.templates],
        "jobconfigs": [_item_json(item, report.planned) for item in report.items],
    }
    out["warnings"] = [asdict(n) for n in report.warnings]
    if report.rolled_back:
        out["rolled_back"] = True
    return out


def _label(action: Action, planned: bool) -> str:
    return action.value if planned else action.done


def _item_json(item: PlanItem, planned: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": item.name,
        "id": item.jobconfig_id,
        "action": _label(item.action, planned),
        "changes": _changes_json(item.changes),
        "error": item.error or None,
    }
    if item.schedules is not None:
        out["schedules"] = [
            {
                "name": s.name,
                "id": s.schedule_id,
                "action": _label(s.action, planned),
                "changes": _changes_json(s.changes),
                "error": s.error or None,
            }
            for s in item.schedules
        ]
    return out


def _changes_json(changes: tuple[FieldChange, ...]) -> list[dict[str, Any]]:
    return [{"field": c.field, "old": jsonable(c.old), "new": jsonable(c.new)} for c in changes]
