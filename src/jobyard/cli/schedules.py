"""``jobyard schedules ...``: when a jobconfig runs by itself (Quartz cron or an interval).

Every command names the jobconfig (name or id) first, then the schedule (id or name).
The server checks everything (expression, zone, interval, name): its 422 says what to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from jobyard.cli.context import CliState, JsonFlag, OutputOpt, PlainFlag, state_of
from jobyard.cli.lookup import parse_id, resolve_jobconfig
from jobyard.cli.render import fields_table, format_value, new_table
from jobyard.cli.run import parse_macros
from jobyard.client import ApiClient, ApiError, JsonObject

app = typer.Typer(
    name="schedules",
    help="Schedules of jobconfigs: Quartz cron expressions or intervals, each in a time zone.",
    no_args_is_help=True,
)

MISFIRE_POLICIES = ("fire_once", "skip")
SCHEDULE_FIELDS = (
    "id",
    "jobconfig_id",
    "name",
    "kind",
    "cron",
    "every",
    "start_at",
    "timezone",
    "misfire_policy",
    "paused",
    "macros",
    "description",
    "next_fire_at",
    "next_fire_local",
    "last_fire_at",
    "last_result",
    "version",
    "created_at",
    "updated_at",
)

ConfigRef = Annotated[str, typer.Argument(help="Jobconfig name or id.", show_default=False)]
ScheduleRef = Annotated[
    str, typer.Argument(help="Schedule id or name (see `schedules list`).", show_default=False)
]
CronOpt = Annotated[
    str | None,
    typer.Option(
        "--cron",
        help="Quartz cron expression, quoted: seconds minutes hours day-of-month month "
        "day-of-week \\[year], e.g. '0 0 2 * * ?' (02:00 every day). Not with --every.",
        show_default=False,
    ),
]
EveryOpt = Annotated[
    str | None,
    typer.Option(
        "--every",
        help="Interval in hours and/or minutes, e.g. 15m, 2h, 1h30m (1 minute at least). "
        "Not with --cron.",
        show_default=False,
    ),
]
StartOpt = Annotated[
    str | None,
    typer.Option(
        "--start",
        help="ISO 8601 date-time: the anchor of an interval (default: now, on the minute), "
        "'not before' for cron. Without an offset it is a wall time in --tz.",
        show_default=False,
    ),
]
TzOpt = Annotated[
    str | None,
    typer.Option(
        "--tz",
        help="IANA time zone of the cron fields and of --start, e.g. Europe/Berlin (default UTC).",
        show_default=False,
    ),
]
MisfireOpt = Annotated[
    str | None,
    typer.Option(
        "--misfire",
        help="Firings missed while the server was down: fire_once (one catch-up job, the "
        "default) or skip (none).",
        show_default=False,
    ),
]
NameOpt = Annotated[
    str | None,
    typer.Option(
        "--name",
        help="Name, unique within the jobconfig (default: the cron expression, or 'every 1h30m').",
        show_default=False,
    ),
]
MacroOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--macro",
        help="A job-level macro NAME=VALUE for the jobs it submits (repeatable).",
        show_default=False,
    ),
]
DescriptionOpt = Annotated[
    str | None,
    typer.Option("--description", help="Free text about the schedule.", show_default=False),
]


# -- lookups and rendering ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A jobconfig and one of its schedules."""

    jobconfig: JsonObject
    schedule: JsonObject

    @property
    def ids(self) -> tuple[int, int]:
        """``(jobconfig_id, schedule_id)``."""
        return int(self.jobconfig["id"]), int(self.schedule["id"])


async def resolve_schedule(api: ApiClient, config: str, ref: str) -> Target:
    """The schedule with id ``ref`` (all digits) or named ``ref`` of the jobconfig ``config``."""
    jobconfig = await resolve_jobconfig(api, config)
    items = await api.schedules_list(int(jobconfig["id"]))
    wanted = parse_id(ref)
    if wanted is not None:
        for item in items:
            if item.get("id") == wanted:
                return Target(jobconfig, item)
    name = " ".join(ref.split())
    for item in items:
        if item.get("name") in (ref, ref.strip(), name):
            return Target(jobconfig, item)
    raise ApiError(404, "not_found", f"no schedule {ref!r} on jobconfig {jobconfig.get('name')!r}")


def timing_text(schedule: Mapping[str, Any]) -> str:
    """``0 0 2 * * ?`` for cron, ``every 1h30m`` for an interval."""
    if schedule.get("cron"):
        return str(schedule["cron"])
    minutes = schedule.get("interval_minutes")
    if not isinstance(minutes, int):
        every = schedule.get("every") or {}
        minutes = int(every.get("hours") or 0) * 60 + int(every.get("minutes") or 0)
    hours, mins = divmod(minutes, 60)
    return "every " + (f"{hours}h" if hours else "") + (f"{mins}m" if mins or not hours else "")


def local_time(value: Any, *, offset: bool = True) -> str:
    """A fire time in the schedule's own zone, with its offset: ``2026-01-01 02:00:00 +01:00``."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    wall = parsed.strftime("%Y-%m-%d %H:%M:%S")
    zone = parsed.strftime("%z")
    return f"{wall} {zone[:3]}:{zone[3:]}" if offset and zone else wall


def schedules_table(items: Iterable[JsonObject]) -> Table:
    """A listing of schedules."""
    table = new_table()
    columns = ("ID", "NAME", "KIND", "CRON/EVERY", "TZ", "MISFIRE", "PAUSED", "NEXT FIRE (TZ)")
    for column in (*columns, "LAST RESULT"):
        table.add_column(
            column,
            justify="right" if column == "ID" else "left",
            no_wrap=column in ("ID", "KIND", "PAUSED", "NEXT FIRE (TZ)"),
        )
    for item in items:
        paused = bool(item.get("paused"))
        table.add_row(
            str(item.get("id", "")),
            Text(str(item.get("name", ""))),
            format_value(item.get("kind")),
            Text(timing_text(item)),
            Text(format_value(item.get("timezone"))),
            format_value(item.get("misfire_policy")),
            Text("yes", style="yellow") if paused else Text("no"),
            local_time(item.get("next_fire_at_local"), offset=False)
            or ("paused" if paused else "none"),
            Text(format_value(item.get("last_result"))),
        )
    return table


def show_schedule(state: CliState, item: JsonObject, *, json_output: bool) -> None:
    """One schedule: raw JSON, or a field table (fire time also in the schedule's zone)."""
    if json_output:
        state.print_json(item)
        return
    shown = dict(item)
    shown["every"] = timing_text(item) if item.get("kind") == "interval" else None
    shown["next_fire_local"] = local_time(item.get("next_fire_at_local"))
    extra = [k for k in item if k not in (*SCHEDULE_FIELDS, "interval_minutes")]
    extra = [k for k in extra if k != "next_fire_at_local"]
    state.out.print(fields_table(shown, [*SCHEDULE_FIELDS, *extra]))


def _label(item: Mapping[str, Any], jobconfig: Mapping[str, Any]) -> str:
    return (
        f"schedule {item.get('id')} ({escape(str(item.get('name')))}) "
        f"of jobconfig {escape(str(jobconfig.get('name')))}"
    )


def _check_misfire(value: str | None) -> str | None:
    if value is not None and value not in MISFIRE_POLICIES:
        raise typer.BadParameter(
            f"{value!r} is not one of {', '.join(MISFIRE_POLICIES)}", param_hint="--misfire"
        )
    return value


def _body(
    *,
    cron: str | None,
    every: str | None,
    start: str | None,
    tz: str | None,
    misfire: str | None,
    name: str | None,
    macros: dict[str, str] | None,
    description: str | None,
    paused: bool | None,
) -> JsonObject:
    """The request body: only the options that were given."""
    if cron is not None and every is not None:
        raise typer.BadParameter("give --cron or --every, not both", param_hint="--cron/--every")
    values: dict[str, Any] = {
        "cron": cron,
        "every": every,
        "start_at": start,
        "timezone": tz,
        "misfire_policy": _check_misfire(misfire),
        "name": name,
        "macros": macros,
        "description": description,
        "paused": paused,
    }
    return {k: v for k, v in values.items() if v is not None}


# -- commands -----------------------------------------------------------------------


@app.command("list")
def list_command(
    ctx: typer.Context,
    config: ConfigRef,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """List a jobconfig's schedules with their next fire times (in each schedule's zone)."""
    state = state_of(ctx)

    async def fetch(api: ApiClient) -> list[JsonObject]:
        jobconfig = await resolve_jobconfig(api, config)
        return await api.schedules_list(int(jobconfig["id"]))

    items = state.call(fetch)
    if json_output:
        state.print_json({"items": items})
    elif not items:
        state.err.print(
            f"no schedules on {escape(config)} (add one with: jobyard schedules add "
            f"{escape(config)} --cron EXPR | --every 1h)"
        )
    else:
        state.out.print(schedules_table(items))


@app.command("show")
def show_command(
    ctx: typer.Context,
    config: ConfigRef,
    schedule: ScheduleRef,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Show one schedule."""
    state = state_of(ctx)
    target = state.call(lambda api: resolve_schedule(api, config, schedule))
    show_schedule(state, target.schedule, json_output=json_output)


@app.command("add")
def add_command(
    ctx: typer.Context,
    config: ConfigRef,
    cron: CronOpt = None,
    every: EveryOpt = None,
    start: StartOpt = None,
    tz: TzOpt = None,
    misfire: MisfireOpt = None,
    name: NameOpt = None,
    paused: Annotated[
        bool, typer.Option("--paused", help="Create it paused (resume it later).")
    ] = False,
    macro: MacroOpt = None,
    description: DescriptionOpt = None,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Add a schedule to a jobconfig: --cron EXPR or --every INTERVAL."""
    state = state_of(ctx)
    if cron is None and every is None:
        raise typer.BadParameter("give --cron EXPR or --every INTERVAL", param_hint="--cron")
    body = _body(
        cron=cron,
        every=every,
        start=start,
        tz=tz,
        misfire=misfire,
        name=name,
        macros=parse_macros(macro) if macro else None,
        description=description,
        paused=paused or None,
    )

    async def create(api: ApiClient) -> Target:
        jobconfig = await resolve_jobconfig(api, config)
        return Target(jobconfig, await api.schedule_create(int(jobconfig["id"]), body))

    target = state.call(create)
    if json_output:
        state.print_json(target.schedule)
        return
    state.err.print(f"created {_label(target.schedule, target.jobconfig)}")
    show_schedule(state, target.schedule, json_output=False)


@app.command("update")
def update_command(
    ctx: typer.Context,
    config: ConfigRef,
    schedule: ScheduleRef,
    cron: CronOpt = None,
    every: EveryOpt = None,
    start: StartOpt = None,
    tz: TzOpt = None,
    misfire: MisfireOpt = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Rename the schedule.", show_default=False)
    ] = None,
    paused: Annotated[
        bool | None,
        typer.Option(
            "--paused/--active", help="Pause it, or make it fire again.", show_default=False
        ),
    ] = None,
    macro: Annotated[
        list[str] | None,
        typer.Option(
            "--macro",
            help="A job-level macro NAME=VALUE (repeatable); the given ones replace all of "
            "the schedule's macros.",
            show_default=False,
        ),
    ] = None,
    clear_macros: Annotated[
        bool, typer.Option("--clear-macros", help="Remove every macro of the schedule.")
    ] = False,
    description: DescriptionOpt = None,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Change a schedule: only the given options change (--cron on an interval switches kind)."""
    state = state_of(ctx)
    if macro and clear_macros:
        raise typer.BadParameter("give --macro or --clear-macros, not both", param_hint="--macro")
    macros = parse_macros(macro) if macro else ({} if clear_macros else None)
    body = _body(
        cron=cron,
        every=every,
        start=start,
        tz=tz,
        misfire=misfire,
        name=name,
        macros=macros,
        description=description,
        paused=paused,
    )
    if not body:
        raise typer.BadParameter("nothing to change: give at least one option (see --help)")

    async def patch(api: ApiClient) -> Target:
        target = await resolve_schedule(api, config, schedule)
        return Target(target.jobconfig, await api.schedule_patch(*target.ids, body))

    target = state.call(patch)
    if json_output:
        state.print_json(target.schedule)
        return
    state.err.print(f"updated {_label(target.schedule, target.jobconfig)}")
    show_schedule(state, target.schedule, json_output=False)


@app.command("delete")
def delete_command(ctx: typer.Context, config: ConfigRef, schedule: ScheduleRef) -> None:
    """Delete a schedule (the jobs it submitted stay)."""
    state = state_of(ctx)

    async def delete(api: ApiClient) -> Target:
        target = await resolve_schedule(api, config, schedule)
        await api.schedule_delete(*target.ids)
        return target

    target = state.call(delete)
    state.out.print(f"deleted {_label(target.schedule, target.jobconfig)}")


def _toggle(ctx: typer.Context, config: str, schedule: str, *, pause: bool, json: bool) -> None:
    state = state_of(ctx)

    async def toggle(api: ApiClient) -> Target:
        target = await resolve_schedule(api, config, schedule)
        call = api.schedule_pause if pause else api.schedule_resume
        return Target(target.jobconfig, await call(*target.ids))

    target = state.call(toggle)
    if json:
        state.print_json(target.schedule)
        return
    label = _label(target.schedule, target.jobconfig)
    if pause:
        state.out.print(f"paused {label}")
    else:
        next_fire = local_time(target.schedule.get("next_fire_at_local")) or "none"
        state.out.print(f"resumed {label}; next fire {escape(next_fire)}")


@app.command("pause")
def pause_command(
    ctx: typer.Context,
    config: ConfigRef,
    schedule: ScheduleRef,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Pause a schedule: it submits no jobs until resumed (pausing twice is fine)."""
    _toggle(ctx, config, schedule, pause=True, json=json_output)


@app.command("resume")
def resume_command(
    ctx: typer.Context,
    config: ConfigRef,
    schedule: ScheduleRef,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Resume a paused schedule from its next fire time after now (no catch-up for the pause)."""
    _toggle(ctx, config, schedule, pause=False, json=json_output)
