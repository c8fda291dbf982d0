"""Apply a document on the server: plan it against what the caller may see, then write it.

The plan compares the document's templates, jobconfigs and their schedules (matched by
name) with the server's, through the same use cases as the REST routes, so every access
rule holds per object: an object the caller may not view is not found (and a name it
holds is refused on create, as ``POST /jobconfigs`` refuses it), an object it may view
but not edit is planned as failed. A dry run stops at the plan.

A real apply writes templates, then each jobconfig with its schedules, in ONE database
transaction (:meth:`~jobyard.store.protocol_apply.ApplyStore.apply_writes`) with their
audit entries: when one write is refused, nothing of the document is written and the
answer is the plan with the refused item failed. A server that dies midway leaves
nothing of it either. Applies on one server plan and write one at a time; applies of
several servers serialise on the database's row locks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from jobyard.core.applywrites import (
    ScheduleDelete,
    ScheduleWrite,
    Stale,
    WriteRefused,
)
from jobyard.core.errors import InvalidInput, NotFound
from jobyard.core.models import JobConfig
from jobyard.core.schedules import Schedule
from jobyard.core.templates import RunTarget, Template
from jobyard.service import access, jobconfigs, pools, schedules, templates
from jobyard.service.apply.batch import Batch, Refused
from jobyard.service.apply.document import ApplyFile, JobConfigDecl
from jobyard.service.apply.nodes import Problem, SpecError
from jobyard.service.apply.plan import (
    Action,
    Basis,
    PendingPackage,
    PlanItem,
    plan_jobconfig,
    plan_schedules,
    plan_template,
)
from jobyard.service.apply.precheck import precheck
from jobyard.service.apply.report import ApplyReport, PackageResult, report_json
from jobyard.service.apply.templatespec import PendingTemplate
from jobyard.service.context import Context, Principal

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
        if current is not None:
            item = dataclasses.replace(item, basis=Basis(current.updated_at))
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
    if current is not None:
        item = dataclasses.replace(item, basis=Basis(current.updated_at))
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
    if current is not None:
        seen = tuple((s.id, s.version) for s in sorted(existing, key=lambda s: s.id))
        item = dataclasses.replace(item, basis=Basis(current.updated_at, seen))
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
    """Plan the document, and unless ``dry_run`` write it in one transaction.

    A plan with a failed item writes nothing; a write refused by the database (a name
    taken meanwhile, a schedule changed since the plan...) rolls the transaction back.
    Either answers :class:`ApplyRefused` carrying the report.
    """
    access.refuse_job_token(principal, "apply documents")
    # The plan is read before the transaction: on one server, applies run one at a
    # time so that each plans on what the previous one wrote. Across servers the
    # database serialises the writes, and the transaction checks that everything the
    # plan was made from is unchanged (else the document is planned again).
    lock = _LOCKS.setdefault(ctx.store, asyncio.Lock())
    async with lock:
        attempt = 1
        while True:
            report = await plan_document(ctx, principal, doc, dry_run=dry_run)
            if dry_run:
                return await _with_pool_warnings(ctx, principal, doc, report)
            if report.failed:
                raise _refusal(dataclasses.replace(report, rolled_back=True))
            done = await _write(ctx, principal, report, remote_addr, last=attempt == _ATTEMPTS)
            if done is not None:
                return await _with_pool_warnings(ctx, principal, doc, done)
            attempt += 1


async def _with_pool_warnings(
    ctx: Context, principal: Principal, doc: ApplyFile, report: ApplyReport
) -> ApplyReport:
    """The report with a warning per pool of the document's jobconfigs that no live
    worker serves (their jobs would wait QUEUED): every jobconfig the document declares,
    changed or not, since the document is what the caller means to run."""
    template_labels = {t.name: dict(t.spec.get("labels") or {}) for t in doc.templates}
    pairs = []
    for jc in doc.jobconfigs:
        labels = dict(jc.spec.get("labels") or {})
        if not labels:  # its template's, the file's or else the server's
            labels = await _template_labels(ctx, principal, jc, template_labels)
        pairs.append((jc.name, str(jc.spec.get("pool") or "default"), labels))
    return dataclasses.replace(report, warnings=await pools.unserved(ctx, pairs))


async def _template_labels(
    ctx: Context, principal: Principal, jc: JobConfigDecl, in_file: dict[str, dict[str, str]]
) -> dict[str, str]:
    """The labels a jobconfig of the file takes from its template (none without one).

    A server's template the caller may not view counts as none: a warning must not tell
    its labels (the apply refuses such a reference anyway).
    """
    if jc.template is not None and jc.template in in_file:
        return in_file[jc.template]
    try:
        if jc.template is not None:
            template = await ctx.store.template_get_by_name(jc.template)
        elif isinstance(jc.spec.get("template_id"), int):
            template = await ctx.store.template_get(int(jc.spec["template_id"]))
        else:
            return {}
    except NotFound:
        return {}  # refused elsewhere: nothing to warn about here
    if not await access.can(ctx, principal, "view", "templates", template):
        return {}
    return dict(template.labels)


#: How many times a real apply is planned when another one changed what it planned on.
_ATTEMPTS = 3


async def _write(
    ctx: Context,
    principal: Principal,
    report: ApplyReport,
    remote_addr: str | None,
    *,
    last: bool,
) -> ApplyReport | None:
    """Write a plan in one transaction; the report of what was done, or None when its
    basis changed meanwhile (unless ``last``: then that is the refusal)."""
    batch = Batch(ctx, principal, remote_addr)
    try:
        batch.expect(report)
        for item in report.templates:
            await batch.template(item)
        for item in report.items:
            await batch.jobconfig(item)
        ids = await ctx.store.apply_writes(batch.writes)
    except Refused as refused:
        raise _refusal(_mark_failed(report, refused)) from None
    except WriteRefused as exc:
        if isinstance(exc.error, Stale) and not last:
            return None
        raise _refusal(_mark_failed(report, batch.refused(exc))) from None
    if any(isinstance(w, ScheduleWrite | ScheduleDelete) for w in batch.writes):
        ctx.bus.schedules_changed()
    return dataclasses.replace(
        report,
        templates=[batch.written("template", item, ids) for item in report.templates],
        items=[batch.written("jobconfig", item, ids) for item in report.items],
    )


def _refusal(report: ApplyReport) -> ApplyRefused:
    first = next(i for i in [*report.templates, *report.items] if i.action is Action.FAILED)
    return ApplyRefused(
        f"nothing was applied: {first.name!r}: {first.error}", {"report": report_json(report)}
    )


def _mark_failed(report: ApplyReport, refused: Refused) -> ApplyReport:
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
