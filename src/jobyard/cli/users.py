"""``jobyard users ...`` and ``jobyard tokens ...``: accounts and personal API tokens."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from jobyard.cli.context import JsonFlag, OutputOpt, PlainFlag, state_of
from jobyard.cli.login import read_password
from jobyard.cli.lookup import parse_id
from jobyard.cli.render import fields_table, format_time, new_table
from jobyard.client import ApiClient, ApiError, JsonObject, collect_all

app = typer.Typer(
    name="users",
    help="Manage users (admins) and see yourself.",
    no_args_is_help=True,
)
tokens_app = typer.Typer(
    name="tokens",
    help="Personal API tokens: list, create (the value is shown once), revoke.",
    no_args_is_help=True,
)

USER_FIELDS = ("id", "name", "role", "active", "has_password", "created_at", "updated_at")
UserRef = Annotated[str, typer.Argument(help="User name or id.", show_default=False)]
RoleOption = Annotated[
    str | None, typer.Option("--role", help="admin or user.", show_default=False)
]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]
AskPassword = Annotated[
    bool, typer.Option("--ask-password", help="Prompt for the password (hidden).")
]


async def resolve_user(api: ApiClient, ref: str) -> JsonObject:
    """The user with id ``ref`` (all digits) or named ``ref``; a 404 when there is none."""
    user_id = parse_id(ref)
    if user_id is not None:
        return await api.user_get(user_id)
    for user in await collect_all(lambda cursor: api.users_list(cursor=cursor, limit=100)):
        if user.get("name") == ref:
            return user
    raise ApiError(404, "not_found", f"no user named {ref!r}")


def users_table(items: Iterable[JsonObject]) -> Table:
    """A listing of users."""
    table = new_table()
    for column in ("ID", "NAME", "ROLE", "ACTIVE", "PASSWORD", "CREATED"):
        table.add_column(column)
    for u in items:
        table.add_row(
            str(u.get("id")),
            escape(str(u.get("name"))),
            str(u.get("role")),
            "yes" if u.get("active") else "[red]no[/]",
            "yes" if u.get("has_password") else "no",
            format_time(u.get("created_at")),
        )
    return table


@app.command("list")
def list_command(
    ctx: typer.Context,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """List users (a non-admin sees only themselves)."""
    state = state_of(ctx)
    items = state.call(
        lambda api: collect_all(lambda cursor: api.users_list(cursor=cursor, limit=100))
    )
    if json_output:
        state.print_json({"items": items})
    else:
        state.out.print(users_table(items))


def _password(ctx: typer.Context, from_stdin: bool, ask: bool) -> str | None:
    if from_stdin or ask:
        return read_password(state_of(ctx), from_stdin)
    return None


@app.command("add")
def add_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name.", show_default=False)],
    role: RoleOption = None,
    password_stdin: PasswordStdin = False,
    ask_password: AskPassword = False,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Create a user (admins). Without a password they can only use tokens."""
    state = state_of(ctx)
    spec: dict[str, Any] = {"name": name, "role": role or "user"}
    password = _password(ctx, password_stdin, ask_password)
    if password is not None:
        spec["password"] = password
    user = state.call(lambda api: api.user_create(spec))
    if json_output:
        state.print_json(user)
    else:
        state.out.print(f"created user {user.get('id')} ({escape(str(user.get('name')))})")


@app.command("show")
def show_command(
    ctx: typer.Context,
    user: UserRef,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Show one user."""
    state = state_of(ctx)
    item = state.call(lambda api: resolve_user(api, user))
    if json_output:
        state.print_json(item)
    else:
        state.out.print(fields_table(item, USER_FIELDS))


@app.command("update")
def update_command(
    ctx: typer.Context,
    user: UserRef,
    role: RoleOption = None,
    password_stdin: PasswordStdin = False,
    ask_password: AskPassword = False,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="Remove the password (tokens only).")
    ] = False,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Change a user's role or password (a non-admin: only their own password)."""
    state = state_of(ctx)
    changes: dict[str, Any] = {}
    if role is not None:
        changes["role"] = role
    password = _password(ctx, password_stdin, ask_password)
    if password is not None:
        changes["password"] = password
    elif no_password:
        changes["password"] = None
    if not changes:
        state.fail(
            "nothing to change: give --role, --password-stdin, --ask-password or --no-password"
        )

    async def work(api: ApiClient) -> JsonObject:
        found = await resolve_user(api, user)
        return await api.user_patch(int(found["id"]), changes)

    item = state.call(work)
    if json_output:
        state.print_json(item)
    else:
        state.out.print(fields_table(item, USER_FIELDS))


@app.command("deactivate")
def deactivate_command(
    ctx: typer.Context,
    user: UserRef,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Deactivate a user: their tokens are revoked, their not-started jobs CANCELLED."""
    state = state_of(ctx)

    async def work(api: ApiClient) -> JsonObject:
        found = await resolve_user(api, user)
        return await api.user_deactivate(int(found["id"]))

    done = state.call(work)
    if json_output:
        state.print_json(done)
        return
    name = escape(str(done["user"]["name"]))
    jobs = done.get("jobs_cancelled") or []
    state.out.print(
        f"deactivated user {name}: {done.get('tokens_revoked', 0)} token(s) revoked, "
        f"{len(jobs)} job(s) cancelled" + (f" ({', '.join(map(str, jobs))})" if jobs else "")
    )


@app.command("activate")
def activate_command(ctx: typer.Context, user: UserRef) -> None:
    """Reactivate a user (they log in again or get new tokens)."""
    state = state_of(ctx)

    async def work(api: ApiClient) -> JsonObject:
        found = await resolve_user(api, user)
        return await api.user_activate(int(found["id"]))

    item = state.call(work)
    state.out.print(f"activated user {escape(str(item.get('name')))}")


@app.command("me")
def me_command(
    ctx: typer.Context,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Who the current token belongs to."""
    state = state_of(ctx)
    item = state.call(lambda api: api.me())
    if json_output:
        state.print_json(item)
        return
    state.out.print(fields_table(item, ("name", "role", "token_kind", "job_id")))


# -- tokens ------------------------------------------------------------------------------


def tokens_table(items: Iterable[JsonObject]) -> Table:
    """A listing of tokens (never their values)."""
    table = new_table()
    for column in ("ID", "NAME", "KIND", "CREATED", "EXPIRES", "STATE"):
        table.add_column(column)
    for t in items:
        state = "[red]revoked[/]" if t.get("revoked") else "active"
        table.add_row(
            str(t.get("id")),
            escape(str(t.get("name"))),
            str(t.get("kind")),
            format_time(t.get("created_at")),
            format_time(t.get("expires_at")) if t.get("expires_at") else "never",
            state,
        )
    return table


@tokens_app.command("list")
def tokens_list_command(
    ctx: typer.Context,
    user: Annotated[
        str | None, typer.Option("--user", help="Whose tokens (admins).", show_default=False)
    ] = None,
    all_kinds: Annotated[
        bool, typer.Option("--all", help="Also login and session tokens.")
    ] = False,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """List your personal tokens (admins: anyone's with --user)."""
    state = state_of(ctx)
    items = state.call(lambda api: api.tokens_list(user=user, all_kinds=all_kinds))
    if json_output:
        state.print_json({"items": items})
    elif not items:
        state.err.print("no tokens (create one with: jobyard tokens create NAME)")
    else:
        state.out.print(tokens_table(items))


@tokens_app.command("create")
def tokens_create_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="What the token is for.", show_default=False)],
    expires_in_days: Annotated[
        float | None,
        typer.Option("--expires-in-days", help="Expire after this many days.", show_default=False),
    ] = None,
    expires_at: Annotated[
        str | None,
        typer.Option(
            "--expires-at", help="Expire at this ISO time (UTC if no zone).", show_default=False
        ),
    ] = None,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Create a personal token; its value is printed this once."""
    state = state_of(ctx)
    spec: dict[str, Any] = {"name": name}
    if expires_in_days is not None:
        spec["expires_in_days"] = expires_in_days
    if expires_at is not None:
        spec["expires_at"] = expires_at
    item = state.call(lambda api: api.token_create(spec))
    if json_output:
        state.print_json(item)
        return
    state.err.print(
        f"created token {item.get('id')} ({escape(name)}); copy it now, it is not shown again:"
    )
    typer.echo(item["token"])


@tokens_app.command("revoke")
def tokens_revoke_command(
    ctx: typer.Context,
    token_id: Annotated[int, typer.Argument(help="Token id.", min=1, show_default=False)],
) -> None:
    """Revoke a token: it stops working at once."""
    state = state_of(ctx)
    state.call(lambda api: api.token_revoke(token_id))
    state.out.print(f"revoked token {token_id}")
