"""The console's views of a jobconfig's configuration: its macros, schedules and YAML.

Each function here is what one console page or action calls. They put a page together
from the use cases behind the REST routes (:mod:`jobyard.service.macros`,
:mod:`jobyard.service.schedules`, :mod:`jobyard.service.apply`) with the signed-in
principal, so the console's access rules are the API's by construction: every function
first reads the jobconfig as the caller (the 404 of a missing one when it may not view
it), then calls the use case, which checks its own rights again.

Secure macro values never leave this module: a level's listing is turned into
:class:`MacroRow` with ``value`` None for a secure macro, and the resolved preview is
the API's (secure values ``*****``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from jobyard.core.cron.preview import preview
from jobyard.core.errors import Conflict, InvalidInput, NotFound
from jobyard.core.macros import ResolvedMacro, StoredMacro
from jobyard.core.models import JobConfig
from jobyard.core.schedules import Schedule, ScheduleSpec, parse_every, validate
from jobyard.service import access, jobconfigs, macros, schedules
from jobyard.service.apply.document import ApplyFile, SpecError, parse_apply_text
from jobyard.service.apply.export import export
from jobyard.service.apply.exportform import dump_yaml
from jobyard.service.apply.report import ApplyReport, report_json
from jobyard.service.apply.run import apply_document, document_error
from jobyard.service.context import Context, Principal
from jobyard.service.macros import ACCOUNT, Level

# -- macros --------------------------------------------------------------------------------

#: The levels a jobconfig's macros page shows, lowest first (each overrides the ones
#: before), by the key used in the console's URLs.
LEVEL_KEYS: tuple[str, ...] = ("account", "template", "user", "jobconfig")
#: Longest macro name accepted (the API's path parameter allows as much).
MAX_NAME = 128


@dataclass(frozen=True, slots=True)
class MacroRow:
    """A macro as the console shows it: a secure one by name only (``value`` None)."""

    name: str
    value: str | None
    secure: bool
    updated_at: datetime | None
    updated_by: str | None

    @classmethod
    def of(cls, m: StoredMacro) -> MacroRow:
        """The row of a stored macro; its value is dropped when it is secure."""
        value = None if m.secure else m.value
        return cls(m.name, value, m.secure, m.updated_at, m.updated_by)


@dataclass(frozen=True, slots=True)
class MacroLevel:
    """One level of macros that applies to a jobconfig, as the caller may see it."""

    key: str
    level: Level
    rows: list[MacroRow]
    may_write: bool


@dataclass(frozen=True, slots=True)
class MacrosView:
    """A jobconfig's macros page: each visible level and what a job would get."""

    jobconfig: JobConfig
    levels: list[MacroLevel]
    resolved: list[ResolvedMacro]
    resolved_for: str | None


async def _level(ctx: Context, principal: Principal, jc: JobConfig, key: str) -> Level:
    """The level ``key`` of this jobconfig: its template's and the caller's own user
    level come from the server, never from the form."""
    if key == "account":
        return ACCOUNT
    if key == "template":
        if jc.template_id is None:
            raise NotFound("this jobconfig has no template, hence no template macros")
        return Level("template", jc.template_id)
    if key == "user":
        return await macros.me(ctx, principal)
    if key == "jobconfig":
        return Level("jobconfig", jc.id)
    raise NotFound("no such page")


async def _may_write(ctx: Context, principal: Principal, jc: JobConfig, level: Level) -> bool:
    """Whether the caller may change this level (what ``macros.set_macro`` checks)."""
    if principal.is_job:
        return False
    if level.scope == "account":
        return principal.is_admin
    if level.scope == "template":
        template = await ctx.store.template_get(level.scope_id)
        return await access.can(ctx, principal, "edit", "templates", template)
    if level.scope == "jobconfig":
        return await access.can(ctx, principal, "edit", "jobconfigs", jc)
    return True  # the caller's own user level


async def macros_view(ctx: Context, principal: Principal, jobconfig_id: int) -> MacrosView:
    """The macros of every level that applies to a jobconfig the caller may view.

    A level the caller may not read (a template it may not view; a token without a user
    record has no user level) is left out, as the API would answer it 404.
    """
    jc = await jobconfigs.get(ctx, principal, jobconfig_id)
    levels: list[MacroLevel] = []
    for key in LEVEL_KEYS:
        try:
            level = await _level(ctx, principal, jc, key)
            rows = await macros.list_level(ctx, principal, level)
        except NotFound:
            continue
        may_write = await _may_write(ctx, principal, jc, level)
        levels.append(MacroLevel(key, level, [MacroRow.of(m) for m in rows], may_write))
    sources, resolved = await macros.preview(ctx, principal, jc.id, None)
    ordered = [m for _, m in sorted(resolved.items())]
    return MacrosView(jc, levels, ordered, sources.user_name)


def _check_name(name: str) -> str:
    if not name:
        raise InvalidInput("give the macro a name", {"field": "name"})
    if len(name) > MAX_NAME:
        raise InvalidInput(
            f"a macro name may hold {MAX_NAME} characters", {"field": "name", "limit": MAX_NAME}
        )
    return name


async def set_macro(
    ctx: Context,
    principal: Principal,
    jobconfig_id: int,
    key: str,
    name: str,
    value: str,
    *,
    secure: bool,
    remote_addr: str | None = None,
) -> Level:
    """Create or replace a macro of one of the jobconfig's levels (``PUT .../macros/NAME``)."""
    jc = await jobconfigs.get(ctx, principal, jobconfig_id)
    level = await _level(ctx, principal, jc, key)
    await macros.set_macro(
        ctx, principal, level, _check_name(name), value, secure=secure, remote_addr=remote_addr
    )
    return level


async def delete_macro(
    ctx: Context,
    principal: Principal,
    jobconfig_id: int,
    key: str,
    name: str,
    *,
    remote_addr: str | None = None,
) -> Level:
    """Delete a macro of one of the jobconfig's levels (``DELETE .../macros/NAME``)."""
    jc = await jobconfigs.get(ctx, principal, jobconfig_id)
    level = await _level(ctx, principal, jc, key)
    await macros.delete_macro(ctx, principal, level, _check_name(name), remote_addr=remote_addr)
    return level


# -- schedules -----------------------------------------------------------------------------

#: Limits of the schedule form (the API's body allows as much).
MAX_CRON = 400
MAX_ZONE = 64
MAX_SCHEDULE_NAME = 128
#: Fire times the cron preview shows.
PREVIEW_COUNT = 5


@dataclass(frozen=True, slots=True)
class SchedulesView:
    """A jobconfig's schedules page."""

    jobconfig: JobConfig
    schedules: list[Schedule]
    may_edit: bool


async def schedules_view(ctx: Context, principal: Principal, jobconfig_id: int) -> SchedulesView:
    """The schedules of a jobconfig the caller may view, and whether it may change them."""
    jc = await jobconfigs.get(ctx, principal, jobconfig_id)
    found = await schedules.list_(ctx, principal, jc.id)
    may_edit = not principal.is_job and await access.can(ctx, principal, "edit", "jobconfigs", jc)
    return SchedulesView(jc, found, may_edit)


def _bounded(value: str, limit: int, field: str, what: str) -> str:
    if len(value) > limit:
        raise InvalidInput(f"{what} may hold {limit} characters", {"field": field, "limit": limit})
    return value


async def cron_preview(
    ctx: Context, principal: Principal, jobconfig_id: int, expr: str, timezone: str
) -> list[datetime]:
    """The next fire times of ``expr`` in ``timezone`` from now: what ``GET
    /api/v1/cron/next`` answers, with its friendly error (``InvalidInput``).

    An expression the preview accepts but a schedule may not use (one that fires more
    often than once a minute, without ``scheduler.allow_seconds``) gets the error that
    creating the schedule would answer, so the form says it before it is sent.
    """
    await jobconfigs.get(ctx, principal, jobconfig_id)
    expr = _bounded(expr.strip(), MAX_CRON, "cron", "a cron expression")
    zone = _bounded(timezone.strip() or "UTC", MAX_ZONE, "timezone", "a time zone")
    times = preview(expr, tz=zone, count=PREVIEW_COUNT)
    validate(
        ScheduleSpec(cron=expr, timezone=zone),
        allow_seconds=ctx.settings.scheduler.allow_seconds,
    )
    return times


async def create_schedule(
    ctx: Context,
    principal: Principal,
    jobconfig_id: int,
    *,
    cron: str,
    every: str,
    timezone: str,
    name: str,
    remote_addr: str | None = None,
) -> Schedule:
    """Add a cron or interval schedule (``POST .../schedules``); 422 says what to fix."""
    cron, every, name = cron.strip(), every.strip(), name.strip()
    if cron and every:
        raise InvalidInput("give a cron expression or an interval, not both", {"field": "cron"})
    if not cron and not every:
        raise InvalidInput("give a cron expression or an interval", {"field": "cron"})
    spec = ScheduleSpec(
        cron=_bounded(cron, MAX_CRON, "cron", "a cron expression") or None,
        interval_minutes=parse_every(every) if every else None,
        timezone=_bounded(timezone.strip() or "UTC", MAX_ZONE, "timezone", "a time zone"),
        name=_bounded(name, MAX_SCHEDULE_NAME, "name", "a schedule name") or None,
    )
    return await schedules.create(
        ctx, jobconfig_id, spec, principal=principal, remote_addr=remote_addr
    )


#: What the schedule buttons do.
SCHEDULE_ACTIONS: frozenset[str] = frozenset({"enable", "disable", "delete"})


async def change_schedule(
    ctx: Context,
    principal: Principal,
    jobconfig_id: int,
    schedule_id: int,
    action: str,
    *,
    remote_addr: str | None = None,
) -> None:
    """Enable (resume), disable (pause) or delete a schedule, as the API's routes do."""
    if action not in SCHEDULE_ACTIONS:
        raise NotFound("no such page")
    if action == "delete":
        await schedules.delete(
            ctx, jobconfig_id, schedule_id, principal=principal, remote_addr=remote_addr
        )
        return
    await schedules.set_paused(
        ctx, principal, jobconfig_id, schedule_id, action == "disable", remote_addr=remote_addr
    )


# -- YAML through server-side apply --------------------------------------------------------

#: How the console names the document in its problems (``document:3: ...``).
SOURCE = "document"


class PlanChanged(Conflict):
    """Apply refused: the plan of the document is no longer what the user reviewed
    (``details.report``: the plan as it is now)."""

    code = "plan_changed"


def normalise(text: str) -> str:
    """The document as planned and applied: browsers send a textarea's line breaks as
    CRLF, YAML means LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def document_digest(text: str) -> str:
    """The sha256 of a (normalised) document: Apply proves it is the one planned."""
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


def plan_digest(report: ApplyReport) -> str:
    """The sha256 of a plan: Apply proves the server would still do what was shown."""
    body = json.dumps(report_json(report), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Planned:
    """A dry run of a document, with the digests Apply must send back."""

    report: ApplyReport
    document_sha256: str
    plan_sha256: str


async def yaml_document(
    ctx: Context, principal: Principal, jobconfig_id: int
) -> tuple[JobConfig, str]:
    """A jobconfig and its apply document (what ``GET /api/v1/export?name=`` answers)."""
    jc = await jobconfigs.get(ctx, principal, jobconfig_id)
    return jc, dump_yaml(await export(ctx, principal, [jc.name]))


def _parsed(text: str) -> ApplyFile:
    """The document validated; its problems as the API's 422 ``invalid_document``."""
    try:
        return parse_apply_text(normalise(text), source=SOURCE)
    except SpecError as exc:
        raise document_error(exc) from None


async def plan_yaml(ctx: Context, principal: Principal, jobconfig_id: int, text: str) -> Planned:
    """The plan of a document (``POST /api/v1/apply?dry_run=true``), changing nothing."""
    await jobconfigs.get(ctx, principal, jobconfig_id)
    report = await apply_document(ctx, principal, _parsed(text), dry_run=True)
    return Planned(report, document_digest(text), plan_digest(report))


async def apply_yaml(
    ctx: Context,
    principal: Principal,
    jobconfig_id: int,
    text: str,
    *,
    document_sha256: str,
    plan_sha256: str,
    remote_addr: str | None = None,
) -> ApplyReport:
    """Apply exactly the document that was planned (``POST /api/v1/apply``).

    Refused with 409 when the document is not the one planned, or when planning it now
    gives another plan than the one shown (someone changed the jobconfig meanwhile):
    :class:`PlanChanged` carries the new plan to review.
    """
    await jobconfigs.get(ctx, principal, jobconfig_id)
    if document_digest(text) != document_sha256:
        raise Conflict(
            "the document changed since it was planned: press Plan and review the plan "
            "before applying"
        )
    document = _parsed(text)
    now = await apply_document(ctx, principal, document, dry_run=True)
    if plan_digest(now) != plan_sha256:
        raise PlanChanged(
            "the server's configuration changed since your plan: review the new plan, "
            "then apply again",
            {"report": report_json(now)},
        )
    return await apply_document(ctx, principal, document, remote_addr=remote_addr)
