"""Apply a document on the server: plan it against what the caller may see, then write it.

The plan compares the document's templates, jobconfigs and their schedules (matched by
name) with the server's, through the same use cases as the REST routes, so every access
rule holds per object: an object the caller may not view is not found (and a name it
holds is refused on create, as ``POST /jobconfigs`` refuses it), an object it may view
but not edit is planned as failed. A dry run stops at the plan.

A real apply writes templates, then each jobconfig with its schedules, and is all or
nothing: when one write is refused, every write of this apply is put back (newest
first) and the answer is the plan with the refused item failed. Applies are serialised
per store, so two documents applied at once do not interleave.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from typing import Any

from jobyard.core.errors import (
    DatabaseUnavailable,
    Forbidden,
    InvalidInput,
    JobyardError,
    NotFound,
)
from jobyard.core.models import JobConfig, JobConfigSpec
from jobyard.core.schedules import Schedule, ScheduleSpec
from jobyard.core.templates import RunTarget, Template, TemplateSpec
from jobyard.service import access, jobconfigs, schedules, templates
from jobyard.service.apply.document import SPEC_FIELDS, ApplyFile, JobConfigDecl
from jobyard.service.apply.nodes import Problem, SpecError
from jobyard.service.apply.plan import (
    Action,
    PendingPackage,
    PlanItem,
    SchedulePlanItem,
    plan_jobconfig,
    plan_schedules,
    plan_template,
)
from jobyard.service.apply.precheck import precheck, reason_of, schedule_values
from jobyard.service.apply.report import ApplyReport, PackageResult, report_json
from jobyard.service.apply.templatespec import PendingTemplate
from jobyard.service.context import Context, Principal

Undo = Callable[[], Awaitable[object]]
_LOCKS: weakref.WeakKeyDictionary[object, asyncio.Lock] = weakref.WeakKeyDictionary()


class InvalidDocument(InvalidInput):
    """The document cannot be planned: ``details.problems`` lists each with its path
    (``where``) and, for a YAML body, its line."""

    code = "invalid_document"


class ApplyRefused(InvalidInput):
    """A write of the apply was refused, so nothing was applied; ``details.report`` is the
    plan with the refused item failed (and its reason)."""

    code = "apply_refused"


def document_error(exc: SpecError) -> InvalidDocument:
    """A document's problems as the API's 422 answer."""
    problems = [{"message": p.message, "line": p.line, "where": p.where} for p in exc.problems]
    first = exc.problems[0].render(exc.source) if exc.problems else exc.source
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return InvalidDocument(f"invalid document: {first}{more}", {"problems": problems})


def _problem(message: str, line: int | None, where: str) -> Problem:
    return Problem(message, line, where)


def jobconfig_view(jc: JobConfig) -> dict[str, Any]:
    """A jobconfig as the planner compares it (the API's field names, retention nested)."""
    values = asdict(jobconfigs.spec_of(jc))
    values["retention"] = {
        "max_age_days": values.pop("retention_max_age_days"),
        "max_jobs": values.pop("retention_max_jobs"),
    }
    return {**values, "id": jc.id}


def template_view(t: Template) -> dict[str, Any]:
    """A template as the planner compares it."""
    return {**asdict(templates.spec_of(t)), "id": t.id}


def schedule_view(s: Schedule) -> dict[str, Any]:
    """A schedule as the planner compares it (``start_at`` as ISO 8601 text)."""
    return {
        "id": s.id,
        "name": s.name,
        "cron": s.cron,
        "interval_minutes": s.interval_minutes,
        "start_at": s.start_at.isoformat() if s.start_at else None,
        "timezone": s.timezone,
        "misfire_policy": str(s.misfire_policy),
        "paused": s.paused,
        "macros": dict(s.macros),
        "description": s.description,
    }


async def _packages(ctx: Context, doc: ApplyFile, *, dry_run: bool) -> list[PackageResult]:
    """Each package of the document by its sha256; one not on the server is pending in a
    dry run (the CLI would push it) and a problem otherwise."""
    problems: list[Problem] = []
    found: list[PackageResult] = []
    for decl in doc.packages.values():
        where = f"packages.{decl.name}"
        if decl.sha256 is None:
            problems.append(
                _problem(
                    f"package {decl.name!r} has only a `path`: the server cannot read your "
                    "files; push it (`jobyard packages push PATH`) and give its `sha256`, "
                    "or run `jobyard apply`, which does both",
                    decl.line,
                    where,
                )
            )
            continue
        package = await ctx.store.package_get_by_sha256(decl.sha256)
        if package is not None:
            entrypoints = sorted(package.entrypoints)
            found.append(
                PackageResult(decl.name, decl.sha256, package.id, entrypoints, path=decl.given_path)
            )
        elif dry_run:
            pending = PendingPackage(decl.name, decl.sha256)
            found.append(PackageResult(decl.name, decl.sha256, pending, [], "new", decl.given_path))
        else:
            problems.append(
                _problem(
                    f"no package with sha256 {decl.sha256[:12]}… on the server: push it first "
                    "(`jobyard packages push PATH`)",
                    decl.line,
                    where,
                )
            )
    if problems:
        raise document_error(SpecError(doc.source, problems))
    return found


async def _template_named(ctx: Context, principal: Principal, name: str) -> Template | None:
    page = await templates.list_(ctx, principal, name=name, cursor=None, limit=1)
    return page.items[0] if page.items else None


async def _jobconfig_named(ctx: Context, principal: Principal, name: str) -> JobConfig | None:
    page = await jobconfigs.list_(ctx, principal, name=name, cursor=None, limit=1)
    return page.items[0] if page.items else None


def _refused(item: PlanItem, kind: str) -> PlanItem:
    error = f"you may not edit {kind} {item.name!r}: ask an admin for `edit` on it"
    return dataclasses.replace(item, action=Action.FAILED, error=error)


async def plan_document(
    ctx: Context, principal: Principal, doc: ApplyFile, *, dry_run: bool
) -> ApplyReport:
    """The plan of a document: what would be created, changed, deleted or left alone."""
    packages = await _packages(ctx, doc, dry_run=dry_run)
    ids: dict[str, int | PendingPackage] = {p.name: p.package_id for p in packages}
    own = {t.name for t in doc.templates}
    named = {jc.template for jc in doc.jobconfigs if jc.template is not None}
    known: dict[str, Template | None] = {
        n: await _template_named(ctx, principal, n) for n in sorted(own | named)
    }
    missing = [
        (index, jc)
        for index, jc in enumerate(doc.jobconfigs)
        if jc.template is not None and jc.template not in own and known[jc.template] is None
    ]
    if missing:
        raise document_error(
            SpecError(
                doc.source,
                [
                    _problem(
                        f"no template named {jc.template!r} in the file or on the server",
                        jc.line,
                        f"jobconfigs[{index}]",
                    )
                    for index, jc in missing
                ],
            )
        )

    template_items: list[PlanItem] = []
    for decl in doc.templates:
        desired = dict(decl.spec)
        if decl.package is not None:
            desired["package_id"] = ids[decl.package]
        current = known.get(decl.name)
        item = plan_template(desired, None if current is None else template_view(current))
        if (
            current is not None
            and item.action is Action.UPDATE
            and not await access.can(ctx, principal, "edit", "templates", current)
        ):
            item = _refused(item, "template")
        template_items.append(item)
    refs: dict[str, int | PendingTemplate | None] = {
        name: t.id for name, t in known.items() if t is not None
    }
    for item in template_items:
        if item.action is Action.FAILED:
            refs[item.name] = None
        elif item.jobconfig_id is None:
            refs[item.name] = PendingTemplate(item.name)

    targets = {
        t.name: RunTarget(
            t.desired.get("package_id"), t.desired.get("entrypoint"), t.desired.get("command")
        )
        for t in template_items
        if t.desired is not None
    }
    items = [
        await _plan_jobconfig(ctx, principal, decl, ids, refs, targets) for decl in doc.jobconfigs
    ]
    return ApplyReport(packages, items, dry_run=dry_run, templates=template_items)


async def _plan_jobconfig(
    ctx: Context,
    principal: Principal,
    decl: JobConfigDecl,
    packages: Mapping[str, int | PendingPackage],
    refs: Mapping[str, int | PendingTemplate | None],
    targets: Mapping[str, RunTarget],
) -> PlanItem:
    desired: dict[str, Any] = dict(decl.spec)
    if decl.package is not None:
        desired["package_id"] = packages[decl.package]
    if decl.template is not None:
        desired["template_id"] = refs.get(decl.template)
    current = await _jobconfig_named(ctx, principal, decl.name)
    item = plan_jobconfig(desired, None if current is None else jobconfig_view(current))
    if decl.template is not None and refs.get(decl.template) is None:
        error = f"its template {decl.template!r} could not be written (see above)"
        return dataclasses.replace(item, action=Action.FAILED, error=error)
    if (
        current is not None
        and item.action is Action.UPDATE
        and not await access.can(ctx, principal, "edit", "jobconfigs", current)
    ):
        return _refused(item, "jobconfig")
    if decl.schedules is None:
        return await precheck(ctx, principal, item, {}, targets)
    existing: list[Schedule] = []
    if current is not None:
        existing = await schedules.list_(ctx, principal, current.id)
    planned = plan_schedules(decl.schedules, [schedule_view(s) for s in existing])
    item = dataclasses.replace(item, schedules=planned)
    changing = any(s.action is not Action.UNCHANGED for s in planned)
    if (
        current is not None
        and item.action is Action.UNCHANGED
        and changing
        and not await access.can(ctx, principal, "edit", "jobconfigs", current)
    ):
        return _refused(item, "jobconfig")
    return await precheck(ctx, principal, item, {s.id: s for s in existing}, targets)


async def apply_document(
    ctx: Context,
    principal: Principal,
    doc: ApplyFile,
    *,
    dry_run: bool = False,
    remote_addr: str | None = None,
) -> ApplyReport:
    """Plan the document, and unless ``dry_run`` write it all or nothing.

    A plan with a failed item writes nothing; a write refused midway puts back every
    write before it. Either answers :class:`ApplyRefused` carrying the report.
    """
    access.refuse_job_token(principal, "apply documents")
    lock = _LOCKS.setdefault(ctx.store, asyncio.Lock())
    async with lock:
        report = await plan_document(ctx, principal, doc, dry_run=dry_run)
        if dry_run:
            return report
        if report.failed:
            raise _refusal(dataclasses.replace(report, rolled_back=True))
        writer = _Writer(ctx, principal, remote_addr)
        try:
            done_templates = [await writer.template(item) for item in report.templates]
            ids = {item.name: item.jobconfig_id for item in done_templates}
            done = [await writer.jobconfig(item, ids) for item in report.items]
        except _Refused as refused:
            await writer.roll_back()
            failed = _mark_failed(report, refused)
            raise _refusal(failed) from None
        except Exception:  # the database went away, say: put back what can be, then say so
            await writer.roll_back()
            raise
    return dataclasses.replace(report, templates=done_templates, items=done)


def _refusal(report: ApplyReport) -> ApplyRefused:
    first = next(i for i in [*report.templates, *report.items] if i.action is Action.FAILED)
    return ApplyRefused(
        f"nothing was applied: {first.name!r}: {first.error}", {"report": report_json(report)}
    )


def _mark_failed(report: ApplyReport, refused: _Refused) -> ApplyReport:
    def mark(item: PlanItem) -> PlanItem:
        if item.name != refused.name:
            return item
        scheds = item.schedules
        if scheds is not None and refused.schedule is not None:
            scheds = tuple(
                dataclasses.replace(s, action=Action.FAILED, error=refused.reason)
                if s.name == refused.schedule
                else s
                for s in scheds
            )
        return dataclasses.replace(
            item, action=Action.FAILED, error=refused.error, schedules=scheds
        )

    if refused.kind == "template":
        return dataclasses.replace(
            report, templates=[mark(t) for t in report.templates], rolled_back=True
        )
    return dataclasses.replace(report, items=[mark(i) for i in report.items], rolled_back=True)


class _Refused(Exception):
    """One write was refused: which item (and schedule), and the server's reason."""

    def __init__(self, kind: str, name: str, reason: str, schedule: str | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.name = name
        self.schedule = schedule
        self.reason = reason
        self.error = f"schedule {schedule!r} refused: {reason}" if schedule else reason


class _Writer:
    """The writes of one apply, with what puts each back."""

    def __init__(self, ctx: Context, principal: Principal, remote_addr: str | None) -> None:
        self.ctx = ctx
        self.principal = principal
        self.remote_addr = remote_addr
        self.undo: list[Undo] = []

    async def template(self, item: PlanItem) -> PlanItem:
        ctx, who = self.ctx, self.principal
        if item.desired is None or item.action not in (Action.CREATE, Action.UPDATE):
            return item
        spec = TemplateSpec(
            name=str(item.desired["name"]),
            package_id=item.desired.get("package_id"),
            entrypoint=item.desired.get("entrypoint"),
            command=item.desired.get("command"),
            description=str(item.desired.get("description") or ""),
        )
        try:
            if item.action is Action.CREATE:
                created = await templates.create(
                    ctx, spec, owner=who.name, principal=who, remote_addr=self.remote_addr
                )
                self.undo.append(self._delete_template(created.id))
                return dataclasses.replace(item, jobconfig_id=created.id)
            template_id = int(item.jobconfig_id or 0)
            before = templates.spec_of(await ctx.store.template_get(template_id))
            await templates.replace(
                ctx, template_id, spec, principal=who, remote_addr=self.remote_addr
            )
            self.undo.append(lambda: templates.replace(ctx, template_id, before, principal=who))
        except JobyardError as exc:
            if isinstance(exc, DatabaseUnavailable):
                raise  # an outage is no refusal: the caller gets a 503 and applies again
            raise _Refused("template", item.name, reason_of(exc)) from exc
        return item

    async def jobconfig(self, item: PlanItem, template_ids: Mapping[str, int | None]) -> PlanItem:
        ctx, who = self.ctx, self.principal
        step: str | None = None
        try:
            if item.desired is not None and item.action is Action.CREATE:
                created = await jobconfigs.create(
                    ctx,
                    _jobconfig_spec(item.desired, template_ids),
                    owner=who.name,
                    principal=who,
                    remote_addr=self.remote_addr,
                )
                self.undo.append(self._delete_jobconfig(created.id))
                item = dataclasses.replace(item, jobconfig_id=created.id)
            elif item.desired is not None and item.action is Action.UPDATE:
                jobconfig_id = int(item.jobconfig_id or 0)
                before = jobconfigs.spec_of(await ctx.store.jobconfig_get(jobconfig_id))
                spec = _jobconfig_spec(item.desired, template_ids, before)
                await jobconfigs.replace(
                    ctx, jobconfig_id, spec, principal=who, remote_addr=self.remote_addr
                )
                self.undo.append(
                    lambda: jobconfigs.replace(ctx, jobconfig_id, before, principal=who)
                )
            done: dict[str, SchedulePlanItem] = {}
            writes = [s for s in item.schedules or () if s.action in (Action.CREATE, Action.UPDATE)]
            deletes = [s for s in item.schedules or () if s.action is Action.DELETE]
            for sched in [*writes, *deletes]:
                step = sched.name
                done[sched.name] = await self._schedule(int(item.jobconfig_id or 0), sched)
            step = None
        except JobyardError as exc:
            if isinstance(exc, DatabaseUnavailable):
                raise
            raise _Refused("jobconfig", item.name, reason_of(exc), step) from exc
        if item.schedules is not None:
            item = dataclasses.replace(
                item, schedules=tuple(done.get(s.name, s) for s in item.schedules)
            )
        return item

    def _delete_jobconfig(self, jobconfig_id: int) -> Undo:
        """Delete a jobconfig this apply created (audited as the caller's).

        Not through the delete use case: that needs ``delete`` (the caller's own creation
        is taken back regardless) and purges the packages nothing else uses, which
        would drop the package just pushed for this apply.
        """

        async def undo() -> None:
            await self.ctx.store.jobconfig_delete(jobconfig_id)
            details = {"reason": "apply refused"}
            await access.record(
                self.ctx,
                self.principal,
                "jobconfig.delete",
                "jobconfig",
                jobconfig_id,
                details,
                self.remote_addr,
            )

        return undo

    def _delete_template(self, template_id: int) -> Undo:
        """Delete a template this apply created (as :meth:`_delete_jobconfig`)."""

        async def undo() -> None:
            try:
                await templates.delete(self.ctx, self.principal, template_id)
            except (Forbidden, NotFound):
                await self.ctx.store.template_delete(template_id)

        return undo

    async def _schedule(self, jobconfig_id: int, item: SchedulePlanItem) -> SchedulePlanItem:
        ctx, who, addr = self.ctx, self.principal, self.remote_addr
        if item.action is Action.CREATE and item.body is not None:
            spec = ScheduleSpec(**schedule_values(item.body))
            created = await schedules.create(
                ctx, jobconfig_id, spec, principal=who, remote_addr=addr
            )
            self.undo.append(lambda: schedules.delete(ctx, jobconfig_id, created.id, principal=who))
            return dataclasses.replace(item, schedule_id=created.id)
        schedule_id = int(item.schedule_id or 0)
        if item.action is Action.UPDATE and item.body is not None:
            before = schedules.spec_of(await ctx.store.schedule_get(jobconfig_id, schedule_id))
            await schedules.patch(
                ctx, who, jobconfig_id, schedule_id, schedule_values(item.body), remote_addr=addr
            )

            async def put_back() -> None:
                await schedules.replace_(ctx, jobconfig_id, schedule_id, before, principal=who)

            self.undo.append(put_back)
        elif item.action is Action.DELETE:
            try:
                before_delete = await ctx.store.schedule_get(jobconfig_id, schedule_id)
                await schedules.delete(
                    ctx, jobconfig_id, schedule_id, principal=who, remote_addr=addr
                )
            except NotFound:
                return item  # already gone is what was wanted
            spec = schedules.spec_of(before_delete)
            self.undo.append(lambda: schedules.create(ctx, jobconfig_id, spec, principal=who))
        return item

    async def roll_back(self) -> None:
        """Put back every write of this apply, newest first (best effort: each step is
        independent, so one that fails does not stop the others)."""
        for step in reversed(self.undo):
            try:
                await step()
            except JobyardError:
                continue
        self.undo.clear()


def _jobconfig_spec(
    desired: Mapping[str, Any],
    template_ids: Mapping[str, int | None],
    current: JobConfigSpec | None = None,
) -> JobConfigSpec:
    """The spec to write; without a ``retention`` key the current overrides stay."""
    values = {f: desired[f] for f in SPEC_FIELDS if f in desired}
    template = values.get("template_id")
    if isinstance(template, PendingTemplate):
        values["template_id"] = template_ids.get(template.name)
    if "retention" in values:
        retention = values.pop("retention") or {}
        kept = (retention.get("max_age_days"), retention.get("max_jobs"))
    elif current is not None:
        kept = (current.retention_max_age_days, current.retention_max_jobs)
    else:
        kept = (None, None)
    return JobConfigSpec(**values, retention_max_age_days=kept[0], retention_max_jobs=kept[1])
