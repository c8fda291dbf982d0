"""The commands in-process (Typer's CliRunner) against the fake API: output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobyard.cli.context import (
    EXIT_API,
    EXIT_CLI_BUG,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_JOB_CANCELLED,
    EXIT_JOB_ERROR,
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    exit_code_for_status,
)
from jobyard.cli.main import app
from jobyard.cli.run import parse_macros
from jobyard.settings import Settings
from tests.support.server import free_port
from tests.unit.cli.conftest import Invoke
from tests.unit.cli.fakeapi import DEFAULTS, FakeApi


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("FINISHED", 0),
        ("ERROR", 10),
        ("FAILED", 11),
        ("CANCELLED", 12),
        ("RUNNING", 4),
        ("nonsense", 4),
    ],
)
def test_exit_code_of_a_followed_job(status: str, code: int) -> None:
    assert exit_code_for_status(status) == code


def test_exit_codes_are_distinct() -> None:
    """One meaning per code, none taken by Typer's usage error (2) or a Python crash (1)."""
    codes = [
        EXIT_OK,
        EXIT_CLI_BUG,
        EXIT_USAGE,
        EXIT_API,
        EXIT_INPUT,
        EXIT_UNREACHABLE,
        EXIT_JOB_ERROR,
        EXIT_JOB_FAILED,
        EXIT_JOB_CANCELLED,
        EXIT_INTERRUPTED,
    ]
    assert len(set(codes)) == len(codes)
    assert (EXIT_CLI_BUG, EXIT_USAGE) == (1, 2)


# -- help and argument errors ---------------------------------------------------------

COMMANDS = [
    [],
    ["up"],
    ["server"],
    ["db"],
    ["db", "upgrade"],
    ["packages", "push"],
    ["packages", "list"],
    ["apply"],
    ["export"],
    ["run"],
    ["jobs"],
    *[["jobs", c] for c in ("list", "show", "cancel", "abort", "release", "rerun", "log")],
    *[["jobs", c] for c in ("outputs", "download")],
    ["jobconfigs", "list"],
    ["jobconfigs", "show"],
    ["jobconfigs", "delete"],
    ["schedules"],
    *[["schedules", c] for c in ("list", "show", "add", "update", "delete", "pause", "resume")],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "jobyard")
def test_every_command_and_option_has_help(invoke: Invoke, command: list[str]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output

    import typer.main

    click_command = typer.main.get_command(app)
    for name in command:
        click_command = click_command.commands[name]  # type: ignore[attr-defined]
    assert click_command.help, f"{command} has no help"
    for param in click_command.params:
        if param.param_type_name == "option" and param.name not in ("help",):
            assert getattr(param, "help", None), f"{command} option {param.name} has no help"
        if param.param_type_name == "argument":
            assert getattr(param, "help", None), f"{command} argument {param.name} has no help"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run"], "Missing argument"),
        (["run", "x", "--macro", "novalue"], "is not NAME=VALUE"),
        (["run", "x", "--json", "--follow"], "do not mix"),
        (["jobs", "list", "--status", "DONE"], "unknown status 'DONE'"),
        (["jobs", "show", "abc"], "valid integer"),
        (["jobs", "list", "--limit", "0"], "--limit"),
        (["apply"], "--file"),
        (["packages", "push", "/no/such/path"], "does not exist"),
        (["nope"], "No such command"),
    ],
)
def test_argument_errors_exit_2(invoke: Invoke, args: list[str], needle: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert needle in result.output


def test_parse_macros() -> None:
    assert parse_macros(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}


def test_version(invoke: Invoke) -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.startswith("jobyard ")


# -- connection and API errors --------------------------------------------------------


def test_connection_refused(invoke: Invoke) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = invoke("--server", url, "jobs", "list")
    assert result.exit_code == EXIT_UNREACHABLE
    assert f"cannot reach jobyard at {url}: is `jobyard up` running?" in result.stderr
    assert "the URL came from --server" in result.stderr


def test_the_cli_finds_the_server_of_its_home_and_env_wins(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without JOBYARD_SERVER the CLI goes where `jobyard up` of JOBYARD_HOME listens
    (its server.url); JOBYARD_SERVER, when set, keeps priority."""
    home = tmp_path / "home"
    home.mkdir()
    written = f"http://127.0.0.1:{free_port()}"
    (home / "server.url").write_text(written + "\n")
    found = invoke("jobs", "list")
    assert found.exit_code == EXIT_UNREACHABLE, found.output
    assert f"cannot reach jobyard at {written}:" in found.stderr
    assert f"the URL came from {home / 'server.url'}" in found.stderr
    other = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("JOBYARD_SERVER", other)
    env_wins = invoke("jobs", "list")
    assert f"cannot reach jobyard at {other}:" in env_wins.stderr
    assert "the URL came from JOBYARD_SERVER" in env_wins.stderr


def test_api_error_shows_status_code_and_details(invoke: Invoke, fake: FakeApi) -> None:
    fake.jobconfigs[1] = {**DEFAULTS, "id": 1, "name": "a", "command": ["x"]}
    fake._job(fake.jobconfigs[1], {}, hold=False)
    result = invoke("jobs", "cancel", "1")
    assert result.exit_code == EXIT_API
    assert "error: job 1 is FINISHED (HTTP 409, conflict)" in result.stderr
    assert "status: FINISHED" in result.stderr


def test_bad_token_hints(invoke: Invoke, fake: FakeApi) -> None:
    result = invoke("jobs", "list", token="wrong")
    assert result.exit_code == EXIT_API
    assert "HTTP 401" in result.stderr
    assert "--token" in result.stderr


def test_token_read_from_home(invoke: Invoke, fake: FakeApi, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert invoke("jobs", "list", token=None).exit_code == EXIT_API
    (home / "admin.token").write_text("test-token\n")
    result = invoke("jobs", "list", token=None)
    assert result.exit_code == 0, result.output


def test_unknown_jobconfig_name(invoke: Invoke, fake: FakeApi) -> None:
    result = invoke("run", "ghost")
    assert result.exit_code == EXIT_API
    assert "no jobconfig named 'ghost' (HTTP 404, not_found)" in result.stderr


# -- apply, export --------------------------------------------------------------------

SPEC = """\
packages:
  etl: {{path: ./etl}}
jobconfigs:
  - name: one
    package: etl
    entrypoint: main
    timeout: {timeout}
  - name: two
    command: [sh, -c, "echo two"]
"""


def write_spec(tmp_path: Path, timeout: int = 30) -> Path:
    (tmp_path / "etl").mkdir(exist_ok=True)
    (tmp_path / "etl" / "main.sh").write_text("echo hi\n")
    path = tmp_path / "jobs.yaml"
    path.write_text(SPEC.format(timeout=timeout))
    return path


def actions(result_output: str) -> dict[str, str]:
    report = json.loads(result_output)
    return {j["name"]: j["action"] for j in report["jobconfigs"]}


def test_apply_creates_then_leaves_alone_then_updates(
    invoke: Invoke, fake: FakeApi, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path)
    result = invoke("apply", "-f", str(spec))
    assert result.exit_code == 0, result.output
    assert "created" in result.stdout
    assert "2 created, 0 updated, 0 unchanged" in result.stdout
    assert fake.jobconfigs[1]["package_id"] == 1
    assert fake.jobconfigs[1]["timeout"] == 30

    result = invoke("apply", "-f", str(spec), "--json")
    assert actions(result.stdout) == {"one": "unchanged", "two": "unchanged"}

    write_spec(tmp_path, timeout=45)
    dry = invoke("apply", "-f", str(spec), "--dry-run")
    assert dry.exit_code == 0
    assert "timeout: 30 → 45" in dry.stdout and "dry run" in dry.stdout
    assert fake.jobconfigs[1]["timeout"] == 30

    puts_before = sum(1 for m, _ in fake.requests if m == "PUT")
    result = invoke("apply", "-f", str(spec))
    assert "updated" in result.stdout and "timeout: 30 → 45" in result.stdout
    assert fake.jobconfigs[1]["timeout"] == 45
    assert sum(1 for m, _ in fake.requests if m == "PUT") == puts_before + 1  # only "one"


def test_apply_dry_run_of_new_things_changes_nothing(
    invoke: Invoke, fake: FakeApi, tmp_path: Path
) -> None:
    result = invoke("apply", "-f", str(write_spec(tmp_path)), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["packages"][0]["state"] == "new"
    assert actions(result.stdout) == {"one": "create", "two": "create"}
    assert not fake.jobconfigs and not fake.packages
    assert {m for m, _ in fake.requests} == {"GET"}


def test_apply_reports_a_refused_jobconfig_and_goes_on(
    invoke: Invoke, fake: FakeApi, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text() + "  - name: three\n    command: [x]\n")
    fake.refused_names.add("two")
    result = invoke("apply", "-f", str(spec), "--json")
    assert result.exit_code == EXIT_API
    report = json.loads(result.stdout)
    assert actions(result.stdout) == {"one": "created", "two": "failed", "three": "created"}
    assert report["jobconfigs"][1]["error"] == (
        "refused by the test (HTTP 422, invalid_input) field: name"
    )
    table = invoke("apply", "-f", str(spec))
    assert "failed" in table.stdout and "refused by the test" in table.stdout
    assert "0 created, 0 updated, 2 unchanged, 1 failed" in table.stdout


def test_apply_of_an_invalid_file(invoke: Invoke, fake: FakeApi, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("jobconfigs:\n  - name: a\n    timeout: soon\n")
    result = invoke("apply", "-f", str(bad))
    assert result.exit_code == EXIT_INPUT
    assert (
        f"error: {bad}:3: jobconfigs[0].timeout: Input should be a valid integer" in result.stderr
    )
    assert fake.requests == []


def test_export_round_trip(invoke: Invoke, fake: FakeApi, tmp_path: Path) -> None:
    assert invoke("apply", "-f", str(write_spec(tmp_path))).exit_code == 0
    exported = invoke("export")
    assert exported.exit_code == 0
    assert "package_id: 1" in exported.stdout
    path = tmp_path / "export.yaml"
    path.write_text(exported.stdout)
    result = invoke("apply", "-f", str(path), "--json")
    assert actions(result.stdout) == {"one": "unchanged", "two": "unchanged"}

    out = tmp_path / "only-two.yaml"
    assert invoke("export", "two", "-o", str(out)).exit_code == 0
    assert "name: two" in out.read_text() and "name: one" not in out.read_text()
    assert invoke("export", "ghost").exit_code == EXIT_API


# -- run, jobs ------------------------------------------------------------------------


@pytest.fixture
def configs(fake: FakeApi, invoke: Invoke, tmp_path: Path) -> FakeApi:
    spec = tmp_path / "j.yaml"
    spec.write_text(
        "jobconfigs:\n"
        "  - name: good\n    command: [echo, ok]\n"
        "  - name: bad\n    command: [sh, -c, fail]\n"
    )
    assert invoke("apply", "-f", str(spec)).exit_code == 0
    return fake


def test_run_prints_the_job_id(invoke: Invoke, configs: FakeApi) -> None:
    result = invoke("run", "good", "-m", "A=1")
    assert result.exit_code == 0
    assert "submitted job 1 of good" in result.stdout
    assert configs.jobs[1]["macros"] == {"A": "1"}
    assert invoke("run", "1", "-q").stdout.strip() == "2"  # by id, quiet
    assert json.loads(invoke("run", "good", "--json").stdout)["id"] == 3


def test_run_follow_exit_codes(invoke: Invoke, configs: FakeApi) -> None:
    result = invoke("run", "good", "--follow")
    assert result.exit_code == 0, result.output
    assert "line one of job 1" in result.stdout
    assert "FINISHED" in result.stderr and "exit code 0" in result.stderr

    result = invoke("run", "bad", "-f")
    assert result.exit_code == EXIT_JOB_ERROR
    assert "ERROR" in result.stderr and "exit code 3" in result.stderr


def test_held_job_cancel_and_release(invoke: Invoke, configs: FakeApi) -> None:
    result = invoke("run", "good", "--hold")
    assert "WAITING" in result.stdout
    assert "jobyard jobs release 1" in result.stderr
    cancelled = invoke("jobs", "cancel", "1")
    assert cancelled.exit_code == 0
    assert "job 1 cancelled: CANCELLED" in cancelled.stdout
    assert invoke("jobs", "log", "1").exit_code == EXIT_API
    assert invoke("jobs", "log", "1", "-f").exit_code == EXIT_JOB_CANCELLED

    invoke("run", "good", "--hold")
    released = invoke("jobs", "release", "2")
    assert "job 2 released: FINISHED" in released.stdout


def test_jobs_list_show_log_outputs_download(
    invoke: Invoke, configs: FakeApi, tmp_path: Path
) -> None:
    invoke("run", "good")
    invoke("run", "bad")
    listing = invoke("jobs", "list")
    assert listing.exit_code == 0
    assert "good" in listing.stdout and "bad" in listing.stdout and "ERROR" in listing.stdout
    only = json.loads(invoke("jobs", "list", "-s", "error,finished", "-c", "bad", "--json").stdout)
    assert [j["id"] for j in only["items"]] == [2]
    assert json.loads(invoke("jobs", "list", "--all", "--json").stdout)["next_cursor"] is None

    shown = invoke("jobs", "show", "1")
    assert shown.exit_code == 0
    assert "FINISHED" in shown.stdout and "events" in shown.stdout and "out.txt" in shown.stdout
    details = json.loads(invoke("jobs", "show", "1", "--json").stdout)
    assert set(details) == {"job", "events", "outputs"}

    assert invoke("jobs", "log", "1").stdout.startswith("line one of job 1\n")
    assert "out.txt" in invoke("jobs", "outputs", "1").stdout
    target = tmp_path / "dl.txt"
    result = invoke("jobs", "download", "1", "out.txt", "-o", str(target))
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == b"abc"
    assert not (tmp_path / "dl.txt.part").exists()


def test_jobconfigs_commands(invoke: Invoke, configs: FakeApi) -> None:
    table = invoke("jobconfigs", "list")
    assert "good" in table.stdout and "bad" in table.stdout
    assert json.loads(invoke("jobconfigs", "show", "good", "--json").stdout)["id"] == 1
    assert "sh -c fail" in invoke("jobconfigs", "show", "2").stdout
    deleted = invoke("jobconfigs", "delete", "good")
    assert "deleted jobconfig 1 (good)" in deleted.stdout
    assert invoke("jobconfigs", "show", "good").exit_code == EXIT_API


def test_packages_push_and_list(invoke: Invoke, fake: FakeApi, tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "a.sh").write_text("echo\n")
    first = json.loads(invoke("packages", "push", str(tmp_path / "p"), "--json").stdout)
    again = invoke("packages", "push", str(tmp_path / "p"))
    assert first["sha256"] in again.stdout and "main" in again.stdout
    assert len(fake.packages) == 1
    assert "p.zip" in invoke("packages", "list").stdout


def test_run_with_payload_files(invoke: Invoke, configs: FakeApi, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("a,b\n")
    result = invoke("run", "good", "-p", str(tmp_path / "in.csv"), "-f")
    assert result.exit_code == 0, result.output
    assert configs.payloads == {1: {"in.csv": b"a,b\n"}}
    held = invoke("run", "good", "-p", str(tmp_path / "in.csv"), "--hold", "--json")
    assert json.loads(held.stdout)["status"] == "WAITING"


def test_up_passes_options_to_the_server(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import jobyard.server

    started: list[tuple[Settings, bool]] = []

    def fake_run_server(settings: Settings, *, example: bool = False) -> None:
        started.append((settings, example))

    monkeypatch.setattr(jobyard.server, "run_server", fake_run_server)
    monkeypatch.setenv("JOBYARD_PORT", "1234")
    result = invoke(
        "up", "--example", "--workers", "3", "--host", "0.0.0.0", "--home", str(tmp_path)
    )
    assert result.exit_code == 0, result.output
    settings, example = started[0]
    assert example
    assert (settings.workers, settings.host, settings.port) == (3, "0.0.0.0", 1234)
    assert settings.home == tmp_path
    assert invoke("up", "--port", "99999").exit_code == 2


def test_server_is_up_without_local_slots(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import jobyard.server

    started: list[tuple[Settings, bool]] = []

    def fake_run_server(settings: Settings, *, example: bool = False) -> None:
        started.append((settings, example))

    monkeypatch.setattr(jobyard.server, "run_server", fake_run_server)
    monkeypatch.setenv("JOBYARD_WORKERS", "8")  # ignored: a `jobyard server` has no slots
    result = invoke("server", "--port", "4321", "--home", str(tmp_path))
    assert result.exit_code == 0, result.output
    settings, example = started[0]
    assert not example
    assert (settings.workers, settings.port, settings.home) == (0, 4321, tmp_path)
    assert invoke("server", "--workers", "2").exit_code == 2  # no such option
    help_text = invoke("server", "--help").stdout
    assert "load balancer" in help_text and "jobyard up" in help_text


def test_invalid_settings_are_reported(invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBYARD_PORT", "not-a-port")
    result = invoke("jobs", "list")
    assert result.exit_code == EXIT_INPUT
    assert "invalid settings: port:" in result.stderr


def test_db_upgrade(invoke: Invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import jobyard.store.factory

    urls: list[str] = []
    monkeypatch.setattr(jobyard.store.factory, "upgrade_database", urls.append)
    monkeypatch.setenv("JOBYARD_DATABASE_URL", "postgresql://me:secret@db/jobyard")
    result = invoke("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert urls == ["postgresql://me:secret@db/jobyard"]
    assert "database upgraded: postgresql://me:***@db/jobyard" in result.stdout
