"""Schedule use cases: create, read, replace, patch, pause/resume, delete.

Every write computes the schedule's next fire time from the current time (so a
resumed or re-timed schedule never fires for the past) and wakes the scheduler.
"""

from __future__ import annotations

from dataclasses import asdict, fields, replace
from datetime import datetime, timedelta
from typing import Any

from jobyard.core.schedules import (
    Schedule,
    ScheduleSpec,
    default_anchor,
    default_name,
    next_after,
    validate,
)
from jobyard.core.timeutil import utcnow
from jobyard.core.validation import check_patch
from jobyard.service import access, auditlog
from jobyard.service.context import Context, Principal

SPEC_FIELDS: frozenset[str] = frozenset(f.name for f in fields(ScheduleSpec))
#: Fields whose change moves the next fire time.
TIMING_FIELDS: frozenset[str] = frozenset(
    {"cron", "interval_minutes", "start_at", "timezone", "paused"}
)
NULLABLE_FIELDS: frozenset[str] = frozenset({"cron", "interval_minutes", "start_at", "name"})


def first_fire(spec: ScheduleSpec, now: datetime) -> datetime | None:
    """When a (validated) schedule fires first if written now; None when paused or exhausted.

    ``start_at`` anchors an interval; for cron it means "not before".
    """
    if spec.paused:
        return None
    after = now
    if spec.cron is not None and spec.start_at is not None and spec.start_at > now:
        after = spec.start_at - timedelta(seconds=1)
    return next_after(spec.cron, spec.interval_minutes, spec.start_at, spec.timezone, after)


def prepare(
    ctx: Context, spec: ScheduleSpec, now: datetime, *, check_seconds: bool
) -> ScheduleSpec:
    """A spec validated (seconds in cron only where allowed, or unchanged) and, for an
    interval without ``start_at``, anchored at ``now``'s default anchor."""
    allow = ctx.settings.scheduler.allow_seconds or not check_seconds
    spec = validate(spec, allow_seconds=allow)
    if spec.interval_minutes is not None and spec.start_at is None:
        spec = replace(spec, start_at=default_anchor(now))
    return spec


def spec_of(schedule: Schedule) -> ScheduleSpec:
    """The writable part of a stored schedule."""
    return ScheduleSpec(**{k: v for k, v in asdict(schedule).items() if k in SPEC_FIELDS})


async def _guard(ctx: Context, principal: Principal | None, jobconfig_id: int, action: str) -> None:
    """A schedule follows its jobconfig: ``view`` to read it, ``edit`` to change it.

    ``principal`` None: an internal caller (template import, examples), not checked. A
    job's SESSION_ID changes no schedule (403), whoever its user is.
    """
    if principal is None:
        return
    if action != "view":
        access.refuse_job_token(principal, "create or change schedules")
    jobconfig = await ctx.store.jobconfig_get(jobconfig_id)
    await access.require(ctx, principal, action, "jobconfigs", jobconfig)


async def _audit(
    ctx: Context,
    principal: Principal | None,
    verb: str,
    schedule: Schedule | int,
    jobconfig_id: int,
    remote_addr: str | None,
) -> None:
    if principal is None:
        return
    schedule_id = schedule if isinstance(schedule, int) else schedule.id
    details = {"jobconfig_id": jobconfig_id}
    await auditlog.record(
        ctx, principal, f"schedule.{verb}", "schedule", schedule_id, details, remote_addr
    )


async def list_(ctx: Context, principal: Principal, jobconfig_id: int) -> list[Schedule]:
    """The schedules of a jobconfig the caller may view."""
    await _guard(ctx, principal, jobconfig_id, "view")
    return await ctx.store.schedules_list(jobconfig_id)


async def get(ctx: Context, principal: Principal, jobconfig_id: int, schedule_id: int) -> Schedule:
    """One schedule of a jobconfig the caller may view."""
    await _guard(ctx, principal, jobconfig_id, "view")
    return await ctx.store.schedule_get(jobconfig_id, schedule_id)


async def create(
    ctx: Context,
    jobconfig_id: int,
    spec: ScheduleSpec,
    *,
    principal: Principal | None = None,
    remote_addr: str | None = None,
) -> Schedule:
    """Validate (422 saying what to fix) and store; nothing is stored on bad input.

    With a ``principal`` (an API caller): needs ``edit`` on the jobconfig; audited.
    """
    await _guard(ctx, principal, jobconfig_id, "edit")
    now = utcnow()
    spec = prepare(ctx, spec, now, check_seconds=True)
    created = await ctx.store.schedule_insert(
        jobconfig_id, spec, next_fire_at=first_fire(spec, now), changed_by=_name(principal)
    )
    ctx.bus.schedules_changed()
    await _audit(ctx, principal, "create", created, jobconfig_id, remote_addr)
    return created


def _name(principal: Principal | None) -> str | None:
    """Who becomes the jobconfig's definer when a schedule's macros change."""
    return None if principal is None else principal.name


async def _store(
    ctx: Context,
    current: Schedule,
    spec: ScheduleSpec,
    *,
    retime: bool,
    check_seconds: bool,
    principal: Principal | None,
) -> Schedule:
    now = utcnow()
    spec = prepare(ctx, spec, now, check_seconds=check_seconds)
    next_fire_at = first_fire(spec, now) if retime else current.next_fire_at
    updated = await ctx.store.schedule_replace(
        current.jobconfig_id,
        current.id,
        spec,
        next_fire_at=next_fire_at,
        expected_version=current.version,
        changed_by=_name(principal),
    )
    ctx.bus.schedules_changed()
    return updated


async def replace_(
    ctx: Context,
    jobconfig_id: int,
    schedule_id: int,
    spec: ScheduleSpec,
    *,
    principal: Principal | None = None,
    remote_addr: str | None = None,
) -> Schedule:
    """PUT: every writable field is replaced; the next fire time is computed afresh."""
    await _guard(ctx, principal, jobconfig_id, "edit")
    current = await ctx.store.schedule_get(jobconfig_id, schedule_id)
    check_seconds = spec.cron != current.cron
    updated = await _store(
        ctx, current, spec, retime=True, check_seconds=check_seconds, principal=principal
    )
    await _audit(ctx, principal, "update", updated, jobconfig_id, remote_addr)
    return updated


async def patch(
    ctx: Context,
    principal: Principal,
    jobconfig_id: int,
    schedule_id: int,
    changes: dict[str, Any],
    *,
    remote_addr: str | None = None,
) -> Schedule:
    """PATCH: only the given fields change; timing changes re-time the schedule.

    Giving ``cron`` to an interval schedule (or ``interval_minutes`` to a cron one)
    switches its kind.
    """
    await _guard(ctx, principal, jobconfig_id, "edit")
    check_patch(changes, SPEC_FIELDS, NULLABLE_FIELDS, "schedule")
    current = await ctx.store.schedule_get(jobconfig_id, schedule_id)
    merged, retime = patched(current, changes)
    updated = await _store(
        ctx,
        current,
        merged,
        retime=retime,
        check_seconds=merged.cron != current.cron,
        principal=principal,
    )
    await _audit(ctx, principal, "update", updated, jobconfig_id, remote_addr)
    return updated


def patched(current: Schedule, changes: dict[str, Any]) -> tuple[ScheduleSpec, bool]:
    """The spec a PATCH of ``changes`` gives (not validated yet), and whether it moves
    the next fire time.

    Giving the other kind switches kind: the old timing fields go (an interval's anchor
    means nothing to a cron expression); a default name follows the expression.
    """
    merged = asdict(spec_of(current))
    if changes.get("cron") is not None and current.cron is None:
        merged.update(interval_minutes=None, start_at=None)
    if changes.get("interval_minutes") is not None and current.interval_minutes is None:
        merged.update(cron=None, start_at=None)
    if "name" not in changes and current.name == default_name(
        current.cron, current.interval_minutes
    ):
        merged["name"] = None
    merged.update(changes)
    retime = any(k in TIMING_FIELDS and v != getattr(current, k) for k, v in changes.items())
    return ScheduleSpec(**merged), retime


async def set_paused(
    ctx: Context,
    principal: Principal,
    jobconfig_id: int,
    schedule_id: int,
    paused: bool,
    *,
    remote_addr: str | None = None,
) -> Schedule:
    """Pause (no next fire time) or resume (next fire time after now; no catch-up)."""
    await _guard(ctx, principal, jobconfig_id, "edit")
    current = await ctx.store.schedule_get(jobconfig_id, schedule_id)
    if current.paused == paused:
        return current
    updated = await _store(
        ctx,
        current,
        replace(spec_of(current), paused=paused),
        retime=True,
        check_seconds=False,
        principal=principal,
    )
    verb = "pause" if paused else "resume"
    await _audit(ctx, principal, verb, updated, jobconfig_id, remote_addr)
    return updated


async def delete(
    ctx: Context,
    jobconfig_id: int,
    schedule_id: int,
    *,
    principal: Principal | None = None,
    remote_addr: str | None = None,
) -> None:
    """Delete a schedule; the jobs it created stay."""
    await _guard(ctx, principal, jobconfig_id, "edit")
    await ctx.store.schedule_delete(jobconfig_id, schedule_id)
    ctx.bus.schedules_changed()
    await _audit(ctx, principal, "delete", schedule_id, jobconfig_id, remote_addr)
