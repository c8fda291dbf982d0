"""The writes of one apply, as data the store runs in ONE transaction.

The service decides access and checks what it can without the database, then hands
the store the whole list; the store runs the writes in order, inside one transaction,
and either all of them are committed or none. An object created by an earlier write of
the same list is named by :class:`Ref` (its id exists only inside the transaction).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jobyard.core.access import AuditNote
from jobyard.core.errors import Conflict, JobyardError
from jobyard.core.models import JobConfigSpec
from jobyard.core.schedules import ScheduleSpec
from jobyard.core.templates import TemplateSpec


@dataclass(frozen=True, slots=True)
class Ref:
    """The id of the object that write number ``index`` of the same list creates.

    Also accepted as a value of an audit note's ``details`` (replaced by the id).
    """

    index: int


@dataclass(frozen=True, slots=True)
class TemplateWrite:
    """Create a template (``template_id`` None; ``by`` owns it) or replace its fields."""

    spec: TemplateSpec
    template_id: int | None = None
    by: str | None = None
    audit: AuditNote | None = None


@dataclass(frozen=True, slots=True)
class JobConfigWrite:
    """Create a jobconfig (``jobconfig_id`` None; ``by`` owns it) or replace its fields.

    ``template`` replaces ``spec.template_id`` so that it may name a template created
    earlier in the same list.
    """

    spec: JobConfigSpec
    template: int | Ref | None = None
    jobconfig_id: int | None = None
    by: str | None = None
    audit: AuditNote | None = None


@dataclass(frozen=True, slots=True)
class ScheduleWrite:
    """Create a schedule of ``jobconfig`` (``schedule_id`` None) or replace one.

    A replacement is a compare-and-set on ``expected_version``: a schedule changed since
    the plan read it is refused (``Conflict``) rather than overwritten.
    """

    jobconfig: int | Ref
    spec: ScheduleSpec
    next_fire_at: datetime | None
    schedule_id: int | None = None
    expected_version: int | None = None
    by: str | None = None
    audit: AuditNote | None = None


@dataclass(frozen=True, slots=True)
class ScheduleDelete:
    """Delete a schedule; one already gone is what was wanted (no refusal, no audit)."""

    jobconfig_id: int
    schedule_id: int
    audit: AuditNote | None = None


@dataclass(frozen=True, slots=True)
class Expect:
    """No write: the object is still as the plan read it, or the list is refused.

    ``kind`` is ``"template"`` or ``"jobconfig"``; ``updated_at`` what the plan read;
    for a jobconfig whose schedules the plan compared, ``schedules`` the ``(id,
    version)`` of each (by id). A mismatch raises :class:`Stale`: another apply (or a
    route) changed it in between, so the plan must be made again.
    """

    kind: str
    object_id: int
    updated_at: datetime
    schedules: tuple[tuple[int, int], ...] | None = None


ApplyWrite = TemplateWrite | JobConfigWrite | ScheduleWrite | ScheduleDelete | Expect


class Stale(Conflict):
    """What a plan was made from changed before its writes ran: plan again."""

    code = "conflict"


class WriteRefused(Exception):
    """Write number ``index`` of the list was refused with ``error``; nothing was written."""

    def __init__(self, index: int, error: JobyardError) -> None:
        super().__init__(f"write {index} refused: {error.message}")
        self.index = index
        self.error = error
