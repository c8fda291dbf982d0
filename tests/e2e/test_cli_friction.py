"""The CLI's first-hour friction points, each through the real CLI against a real server.

One ``jobyard up`` for the module (2 local workers); jobconfigs are made through the API
with the admin token, everything a user types goes through ``jobyard`` subprocesses.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cli import as_json, ok, run_cli
from tests.support.server import RunningServer, clean_env, jobyard_command, server_fixture

server = server_fixture(scope="module", workers=2)

API = "/api/v1"
PASSWORD = "a long enough password"
DEADLINE = 60.0


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[httpx.Client]:
    """The API with the admin token (setting things up, not what is tested)."""
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    ) as client:
        yield client


def jobconfig(admin: httpx.Client, name: str, script: str, **extra: Any) -> dict[str, Any]:
    """A jobconfig running ``/bin/sh -c script`` (the sandboxed job uid may run /bin/sh)."""
    r = admin.post(
        f"{API}/jobconfigs", json={"name": name, "command": ["/bin/sh", "-c", script], **extra}
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def wait_status(admin: httpx.Client, job_id: int, wanted: set[str]) -> str:
    deadline = time.monotonic() + DEADLINE
    while True:
        status = str(admin.get(f"{API}/jobs/{job_id}").json()["status"])
        if status in wanted:
            return status
        assert time.monotonic() < deadline, f"job {job_id} stayed {status}, wanted {wanted}"
        time.sleep(0.1)


def cli(server: RunningServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(list(args), server.client_env(), tmp_path)


# -- 4: cancel of a running job says to abort ----------------------------------------------


def test_cancel_of_a_running_job_says_how_to_abort_it(
    server: RunningServer, admin: httpx.Client, tmp_path: Path
) -> None:
    jc = jobconfig(admin, "long-runner", "sleep 60")
    job = as_json(cli(server, tmp_path, "run", "long-runner", "--json"))
    wait_status(admin, job["id"], {"RUNNING"})
    refused = ok(cli(server, tmp_path, "jobs", "cancel", str(job["id"])), 4)
    expected = (
        f"job {job['id']} is RUNNING: only WAITING, SEQUENCED or QUEUED jobs can be cancelled; "
        f"stop it with `jobyard jobs abort {job['id']}`"
    )
    assert expected in refused.stderr, refused.stderr
    # the docs show the same message as the server
    docs = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    assert expected.replace(str(job["id"]), "12") in docs
    ok(cli(server, tmp_path, "jobs", "abort", str(job["id"])))
    assert wait_status(admin, job["id"], {"FAILED"}) == "FAILED"
    assert jc["name"] == "long-runner"


# -- 11: distinct exit codes for each end, refusals, unreachable, usage ---------------------


@pytest.mark.parametrize(
    ("name", "script", "code", "status"),
    [
        ("ends-finished", "echo fine", 0, "FINISHED"),
        ("ends-error", "echo bad; exit 3", 10, "ERROR"),
    ],
)
def test_run_follow_exit_code_of_each_end(
    server: RunningServer,
    admin: httpx.Client,
    tmp_path: Path,
    name: str,
    script: str,
    code: int,
    status: str,
) -> None:
    jobconfig(admin, name, script)
    followed = ok(cli(server, tmp_path, "run", name, "--follow"), code)
    assert status in followed.stderr


def test_run_follow_of_an_aborted_job_exits_11_and_a_cancelled_one_12(
    server: RunningServer, admin: httpx.Client, tmp_path: Path
) -> None:
    target = jobconfig(admin, "to-abort", "sleep 60")
    follower = subprocess.Popen(
        [*jobyard_command(), "run", "to-abort", "--follow"],
        env=server.client_env(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + DEADLINE
        running: list[dict[str, Any]] = []
        while not running:
            assert time.monotonic() < deadline, "the followed job never ran"
            params = {"jobconfig_id": target["id"], "status": "RUNNING"}
            running = admin.get(f"{API}/jobs", params=params).json()["items"]
            time.sleep(0.1)
        ok(cli(server, tmp_path, "jobs", "abort", str(running[0]["id"])))
        _, err = follower.communicate(timeout=DEADLINE)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 11, err

    jobconfig(admin, "to-cancel", "echo never")
    held = as_json(cli(server, tmp_path, "run", "to-cancel", "--hold", "--json"))
    ok(cli(server, tmp_path, "jobs", "cancel", str(held["id"])))
    ok(cli(server, tmp_path, "jobs", "log", str(held["id"]), "--follow"), 12)


def test_refused_unreachable_and_usage_exit_codes_differ(
    server: RunningServer, tmp_path: Path
) -> None:
    refused = ok(cli(server, tmp_path, "jobs", "show", "999999"), 4)
    assert "HTTP 404" in refused.stderr
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = clean_env({"JOBYARD_SERVER": f"http://127.0.0.1:{port}", "JOBYARD_TOKEN": "x"})
    unreachable = ok(run_cli(["jobs", "list"], env, tmp_path), 6)
    assert "cannot reach jobyard" in unreachable.stderr
    ok(cli(server, tmp_path, "jobs", "list", "--no-such-option"), 2)


# -- 7, 8: admin-only commands say so; grants take names -----------------------------------


@pytest.fixture(scope="module")
def alice_env(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A logged-in non-admin (no admin token anywhere in reach)."""
    folder = tmp_path_factory.mktemp("alice")
    (folder / "home").mkdir()
    ok(
        run_cli(
            ["users", "add", "alice", "--password-stdin"], server.client_env(), folder, PASSWORD
        )
    )
    env = clean_env(
        {
            "JOBYARD_SERVER": server.url,
            "JOBYARD_HOME": str(folder / "home"),
            "XDG_CONFIG_HOME": str(folder / "config"),
        }
    )
    ok(run_cli(["login", "--name", "alice", "--password-stdin"], env, folder, PASSWORD))
    return env


@pytest.mark.parametrize(
    "command",
    [
        ["audit"],
        ["policies", "list", "alice"],
        ["policies", "grant", "alice", "view", "jobconfigs", "*"],
    ],
)
def test_admin_only_commands_say_they_need_an_admin(
    alice_env: dict[str, str], tmp_path: Path, command: list[str]
) -> None:
    refused = ok(run_cli(command, alice_env, tmp_path), 4)
    assert "no such API route" not in refused.stderr
    assert "HTTP 403" in refused.stderr and "admins only" in refused.stderr, refused.stderr
    assert f"`jobyard {' '.join(command[:2])}` needs an admin" in refused.stderr, refused.stderr


def test_policies_grant_takes_jobconfig_and_template_names(
    server: RunningServer, admin: httpx.Client, alice_env: dict[str, str], tmp_path: Path
) -> None:
    jc = jobconfig(admin, "orders-etl", "echo orders")
    r = admin.post(f"{API}/templates", json={"name": "acme", "command": ["/bin/sh", "-c", ":"]})
    assert r.status_code == 201, r.text
    template = r.json()
    granted = ok(cli(server, tmp_path, "policies", "grant", "alice", "execute", "jobconfigs",
                     "orders-etl"))  # fmt: skip
    assert "alice may execute jobconfigs" in granted.stdout
    ok(cli(server, tmp_path, "policies", "grant", "alice", "view", "jobconfigs", "template:acme"))
    ok(cli(server, tmp_path, "policies", "grant", "alice", "view", "templates", "acme"))
    listed = as_json(cli(server, tmp_path, "policies", "list", "alice", "--output", "json"))
    selectors = {(p["resource"], p["selector"]) for p in listed["items"]}
    assert selectors == {
        ("jobconfigs", str(jc["id"])),
        ("jobconfigs", f"template:{template['id']}"),
        ("templates", str(template["id"])),
    }
    # and the grant works: alice runs it by name
    ok(run_cli(["run", "orders-etl", "--follow"], alice_env, tmp_path))
    missing = ok(
        cli(server, tmp_path, "policies", "grant", "alice", "view", "jobconfigs", "nope"), 4
    )
    assert "no jobconfig named 'nope'" in missing.stderr


# -- 9: one output contract: --output json on every list and show, --plain -----------------

_YEARLY = "0 0 3 1 1 ?"


def test_every_list_and_show_command_speaks_json_and_plain(
    server: RunningServer, admin: httpx.Client, tmp_path: Path
) -> None:
    jc = jobconfig(admin, "outputs-etl", "echo hi")
    # A schedule that does not fire while the test compares two answers of each command.
    r = admin.post(
        f"{API}/jobconfigs/{jc['id']}/schedules",
        json={"cron": _YEARLY, "timezone": "America/Argentina/Buenos_Aires"},
    )
    assert r.status_code == 201, r.text
    r = admin.post(f"{API}/templates", json={"name": "tpl-out", "command": ["/bin/true"]})
    assert r.status_code == 201, r.text
    job = as_json(cli(server, tmp_path, "run", "outputs-etl", "--json"))
    wait_status(admin, job["id"], {"FINISHED"})
    commands = [
        ["jobs", "list"],
        ["jobs", "show", str(job["id"])],
        ["jobs", "outputs", str(job["id"])],
        ["jobconfigs", "list"],
        ["jobconfigs", "show", "outputs-etl"],
        ["schedules", "list", "outputs-etl"],
        ["schedules", "show", "outputs-etl", _YEARLY],
        ["templates", "list"],
        ["templates", "show", "tpl-out"],
        ["users", "list"],
        ["users", "show", "admin"],
        ["users", "me"],
        ["tokens", "list"],
        ["packages", "list"],
        ["macros", "list", "--account"],
        ["policies", "list", "admin"],
        ["audit"],
    ]
    for command in commands:
        parsed = as_json(cli(server, tmp_path, *command, "--output", "json"))
        assert isinstance(parsed, dict), (command, parsed)
        assert as_json(cli(server, tmp_path, *command, "--json")) == parsed or command[0] in (
            "audit",
            "users",
            "tokens",
        )  # last-used times and the audit log move between two calls
    plain = ok(cli(server, tmp_path, "schedules", "list", "outputs-etl", "--plain")).stdout
    header, row = plain.splitlines()[:2]
    assert "\t" in header and _YEARLY in row.split("\t")
    assert "America/Argentina/Buenos_Aires" in row.split("\t")
    # piped tables are not cut: the whole row on one line, whatever the width
    table = ok(cli(server, tmp_path, "schedules", "list", "outputs-etl")).stdout
    rows = [line for line in table.splitlines() if _YEARLY in line]
    assert len(rows) == 1 and "America/Argentina/Buenos_Aires" in rows[0], table


# -- 10: download never overwrites silently ------------------------------------------------


def test_download_refuses_to_overwrite_without_force(
    server: RunningServer, admin: httpx.Client, tmp_path: Path
) -> None:
    jobconfig(admin, "writes-totals", 'echo \'{"total": 42}\' > "$LOCAL_JOB_OUT_DIR/totals.json"')
    job = as_json(cli(server, tmp_path, "run", "writes-totals", "--json"))
    wait_status(admin, job["id"], {"FINISHED"})
    local = tmp_path / "totals.json"
    local.write_text("precious local work\n")
    refused = ok(cli(server, tmp_path, "jobs", "download", str(job["id"]), "totals.json"), 5)
    assert "totals.json exists: pass --force to overwrite it" in refused.stderr
    assert local.read_text() == "precious local work\n"
    assert not list(tmp_path.glob("*.part"))
    ok(cli(server, tmp_path, "jobs", "download", str(job["id"]), "totals.json", "--force"))
    assert json.loads(local.read_text()) == {"total": 42}
    fresh = tmp_path / "elsewhere.json"
    ok(cli(server, tmp_path, "jobs", "download", str(job["id"]), "totals.json", "-o", str(fresh)))
    assert json.loads(fresh.read_text()) == {"total": 42}


# -- 12, 13: messages that say the fix -----------------------------------------------------


def test_unix_cron_and_unicode_names_get_messages_that_say_the_fix(
    server: RunningServer, admin: httpx.Client, tmp_path: Path
) -> None:
    jobconfig(admin, "cron-target", "echo cron")
    unix = ok(cli(server, tmp_path, "schedules", "add", "cron-target", "--cron", "*/5 * * * *"), 4)
    assert "did you mean '0 */5 * * * ?'" in unix.stderr, unix.stderr
    both = ok(cli(server, tmp_path, "schedules", "add", "cron-target", "--cron", "0 0 2 * * *"), 4)
    assert "use '?' in day-of-month or day-of-week" in both.stderr
    assert "did you mean '0 0 2 * * ?'" in both.stderr
    local = ok(cli(server, tmp_path, "cron", "next", "*/5 * * * *"), 2)
    assert "did you mean '0 */5 * * * ?'" in local.stderr
    zoe = ok(run_cli(["users", "add", "zoë"], server.client_env(), tmp_path), 4)
    assert "ASCII letters" in zoe.stderr, zoe.stderr


# -- 3: a busy port is one line, exit 1, nothing created -------------------------------------


def test_a_busy_port_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        home = tmp_path / "fresh-home"
        env = clean_env(
            {"JOBYARD_HOME": str(home), "JOBYARD_PORT": str(port), "JOBYARD_WORKERS": "1"}
        )
        result = subprocess.run(
            [*jobyard_command(), "up", "--example"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 1, result
    assert result.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ], result.stderr
    assert not home.exists()
    assert os.listdir(tmp_path) == []
