"""What the writes of an apply would refuse, found while planning.

A dry run then shows the refusal (the item ``failed`` with the server's reason), and a
real apply refuses before its first write instead of putting writes back. Checked here:
what a jobconfig runs (package, entry point, command, template), a name already taken
by a jobconfig the caller may not see (the answer ``POST /jobconfigs`` would give), and
each schedule to create or change (expression, zone, interval). The writes still check
everything themselves; these are the same checks, run early.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jobyard.core.errors import Conflict, InvalidInput, JobyardError, NotFound
from jobyard.core.schedules import Schedule, ScheduleSpec, validate
from jobyard.core.templates import RunTarget, effective_target
from jobyard.service import access, jobconfigs, schedules
from jobyard.service.apply.plan import Action, PendingPackage, PlanItem, SchedulePlanItem
from jobyard.service.apply.templatespec import PendingTemplate
from jobyard.service.context import Context, Principal


def reason_of(exc: JobyardError) -> str:
    """A refusal as the report writes it: message, code and details."""
    detail = "; ".join(f"{k}: {v}" for k, v in exc.details.items())
    return f"{exc.message} ({exc.code})" + (f" {detail}" if detail else "")


def schedule_values(body: Mapping[str, Any]) -> dict[str, Any]:
    """A schedule body of the plan as spec fields (``start_at`` text becomes a time)."""
    values = dict(body)
    start = values.get("start_at")
    if isinstance(start, str):
        try:
            values["start_at"] = datetime.fromisoformat(start)
        except ValueError:
            raise InvalidInput(
                f"start_at {start!r} is not an ISO 8601 date-time", {"field": "start_at"}
            ) from None
    return values


async def precheck(
    ctx: Context,
    principal: Principal,
    item: PlanItem,
    existing: Mapping[int, Schedule],
    template_targets: Mapping[str, RunTarget],
) -> PlanItem:
    """The item, ``failed`` with the reason a write of it would be refused."""
    if item.action is Action.FAILED:
        return item
    if item.desired is not None and item.action in (Action.CREATE, Action.UPDATE):
        try:
            await _check_target(ctx, principal, item.desired, template_targets)
            if item.action is Action.CREATE:
                await _check_name_free(ctx, item.name)
        except (InvalidInput, Conflict) as exc:
            return dataclasses.replace(item, action=Action.FAILED, error=reason_of(exc))
    for sched in item.schedules or ():
        reason = _schedule_problem(ctx, sched, existing)
        if reason is None:
            continue
        marked = tuple(
            dataclasses.replace(s, action=Action.FAILED, error=reason) if s is sched else s
            for s in item.schedules or ()
        )
        error = f"schedule {sched.name!r} refused: {reason}"
        return dataclasses.replace(item, action=Action.FAILED, error=error, schedules=marked)
    return item


async def _check_target(
    ctx: Context,
    principal: Principal,
    desired: Mapping[str, Any],
    template_targets: Mapping[str, RunTarget],
) -> None:
    package_id = desired.get("package_id")
    own = RunTarget(package_id, desired.get("entrypoint"), desired.get("command"))
    template = desired.get("template_id")
    if isinstance(template, PendingTemplate):
        target = effective_target(own, template_targets.get(template.name))
        template = None
    else:
        target = own
    if isinstance(target.package_id, PendingPackage):
        return  # a dry run of a package not pushed yet: its entry points are unknown
    if isinstance(template, int):
        try:
            found = await ctx.store.template_get(template)
        except NotFound:
            raise jobconfigs.unknown_template(template) from None
        if not await access.can(ctx, principal, "view", "templates", found):
            raise jobconfigs.unknown_template(template)
    await jobconfigs.check_run_target(
        ctx, target.package_id, target.entrypoint, target.command, template
    )


async def _check_name_free(ctx: Context, name: str) -> None:
    """A jobconfig to create whose name is taken (by one the caller may not view, since
    a viewable one would be planned as an update): the conflict creating it answers."""
    try:
        await ctx.store.jobconfig_get_by_name(name)
    except NotFound:
        return
    raise Conflict(f"a jobconfig named {name!r} already exists", {"name": name})


def _schedule_problem(
    ctx: Context, item: SchedulePlanItem, existing: Mapping[int, Schedule]
) -> str | None:
    """Why the server would refuse this schedule's creation or change (None: it would not)."""
    allow = ctx.settings.scheduler.allow_seconds
    try:
        if item.action is Action.CREATE and item.body is not None:
            spec = ScheduleSpec(**schedule_values(item.body))
        elif item.action is Action.UPDATE and item.body is not None:
            current = existing.get(item.schedule_id or 0)
            if current is None:
                return None
            spec, _ = schedules.patched(current, schedule_values(item.body))  # as a PATCH
            allow = allow or spec.cron == current.cron
        else:
            return None
        validate(spec, allow_seconds=allow)
    except InvalidInput as exc:
        return reason_of(exc)
    return None
