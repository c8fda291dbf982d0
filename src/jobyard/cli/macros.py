"""``jobyard macros ...``: macros of the account, a template, a user, yourself or a jobconfig.

Pick the level with exactly one of ``--account``, ``--template T``, ``--user U``,
``--me`` or ``--jobconfig C`` (names or ids). A secure value is never read from the
command line unless you insist with ``--value``: ``set NAME --secure`` asks for it
at a hidden prompt, or reads it from standard input with ``--value-stdin``. No
command ever prints a secure value (the server never sends one).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from jobyard.cli.context import (
    EXIT_INPUT,
    CliFailure,
    CliState,
    JsonFlag,
    OutputOpt,
    PlainFlag,
    state_of,
)
from jobyard.cli.lookup import parse_id, resolve_jobconfig
from jobyard.cli.render import format_time, new_table
from jobyard.client import API, ApiClient, ApiError, JsonObject

app = typer.Typer(
    name="macros",
    help="List, set, unset, import and export macros of a level; preview resolved macros.",
    no_args_is_help=True,
)

AccountOpt = Annotated[bool, typer.Option("--account", help="The account (public) level.")]
TemplateOpt = Annotated[
    str | None, typer.Option("--template", help="A template's level (name or id).")
]
UserOpt = Annotated[str | None, typer.Option("--user", help="A user's private level (name or id).")]
MeOpt = Annotated[bool, typer.Option("--me", help="Your own private level.")]
JobconfigOpt = Annotated[
    str | None, typer.Option("--jobconfig", help="A jobconfig's level (name or id).")
]


@dataclass(frozen=True, slots=True)
class LevelRef:
    """The level the options chose, before names are looked up."""

    kind: str  # account | template | user | me | jobconfig
    ref: str = ""

    @property
    def label(self) -> str:
        """For messages: ``account``, ``template T``..."""
        return self.kind if not self.ref else f"{self.kind} {self.ref}"


def _level(
    state: CliState,
    account: bool,
    template: str | None,
    user: str | None,
    me: bool,
    jobconfig: str | None,
) -> LevelRef:
    chosen = [
        LevelRef("account") if account else None,
        LevelRef("template", template) if template is not None else None,
        LevelRef("user", user) if user is not None else None,
        LevelRef("me") if me else None,
        LevelRef("jobconfig", jobconfig) if jobconfig is not None else None,
    ]
    picked = [c for c in chosen if c is not None]
    if len(picked) != 1:
        state.fail(
            "choose exactly one level: --account, --template T, --user U, --me or --jobconfig C",
            EXIT_INPUT,
        )
    return picked[0]


async def _object_id(api: ApiClient, collection: str, ref: str, what: str) -> int:
    found = parse_id(ref)
    if found is None:
        found = await api.find_id_by_name(collection, ref)
    if found is None:
        raise ApiError(404, "not_found", f"no {what} named {ref!r}")
    return found


async def level_base(api: ApiClient, level: LevelRef) -> str:
    """The API base path of a level's macros (names looked up)."""
    if level.kind == "account":
        return f"{API}/macros/account"
    if level.kind == "me":
        return f"{API}/me/macros"
    if level.kind == "jobconfig":
        jobconfig = await resolve_jobconfig(api, level.ref)
        return f"{API}/jobconfigs/{int(jobconfig['id'])}/macros"
    collection = "templates" if level.kind == "template" else "users"
    return f"{API}/{collection}/{await _object_id(api, collection, level.ref, level.kind)}/macros"


def macros_table(items: list[JsonObject]) -> Table:
    """A level's macros; secure ones show ``(secure)`` instead of a value."""
    table = new_table()
    for column in ("NAME", "VALUE", "SECURE", "UPDATED", "BY"):
        table.add_column(column)
    for item in items:
        secure = bool(item.get("secure"))
        value = Text("(secure)", style="dim") if secure else Text(str(item.get("value") or ""))
        table.add_row(
            Text(str(item.get("name", ""))),
            value,
            "yes" if secure else "no",
            format_time(item.get("updated_at")),
            Text(str(item.get("updated_by") or "")),
        )
    return table


def _show(state: CliState, items: list[JsonObject], json_output: bool, label: str) -> None:
    if json_output:
        state.print_json({"items": items})
    elif not items:
        state.err.print(f"no macros at the {label} level")
    else:
        state.out.print(macros_table(items))


@app.command("list")
def list_command(
    ctx: typer.Context,
    account: AccountOpt = False,
    template: TemplateOpt = None,
    user: UserOpt = None,
    me: MeOpt = False,
    jobconfig: JobconfigOpt = None,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """List the macros of one level (secure ones by name only)."""
    state = state_of(ctx)
    level = _level(state, account, template, user, me, jobconfig)

    async def work(api: ApiClient) -> list[JsonObject]:
        return await api.macros_list(await level_base(api, level))

    _show(state, state.call(work), json_output, level.label)


def _secret_value(value: str | None, value_stdin: bool) -> str:
    if value is not None:
        return value
    if value_stdin:
        text = sys.stdin.read()
        return text[:-1] if text.endswith("\n") else text
    if not sys.stdin.isatty():
        raise CliFailure("no terminal to ask for the secure value: use --value-stdin")
    entered: str = typer.prompt("Value", hide_input=True, confirmation_prompt=True)
    return entered


@app.command("set")
def set_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Macro name (an environment variable name).")],
    value_arg: Annotated[
        str | None,
        typer.Argument(metavar="[VALUE]", help="The value (not for --secure).", show_default=False),
    ] = None,
    secure: Annotated[
        bool, typer.Option("--secure", help="Encrypt at rest; never shown again.")
    ] = False,
    value: Annotated[
        str | None,
        typer.Option("--value", help="The value on the command line (even when secure)."),
    ] = None,
    value_stdin: Annotated[
        bool, typer.Option("--value-stdin", help="Read the value from standard input.")
    ] = False,
    account: AccountOpt = False,
    template: TemplateOpt = None,
    user: UserOpt = None,
    me: MeOpt = False,
    jobconfig: JobconfigOpt = None,
) -> None:
    """Create or replace a macro. With --secure the value is asked at a hidden prompt."""
    state = state_of(ctx)
    level = _level(state, account, template, user, me, jobconfig)
    given = [v for v in (value_arg, value) if v is not None]
    if len(given) + int(value_stdin) > 1:
        state.fail("give the value once: VALUE, --value or --value-stdin", EXIT_INPUT)
    if secure and value_arg is not None:
        state.fail(
            "a secure value as an argument would stay in your shell history: leave it out "
            "to be asked, pipe it with --value-stdin, or insist with --value",
            EXIT_INPUT,
        )
    if secure:
        try:
            text = _secret_value(value, value_stdin)
        except CliFailure as exc:
            state.fail(exc.message, exc.exit_code)
    elif value_stdin:
        text = _secret_value(None, True)
    elif given:
        text = given[0]
    else:
        state.fail("give a VALUE (or --value-stdin)", EXIT_INPUT)

    async def work(api: ApiClient) -> JsonObject:
        return await api.macro_set(await level_base(api, level), name, text, secure=secure)

    item = state.call(work)
    kind = "secure macro" if item.get("secure") else "macro"
    state.out.print(f"set {kind} {item.get('name')} at the {level.label} level", markup=False)


@app.command("unset")
def unset_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Macro name.")],
    account: AccountOpt = False,
    template: TemplateOpt = None,
    user: UserOpt = None,
    me: MeOpt = False,
    jobconfig: JobconfigOpt = None,
) -> None:
    """Delete a macro of one level."""
    state = state_of(ctx)
    level = _level(state, account, template, user, me, jobconfig)

    async def work(api: ApiClient) -> None:
        await api.macro_delete(await level_base(api, level), name)

    state.call(work)
    state.out.print(f"deleted macro {name} at the {level.label} level", markup=False)


@app.command("export")
def export_command(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="json or xml.")] = "json",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to a file instead of stdout.")
    ] = None,
    account: AccountOpt = False,
    template: TemplateOpt = None,
    user: UserOpt = None,
    me: MeOpt = False,
    jobconfig: JobconfigOpt = None,
) -> None:
    """Export a level's macro definitions (secure ones without value)."""
    state = state_of(ctx)
    if fmt not in ("json", "xml"):
        state.fail("--format is json or xml", EXIT_INPUT)
    level = _level(state, account, template, user, me, jobconfig)

    async def work(api: ApiClient) -> bytes:
        return await api.macros_export(await level_base(api, level), fmt=fmt)

    data = state.call(work)
    if output is None:
        sys.stdout.write(data.decode("utf-8"))
        if not data.endswith(b"\n"):
            sys.stdout.write("\n")
    else:
        output.write_bytes(data)
        state.err.print(f"wrote {output}", markup=False)


@app.command("import")
def import_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="JSON or XML macro-definition file ('-': stdin).")],
    account: AccountOpt = False,
    template: TemplateOpt = None,
    user: UserOpt = None,
    me: MeOpt = False,
    jobconfig: JobconfigOpt = None,
) -> None:
    """Import macro definitions; encrypted values import as names with an empty value."""
    state = state_of(ctx)
    level = _level(state, account, template, user, me, jobconfig)
    try:
        data = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        state.fail(f"cannot read {file}: {exc.strerror or exc}", EXIT_INPUT)
    xml = file.suffix.lower() == ".xml" or data.lstrip()[:1] == b"<"
    content_type = "application/xml" if xml else "application/json"

    async def work(api: ApiClient) -> JsonObject:
        return await api.macros_import(
            await level_base(api, level), data, content_type=content_type
        )

    result = state.call(work)
    state.out.print(
        f"imported {result.get('imported', 0)} macro(s) at the {level.label} level", markup=False
    )


@app.command("resolved")
def resolved_command(
    ctx: typer.Context,
    config: Annotated[str, typer.Argument(help="Jobconfig name or id.")],
    user: Annotated[
        str | None, typer.Option("--user", help="Submitting user (default: you).")
    ] = None,
    json_output: JsonFlag = False,
    output_format: OutputOpt = None,
    plain: PlainFlag = False,
) -> None:
    """Preview the macros a job of CONFIG would get, and the level of each."""
    state = state_of(ctx)

    async def work(api: ApiClient) -> JsonObject:
        jobconfig = await resolve_jobconfig(api, config)
        return await api.macros_resolved(int(jobconfig["id"]), user=user)

    body = state.call(work)
    if json_output:
        state.print_json(body)
        return
    table = new_table()
    for column in ("NAME", "VALUE", "LEVEL", "SECURE"):
        table.add_column(column)
    for item in body.get("items") or []:
        secure = bool(item.get("secure"))
        table.add_row(
            Text(str(item.get("name", ""))),
            Text("*****" if secure else str(item.get("value") or "")),
            str(item.get("level", "")),
            "yes" if secure else "no",
        )
    state.out.print(table)
