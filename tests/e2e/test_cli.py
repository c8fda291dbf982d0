"""The real ``jobyard`` CLI, as subprocesses, against a real ``jobyard up`` subprocess.

One server for the module (2 local workers). Each test uses its own jobconfig names, so
the tests do not depend on each other's order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import as_json, ok
from tests.support.server import RunningServer, clean_env, jobyard_command, server_fixture

server = server_fixture(scope="module", workers=2)

CLI_TIMEOUT = 120.0
MANIFEST = """\
[entrypoints.main]
command = ["sh", "main.sh"]
"""
MAIN_SH = """\
echo "hello $TARGET from job $JOB_ID"
echo "result for $TARGET" > "$LOCAL_JOB_OUT_DIR/result.txt"
echo "to stderr" >&2
"""


Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(server: RunningServer, tmp_path: Path) -> Cli:
    """Run ``jobyard ARGS`` against the module's server; returns the completed process."""

    def run(
        *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*jobyard_command(), *args],
            env=env if env is not None else server.client_env(),
            cwd=cwd or tmp_path,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )

    return run


def make_package(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "jobyard.toml").write_text(MANIFEST)
    (folder / "main.sh").write_text(MAIN_SH)
    (folder / "main.sh").chmod(0o755)
    return folder


def write_yaml(path: Path, prefix: str, *, timeout: int = 30, extra: str = "") -> Path:
    path.write_text(
        f"""\
packages:
  etl: {{path: ./etl}}
jobconfigs:
  - name: {prefix}-ok
    package: etl
    entrypoint: main
    macros: {{TARGET: prod}}
    timeout: {timeout}
    description: "says hello"
  - name: {prefix}-fail
    command: ["sh", "-c", "echo oops; exit 3"]
    max_concurrent: 2
{extra}"""
    )
    return path


def jobconfig_actions(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    report = as_json(result)
    return {item["name"]: item["action"] for item in report["jobconfigs"]}


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def submit(cli: Cli, config: str, *extra: str) -> int:
    return int(ok(cli("run", config, "-q", *extra)).stdout.strip())


def job_json(cli: Cli, job_id: int) -> dict[str, Any]:
    return dict(as_json(cli("jobs", "show", str(job_id), "--json"))["job"])


# -- packages -------------------------------------------------------------------------


def test_push_folder_twice_gives_one_package(cli: Cli, tmp_path: Path) -> None:
    folder = make_package(tmp_path / "pkg")
    first = as_json(cli("packages", "push", str(folder), "--json"))
    os.utime(folder / "main.sh", (1_000_000, 1_000_000))  # timestamps must not matter
    second = as_json(cli("packages", "push", str(folder), "--json"))
    assert first["id"] == second["id"]
    assert first["sha256"] == second["sha256"]
    assert first["entrypoints"] == ["main"]

    shown = ok(cli("packages", "push", str(folder))).stdout
    assert first["sha256"] in shown
    assert "main" in shown
    listed = as_json(cli("packages", "list", "--json"))
    assert first["id"] in [p["id"] for p in listed["items"]]


# -- apply / export -------------------------------------------------------------------


def test_apply_is_idempotent_and_shows_changes(cli: Cli, tmp_path: Path) -> None:
    make_package(tmp_path / "etl")
    spec = write_yaml(tmp_path / "jobs.yaml", "ap")

    first = cli("apply", "-f", str(spec), "--json")
    assert jobconfig_actions(first) == {"ap-ok": "created", "ap-fail": "created"}

    again = cli("apply", "-f", str(spec), "--json")
    assert jobconfig_actions(again) == {"ap-ok": "unchanged", "ap-fail": "unchanged"}

    write_yaml(spec, "ap", timeout=45)
    planned = ok(cli("apply", "-f", str(spec), "--dry-run")).stdout
    assert "ap-ok" in planned and "update" in planned and "45" in planned
    updated = ok(cli("apply", "-f", str(spec))).stdout  # the dry run changed nothing
    assert "updated" in updated
    assert "timeout: 30 → 45" in updated
    assert "unchanged" in updated  # ap-fail

    shown = as_json(cli("jobconfigs", "show", "ap-ok", "--json"))
    assert shown["timeout"] == 45
    assert shown["macros"] == {"TARGET": "prod"}

    assert jobconfig_actions(cli("apply", "-f", str(spec), "--json")) == {
        "ap-ok": "unchanged",
        "ap-fail": "unchanged",
    }


def test_export_then_apply_is_a_no_op(cli: Cli, tmp_path: Path) -> None:
    make_package(tmp_path / "etl")
    ok(cli("apply", "-f", str(write_yaml(tmp_path / "jobs.yaml", "ex"))))

    exported = tmp_path / "exported.yaml"
    ok(cli("export", "-o", str(exported), "ex-ok", "ex-fail"))
    text = exported.read_text()
    assert "ex-ok" in text and "ex-fail" in text
    # packages by name, with the sha256 of the bytes the server holds
    assert "package_id:" not in text and "package: " in text and "sha256: " in text
    assert jobconfig_actions(cli("apply", "-f", str(exported), "--json")) == {
        "ex-ok": "unchanged",
        "ex-fail": "unchanged",
    }
    everything = ok(cli("export")).stdout  # stdout, every jobconfig
    assert "ex-ok" in everything


def test_apply_rejects_a_bad_file_with_its_line(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("jobconfigs:\n  - name: x\n    command: [true]\n    colour: red\n")
    result = ok(cli("apply", "-f", str(bad)), 5)
    assert f"{bad}:4" in result.stderr
    assert "unknown key 'colour'" in result.stderr


# -- run / follow ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def applied(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Jobconfigs ``run-ok``, ``run-fail``, ``run-held`` and ``run-long``, applied once."""
    folder = tmp_path_factory.mktemp("applied")
    make_package(folder / "etl")
    extra = """\
  - name: run-held
    command: ["sh", "-c", "echo held"]
  - name: run-long
    command: ["sh", "-c", "echo started; sleep 60; echo never"]
    max_concurrent: 0
"""
    spec = write_yaml(folder / "jobs.yaml", "run", extra=extra)
    result = subprocess.run(
        [*jobyard_command(), "apply", "-f", str(spec)],
        env=server.client_env(),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    ok(result)
    return "run"


def test_run_follow_finished(cli: Cli, applied: str) -> None:
    result = ok(cli("run", f"{applied}-ok", "--follow", "--macro", "TARGET=world"), 0)
    assert "hello world from job" in result.stdout
    assert "to stderr" in result.stdout  # the log holds both streams
    assert "FINISHED" in result.stderr
    assert "exit code 0" in result.stderr


def test_run_follow_error_exits_10(cli: Cli, applied: str) -> None:
    result = ok(cli("run", f"{applied}-fail", "-f"), 10)
    assert "oops" in result.stdout
    assert "ERROR" in result.stderr
    assert "exit code 3" in result.stderr


def test_jobs_list_show_log_outputs(cli: Cli, applied: str, tmp_path: Path) -> None:
    ok(cli("run", f"{applied}-ok", "--follow"))
    listing = as_json(cli("jobs", "list", "--jobconfig", f"{applied}-ok", "--json"))
    assert listing["items"], listing
    job = listing["items"][0]
    job_id = job["id"]
    assert job["status"] == "FINISHED"

    by_status = as_json(cli("jobs", "list", "-s", "finished", "-c", f"{applied}-ok", "--json"))
    assert job_id in [j["id"] for j in by_status["items"]]
    table = ok(cli("jobs", "list", "--jobconfig", f"{applied}-ok", "--limit", "5")).stdout
    assert str(job_id) in table and "FINISHED" in table and f"{applied}-ok" in table

    shown = ok(cli("jobs", "show", str(job_id))).stdout
    assert "FINISHED" in shown and "events" in shown and "RUNNING" in shown
    details = as_json(cli("jobs", "show", str(job_id), "--json"))
    assert [e["status"] for e in details["events"]][-1] == "FINISHED"

    log = ok(cli("jobs", "log", str(job_id))).stdout
    assert "hello prod from job" in log
    followed = ok(cli("jobs", "log", str(job_id), "--follow"))  # an ended job: returns at once
    assert "hello prod from job" in followed.stdout

    outputs = as_json(cli("jobs", "outputs", str(job_id), "--json"))
    assert [o["name"] for o in outputs["items"]] == ["result.txt"]
    target = tmp_path / "got.txt"
    ok(cli("jobs", "download", str(job_id), "result.txt", "-o", str(target)))
    assert target.read_text() == "result for prod\n"


def test_cancel_a_held_job(cli: Cli, applied: str) -> None:
    job_id = submit(cli, f"{applied}-held", "--hold")
    assert job_json(cli, job_id)["status"] == "WAITING"
    result = ok(cli("jobs", "cancel", str(job_id)))
    assert "CANCELLED" in result.stdout
    assert job_json(cli, job_id)["status"] == "CANCELLED"
    again = ok(cli("jobs", "cancel", str(job_id)), 4)  # terminal is terminal
    assert "HTTP 409" in again.stderr
    ok(cli("jobs", "log", str(job_id)), 4)  # a cancelled job never has a log


def test_follow_of_a_held_job_that_gets_cancelled_exits_3(
    server: RunningServer, cli: Cli, applied: str
) -> None:
    follower = subprocess.Popen(
        [*jobyard_command(), "run", f"{applied}-held", "--hold", "--follow"],
        env=server.client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def waiting() -> list[int]:
            page = as_json(cli("jobs", "list", "-c", f"{applied}-held", "-s", "WAITING", "--json"))
            return [j["id"] for j in page["items"]]

        job_id = wait_for(waiting, "the held job")[0]
        ok(cli("jobs", "cancel", str(job_id)))
        _out, err = follower.communicate(timeout=CLI_TIMEOUT)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 12, err
    assert "CANCELLED" in err


def test_release_runs_a_held_job(cli: Cli, applied: str) -> None:
    job_id = submit(cli, f"{applied}-held", "--hold")
    ok(cli("jobs", "release", str(job_id)))
    result = ok(cli("jobs", "log", str(job_id), "-f"))
    assert "held" in result.stdout
    assert job_json(cli, job_id)["status"] == "FINISHED"


def _follower(server: RunningServer, *args: str) -> subprocess.Popen[str]:
    """``jobyard ARGS`` in the background, with Ctrl-C delivered as in a terminal."""
    return subprocess.Popen(
        [*jobyard_command(), *args],
        env=server.client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell may start us with SIGINT ignored; a terminal user's CLI has it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _running_job(cli: Cli, config: str) -> int:
    def running() -> list[int]:
        page = as_json(cli("jobs", "list", "-c", config, "-s", "RUNNING", "--json"))
        return [j["id"] for j in page["items"]]

    return int(wait_for(running, f"a RUNNING job of {config}")[0])


def test_abort_while_following_exits_2(server: RunningServer, cli: Cli, applied: str) -> None:
    follower = _follower(server, "run", f"{applied}-long", "--follow")
    try:
        job_id = _running_job(cli, f"{applied}-long")
        aborted = ok(cli("jobs", "abort", str(job_id)))
        assert "FAILED" in aborted.stdout or "stopping" in aborted.stdout
        out, err = follower.communicate(timeout=CLI_TIMEOUT)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 11, err
    assert "started" in out and "never" not in out
    assert "FAILED" in err
    assert job_json(cli, job_id)["status"] == "FAILED"


def test_ctrl_c_stops_following_not_the_job(server: RunningServer, cli: Cli, applied: str) -> None:
    follower = _follower(server, "run", f"{applied}-long", "-f")
    try:
        job_id = _running_job(cli, f"{applied}-long")
        wait_for(lambda: "started" in ok(cli("jobs", "log", str(job_id))).stdout, "the log")
        follower.send_signal(signal.SIGINT)
        _out, err = follower.communicate(timeout=CLI_TIMEOUT)
        assert follower.returncode == 130, err
        assert f"jobyard jobs abort {job_id}" in err
        assert job_json(cli, job_id)["status"] == "RUNNING"  # it keeps running
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    ok(cli("jobs", "abort", str(job_id)))
    wait_for(lambda: job_json(cli, job_id)["status"] == "FAILED", "the aborted job to end")


# -- settings and errors --------------------------------------------------------------


def test_token_is_read_from_home(server: RunningServer, cli: Cli) -> None:
    env = clean_env({"JOBYARD_SERVER": server.url, "JOBYARD_HOME": str(server.home)})
    ok(cli("jobconfigs", "list", "--json", env=env))


def test_bad_token_is_an_api_error(server: RunningServer, cli: Cli) -> None:
    env = clean_env({"JOBYARD_SERVER": server.url, "JOBYARD_TOKEN": "nope"})
    result = ok(cli("jobs", "list", env=env), 4)
    assert "HTTP 401" in result.stderr


def test_unknown_jobconfig_is_an_api_error(cli: Cli) -> None:
    result = ok(cli("run", "no-such-config"), 4)
    assert "no-such-config" in result.stderr and "404" in result.stderr


def test_global_options_override_env(server: RunningServer, cli: Cli) -> None:
    env = clean_env({"JOBYARD_SERVER": "http://127.0.0.1:9", "JOBYARD_TOKEN": "wrong"})
    args: Sequence[str] = ("--server", server.url, "--token", server.token)
    ok(cli(*args, "jobconfigs", "list", env=env))
