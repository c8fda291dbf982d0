"""``jobyard policies ...`` (access policies of users) and ``jobyard audit`` (admins)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from jobyard.cli.context import JsonFlag, OutputOpt, PlainFlag, state_of
from jobyard.cli.lookup import parse_id, resolve_jobconfig
from jobyard.cli.render import format_time, new_table
from jobyard.cli.templates import resolve_template
from jobyard.cli.users import resolve_user
from jobyard.client import ApiClient, JsonObject, collect_all

app = typer.Typer(
    name="policies",
    help="Access policies (admins): grant users view, edit, delete or execute on "
    "jobconfigs and templates by name or id, '*', or 'template:<name or id>'; "
    "'execute adhoc *' lets a user submit ad-hoc jobs.",
    no_args_is_help=True,
)

UserRef = Annotated[str, typer.Argument(help="User name or id.", show_default=False)]
_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def policies_table(items: Iterable[JsonObject]) -> Table:
    """A listing of policies."""
    table = new_table()
    for column in ("ID", "ACTION", "RESOURCE", "SELECTOR", "CREATED"):
        table.add_column(column)
    for p in items:
        table.add_row(
            str(p.get("id")),
            str(p.get("action")),
            str(p.get("resource")),
            escape(str(p.get("selector"))),
            format_time(p.get("created_at")),
        )
    return table


@app.command("list")
def list_command(
    ctx: typer.Context,
    user: UserRef,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """List a user's policies."""
    state = state_of(ctx)

    async def work(api: ApiClient) -> list[JsonObject]:
        found = await resolve_user(api, user)
        return await api.policies_list(int(found["id"]))

    items = state.call(work)
    if json_output:
        state.print_json({"items": items})
    else:
        state.out.print(policies_table(items))


@app.command("grant")
def grant_command(
    ctx: typer.Context,
    user: UserRef,
    action: Annotated[
        str, typer.Argument(help="view, edit, delete or execute.", show_default=False)
    ],
    resource: Annotated[
        str,
        typer.Argument(
            help="jobconfigs, templates, or adhoc (ad-hoc jobs: only 'execute' on '*').",
            show_default=False,
        ),
    ],
    selector: Annotated[
        str,
        typer.Argument(
            help="A name or id, '*' (all), or for jobconfigs 'template:<name or id>'.",
            show_default=False,
        ),
    ],
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Grant USER the ACTION on the RESOURCE objects matching SELECTOR (any action implies view)."""
    state = state_of(ctx)

    async def work(api: ApiClient) -> JsonObject:
        found = await resolve_user(api, user)
        resolved = await resolve_selector(api, resource, selector)
        return await api.policy_grant(
            int(found["id"]), action=action, resource=resource, selector=resolved
        )

    policy = state.call(work)
    if json_output:
        state.print_json(policy)
    else:
        state.out.print(
            f"granted policy {policy.get('id')}: {escape(user)} may {policy.get('action')} "
            f"{policy.get('resource')} {escape(str(policy.get('selector')))}"
        )


async def resolve_selector(api: ApiClient, resource: str, selector: str) -> str:
    """A selector as the API takes it: names of jobconfigs and templates become ids.

    ``*``, ids and ``template:<id>`` pass unchanged; ``NAME`` (of a jobconfig or a
    template, after the resource) and ``template:NAME`` are looked up, like every other
    command that takes a name or an id. Other resources (``adhoc``) pass unchanged and
    the server says what it accepts.
    """
    text = selector.strip()
    if text == "*":
        return text
    kind, sep, rest = text.partition(":")
    if sep and kind == "template" and resource == "jobconfigs":
        if parse_id(rest) is not None:
            return text
        return f"template:{(await resolve_template(api, rest))['id']}"
    if sep or parse_id(text) is not None:
        return text
    if resource == "jobconfigs":
        return str((await resolve_jobconfig(api, text))["id"])
    if resource == "templates":
        return str((await resolve_template(api, text))["id"])
    return text


@app.command("revoke")
def revoke_command(
    ctx: typer.Context,
    user: UserRef,
    policy_id: Annotated[int, typer.Argument(help="Policy id (see `list`).", min=1)],
) -> None:
    """Revoke one of USER's policies."""
    state = state_of(ctx)

    async def work(api: ApiClient) -> None:
        found = await resolve_user(api, user)
        await api.policy_revoke(int(found["id"]), policy_id)

    state.call(work)
    state.out.print(f"revoked policy {policy_id} of {escape(user)}")


def parse_since(value: str | None, *, now: datetime | None = None) -> str | None:
    """``30m``, ``2h``, ``7d``, ``1w`` (ago) or an ISO 8601 time, as ISO 8601 for the API."""
    if value is None:
        return None
    text = value.strip()
    match = _RELATIVE.match(text)
    if match:
        delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return ((now or datetime.now(UTC)) - delta).isoformat()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither a duration (30m, 2h, 7d, 1w) nor an ISO 8601 time"
        ) from None
    return parsed.isoformat()


def parse_object(value: str | None) -> tuple[str | None, str | None]:
    """``TYPE`` or ``TYPE:ID`` as ``(object_type, object_id)``."""
    if value is None:
        return None, None
    kind, sep, ident = value.partition(":")
    if not kind or (sep and not ident):
        raise typer.BadParameter(f"{value!r}: expected TYPE or TYPE:ID (e.g. jobconfig:12)")
    return kind, ident or None


def audit_table(items: Iterable[JsonObject]) -> Table:
    """A listing of audit entries."""
    table = new_table()
    for column in ("ID", "AT", "ACTOR", "ACTION", "OBJECT", "FROM", "DETAILS"):
        table.add_column(column)
    for e in items:
        obj = str(e.get("object_type"))
        if e.get("object_id") is not None:
            obj += f":{e.get('object_id')}"
        details = e.get("details")
        table.add_row(
            str(e.get("id")),
            format_time(e.get("at")),
            escape(str(e.get("actor"))),
            escape(str(e.get("action"))),
            escape(obj),
            escape(str(e.get("remote_addr") or "")),
            escape(json.dumps(details, sort_keys=True)) if details else "",
        )
    return table


def audit_command(
    ctx: typer.Context,
    actor: Annotated[
        str | None,
        typer.Option("--actor", help="A user name (or scheduler, system).", show_default=False),
    ] = None,
    action: Annotated[
        str | None,
        typer.Option(
            "--action", help="Action prefix: jobconfig., job.cancel...", show_default=False
        ),
    ] = None,
    obj: Annotated[
        str | None,
        typer.Option("--object", help="TYPE or TYPE:ID, e.g. jobconfig:12.", show_default=False),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="30m, 2h, 7d, 1w ago, or an ISO 8601 time.", show_default=False
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Before this time.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many.", min=1)] = 50,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Who did what to which object, when and from where; newest first (admins)."""
    state = state_of(ctx)
    object_type, object_id = parse_object(obj)
    since_iso, until_iso = parse_since(since), parse_since(until)

    async def work(api: ApiClient) -> list[JsonObject]:
        return await collect_all(
            lambda cursor: api.audit_list(
                actor=actor,
                action=action,
                object_type=object_type,
                object_id=object_id,
                since=since_iso,
                until=until_iso,
                cursor=cursor,
                limit=min(limit, 500),
            ),
            max_items=limit,
        )

    items = state.call(work)
    if json_output:
        state.print_json({"items": items})
    else:
        state.out.print(audit_table(items))
