"""The writes of a real apply, built from its plan for the store to run in ONE transaction.

Building checks each write as its REST route would (what needs the database is checked
again inside the transaction); access was decided while planning. Each write remembers
which item of the plan it comes from, so a refusal of the store marks that item failed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from jobyard.core.access import AuditNote
from jobyard.core.applywrites import (
    ApplyWrite,
    Expect,
    JobConfigWrite,
    Ref,
    ScheduleDelete,
    ScheduleWrite,
    TemplateWrite,
    WriteRefused,
)
from jobyard.core.errors import DatabaseUnavailable, JobyardError
from jobyard.core.models import JobConfigSpec
from jobyard.core.schedules import ScheduleSpec
from jobyard.core.templates import TemplateSpec
from jobyard.core.timeutil import utcnow
from jobyard.service import auditlog, jobconfigs, schedules, templates
from jobyard.service.apply.document import SPEC_FIELDS
from jobyard.service.apply.plan import Action, PlanItem, SchedulePlanItem
from jobyard.service.apply.precheck import reason_of, schedule_values
from jobyard.service.apply.report import ApplyReport
from jobyard.service.apply.templatespec import RETRY_FIELDS, PendingTemplate
from jobyard.service.context import Context, Principal


class Refused(Exception):
    """One write was refused: which item (and schedule), and the server's reason."""

    def __init__(self, kind: str, name: str, reason: str, schedule: str | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.name = name
        self.schedule = schedule
        self.reason = reason
        self.error = f"schedule {schedule!r} refused: {reason}" if schedule else reason


@dataclasses.dataclass(frozen=True, slots=True)
class Origin:
    """Which item of the plan (and which of its schedules) a write comes from."""

    kind: str
    name: str
    schedule: str | None = None


class Batch:
    """The writes of one apply, built from its plan, for the store to run in one go.

    Building checks each write as its REST route would (the checks that need the
    database run again inside the transaction); access was decided while planning.
    """

    def __init__(self, ctx: Context, principal: Principal, remote_addr: str | None) -> None:
        self.ctx = ctx
        self.principal = principal
        self.remote_addr = remote_addr
        self.writes: list[ApplyWrite] = []
        self.origins: list[Origin] = []
        self.templates: dict[str, int | Ref] = {}
        self.created: dict[tuple[str, str | None, str | None], int] = {}

    def _add(self, write: ApplyWrite, origin: Origin) -> Ref:
        self.writes.append(write)
        self.origins.append(origin)
        return Ref(len(self.writes) - 1)

    def _note(self, action: str, kind: str, details: dict[str, Any]) -> AuditNote:
        return auditlog.audit_note(self.principal, action, kind, details, self.remote_addr)

    def expect(self, report: ApplyReport) -> None:
        """Checks that every existing object the plan compared is still as it read it."""
        for kind, items in (("template", report.templates), ("jobconfig", report.items)):
            for item in items:
                if item.basis is None or item.jobconfig_id is None:
                    continue
                seen = item.basis
                write = Expect(kind, item.jobconfig_id, seen.updated_at, seen.schedules)
                self._add(write, Origin(kind, item.name))

    async def template(self, item: PlanItem) -> None:
        """The write of a template to create or change (none for one left alone)."""
        if item.jobconfig_id is not None:
            self.templates[item.name] = item.jobconfig_id
        if item.desired is None or item.action not in (Action.CREATE, Action.UPDATE):
            return
        spec = TemplateSpec(
            name=str(item.desired["name"]),
            package_id=item.desired.get("package_id"),
            entrypoint=item.desired.get("entrypoint"),
            command=item.desired.get("command"),
            description=str(item.desired.get("description") or ""),
            labels=dict(item.desired.get("labels") or {}),
            **{k: item.desired[k] for k in RETRY_FIELDS if k in item.desired},
        )
        try:
            await templates.validate(self.ctx, spec)
        except JobyardError as exc:
            if isinstance(exc, DatabaseUnavailable):
                raise  # an outage is no refusal: the caller gets a 503 and applies again
            raise Refused("template", item.name, reason_of(exc)) from exc
        who = self.principal.name
        origin = Origin("template", item.name)
        if item.action is Action.CREATE:
            note = self._note("template.create", "template", {"name": spec.name})
            ref = self._add(TemplateWrite(spec, None, who, note), origin)
            self.templates[item.name] = ref
            self.created[("template", item.name, None)] = ref.index
            return
        note = self._note("template.update", "template", {"fields": sorted(templates.SPEC_FIELDS)})
        self._add(TemplateWrite(spec, item.jobconfig_id, who, note), origin)

    async def jobconfig(self, item: PlanItem) -> None:
        """The writes of a jobconfig and its schedules (those the plan changes)."""
        step: str | None = None
        try:
            target = await self._jobconfig(item)
            changing = [
                s for s in item.schedules or () if s.action in (Action.CREATE, Action.UPDATE)
            ]
            deletes = [s for s in item.schedules or () if s.action is Action.DELETE]
            for sched in [*changing, *deletes]:
                step = sched.name
                await self._schedule(item.name, target, sched)
        except JobyardError as exc:
            if isinstance(exc, DatabaseUnavailable):
                raise
            raise Refused("jobconfig", item.name, reason_of(exc), step) from exc

    async def _jobconfig(self, item: PlanItem) -> int | Ref:
        """The jobconfig's write; answers how its schedules' writes name it."""
        if item.desired is None or item.action not in (Action.CREATE, Action.UPDATE):
            return int(item.jobconfig_id or 0)
        who = self.principal.name
        origin = Origin("jobconfig", item.name)
        template = item.desired.get("template_id")
        named = self.templates.get(template.name) if isinstance(template, PendingTemplate) else None
        if item.action is Action.CREATE:
            spec = jobconfigs.check_spec(jobconfig_spec(item.desired))
            note = self._note("jobconfig.create", "jobconfig", {"name": spec.name})
            names = spec.template_id if named is None else named
            ref = self._add(JobConfigWrite(spec, names, None, who, note), origin)
            self.created[("jobconfig", item.name, None)] = ref.index
            return ref
        jobconfig_id = int(item.jobconfig_id or 0)
        before = jobconfigs.spec_of(await self.ctx.store.jobconfig_get(jobconfig_id))
        spec = jobconfigs.check_spec(jobconfig_spec(item.desired, before))
        fields = {"fields": sorted(jobconfigs.SPEC_FIELDS)}
        note = self._note("jobconfig.update", "jobconfig", fields)
        names = spec.template_id if named is None else named
        self._add(JobConfigWrite(spec, names, jobconfig_id, who, note), origin)
        return jobconfig_id

    async def _schedule(self, name: str, jobconfig: int | Ref, item: SchedulePlanItem) -> None:
        ctx, who = self.ctx, self.principal.name
        origin = Origin("jobconfig", name, item.name)
        details: dict[str, Any] = {"jobconfig_id": jobconfig}
        now = utcnow()
        if item.action is Action.CREATE and item.body is not None:
            spec = ScheduleSpec(**schedule_values(item.body))
            spec = schedules.prepare(ctx, spec, now, check_seconds=True)
            note = self._note("schedule.create", "schedule", details)
            write = ScheduleWrite(jobconfig, spec, schedules.first_fire(spec, now), by=who)
            ref = self._add(dataclasses.replace(write, audit=note), origin)
            self.created[("schedule", name, item.name)] = ref.index
            return
        jobconfig_id = int(jobconfig) if isinstance(jobconfig, int) else 0
        schedule_id = int(item.schedule_id or 0)
        if item.action is Action.UPDATE and item.body is not None:
            current = await ctx.store.schedule_get(jobconfig_id, schedule_id)
            merged, retime = schedules.patched(current, schedule_values(item.body))
            spec = schedules.prepare(ctx, merged, now, check_seconds=merged.cron != current.cron)
            fire = schedules.first_fire(spec, now) if retime else current.next_fire_at
            note = self._note("schedule.update", "schedule", details)
            self._add(
                ScheduleWrite(jobconfig_id, spec, fire, schedule_id, current.version, who, note),
                origin,
            )
        elif item.action is Action.DELETE:
            note = self._note("schedule.delete", "schedule", details)
            self._add(ScheduleDelete(jobconfig_id, schedule_id, note), origin)

    def refused(self, exc: WriteRefused) -> Refused:
        """The refusal of the store as the plan's failed item."""
        origin = self.origins[exc.index]
        return Refused(origin.kind, origin.name, reason_of(exc.error), origin.schedule)

    def written(self, kind: str, item: PlanItem, ids: list[int | None]) -> PlanItem:
        """The item (a ``kind``) with the ids of what this apply created."""
        index = self.created.get((kind, item.name, None))
        if index is not None:
            item = dataclasses.replace(item, jobconfig_id=ids[index])
        if item.schedules is None:
            return item
        scheds = []
        for s in item.schedules:
            at = self.created.get(("schedule", item.name, s.name))
            scheds.append(s if at is None else dataclasses.replace(s, schedule_id=ids[at]))
        return dataclasses.replace(item, schedules=tuple(scheds))


def jobconfig_spec(
    desired: Mapping[str, Any], current: JobConfigSpec | None = None
) -> JobConfigSpec:
    """The spec to write; without a ``retention`` key the current overrides stay.

    A template this apply creates is left out (``template_id`` None): the write names
    it by reference.
    """
    values = {f: desired[f] for f in SPEC_FIELDS if f in desired}
    if isinstance(values.get("template_id"), PendingTemplate):
        values["template_id"] = None
    if "retention" in values:
        retention = values.pop("retention") or {}
        kept = (retention.get("max_age_days"), retention.get("max_jobs"))
    elif current is not None:
        kept = (current.retention_max_age_days, current.retention_max_jobs)
    else:
        kept = (None, None)
    return JobConfigSpec(**values, retention_max_age_days=kept[0], retention_max_jobs=kept[1])
