"""Output formats: one table style, full width when piped, --plain tab-separated."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import typer

from jobyard.cli.context import PIPE_WIDTH, CliState, TableConsole
from jobyard.cli.main import app
from jobyard.cli.render import jobs_table, new_table


def _console(plain: bool = False) -> tuple[TableConsole, io.StringIO]:
    buffer = io.StringIO()
    console = TableConsole(file=buffer, highlight=False, soft_wrap=True, width=PIPE_WIDTH)
    console.plain = plain
    return console, buffer


def test_a_piped_table_is_never_cut_or_wrapped() -> None:
    table = new_table()
    for column in ("ID", "CRON", "DESCRIPTION"):
        table.add_column(column)
    long = "refresh the warehouse cache " * 8
    table.add_row("1", "0 */5 * * * ?", long)
    console, buffer = _console()
    console.print(table)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2, lines  # header + one row: nothing wrapped
    assert "0 */5 * * * ?" in lines[1] and long.strip() in lines[1]


def test_plain_prints_tab_separated_rows_without_styles() -> None:
    jobs = [
        {"id": 7, "jobconfig_id": 2, "status": "FINISHED", "exit_code": 0, "trigger": "api",
         "status_reason": "done\twell\nreally"},
    ]  # fmt: skip
    console, buffer = _console(plain=True)
    console.print(jobs_table(jobs, {2: "nightly-etl"}))
    header, row = buffer.getvalue().splitlines()
    assert header.split("\t") == [
        "ID", "JOBCONFIG", "STATUS", "EXIT", "TRIGGER", "CREATED", "RAN", "REASON",
    ]  # fmt: skip
    assert row.split("\t") == [
        "7",
        "nightly-etl",
        "FINISHED",
        "0",
        "api",
        "",
        "",
        "done well really",
    ]
    assert "\x1b[" not in buffer.getvalue()


def test_output_choices_set_the_state() -> None:
    state = CliState()
    state.set_output("plain")
    assert state.out.plain and state.output == "plain"
    state.set_output("json")
    assert not state.out.plain and state.output == "json"


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every leaf command's path (Typer builds on its own copy of Click: duck typing)."""
    for name, command in group.commands.items():
        path = (*prefix, name)
        if hasattr(command, "commands"):
            yield from _commands(command, path)
        else:
            yield path


def test_every_list_and_show_command_has_the_three_output_options() -> None:
    root: Any = typer.main.get_command(app)
    checked = []
    for path in _commands(root):
        if path[-1] not in {"list", "show", "me", "outputs", "resolved"} and path != ("audit",):
            continue
        command = root
        for name in path:
            command = command.commands[name]
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        assert {"--output", "--plain", "--json"} <= options, (path, options)
        checked.append(" ".join(path))
    assert len(checked) >= 15, checked
    assert {"jobs list", "schedules show", "policies list", "audit", "users me"} <= set(checked)
