"""The leak test: a secure macro used by a job that prints it every way it can.

A real ``jobyard up`` subprocess and the real CLI. The secure value is set through the
CLI (hidden from argv with ``--value-stdin``) at the account, user and jobconfig levels;
the job prints it whole, split across two writes, to stderr, and names an output file
after it. The value must appear nowhere but in the job's environment: no API answer,
CLI output, export, log file, output file name, file under the server's home, or
server log (stdout and stderr of ``jobyard up``).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cli import as_json, ok
from tests.support.jobs import JOB_PYTHON
from tests.support.server import RunningServer, jobyard_command, server_fixture

server = server_fixture(scope="module", workers=2)

SECRET = "LeakCanary-9f3b2e71"
USER_SECRET = "UserCanary-5d0c44aa"
JC_SECRET = "ConfigCanary-71ee03b9"
JOB = r"""
import os, sys, time
for name in ("ACC_SECRET", "USER_SECRET", "JC_SECRET"):
    v = os.environ[name]
    print("whole", v, "rev", v[::-1], flush=True)
    sys.stdout.write("split " + v[:7])
    sys.stdout.flush()
    time.sleep(0.3)
    sys.stdout.write(v[7:] + " end\n")
    sys.stdout.flush()
    print("err", v, file=sys.stderr, flush=True)
v = os.environ["ACC_SECRET"]
with open(os.path.join(os.environ["LOCAL_JOB_OUT_DIR"], "report-" + v + ".txt"), "w") as f:
    f.write("data\n")
"""


def _cli(
    server: RunningServer, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*jobyard_command(), *args],
        env=server.client_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _assert_clean(where: str, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    for value in (SECRET, USER_SECRET, JC_SECRET):
        assert value.encode() not in data, f"{value} leaked into {where}"


@pytest.mark.slow
def test_secure_values_never_leak(server: RunningServer, tmp_path: Path) -> None:
    url, token, home = server
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    outputs: list[tuple[str, str]] = []

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = _cli(server, *args, stdin=stdin)
        outputs.append((" ".join(args), result.stdout + result.stderr))
        return result

    r = api.post("/api/v1/jobconfigs", json={"name": "leaky", "command": [JOB_PYTHON, "-c", JOB]})
    assert r.status_code == 201, r.text
    jc = r.json()["id"]
    ok(cli("macros", "set", "ACC_SECRET", "--secure", "--value-stdin", "--account", stdin=SECRET))
    ok(cli("macros", "set", "USER_SECRET", "--secure", "--value-stdin", "--me", stdin=USER_SECRET))
    # Insisting on argv works too (the output still never shows the value).
    ok(cli("macros", "set", "JC_SECRET", "--secure", "--value", JC_SECRET, "--jobconfig", "leaky"))
    refused = cli("macros", "set", "X", "on-argv", "--secure", "--account")
    assert refused.returncode != 0 and "shell history" in refused.stderr

    r = api.post(f"/api/v1/jobconfigs/{jc}/run", json={})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 60
    while (job := api.get(f"/api/v1/jobs/{job_id}").json())["status"] not in (
        "FINISHED", "ERROR", "FAILED",
    ):  # fmt: skip
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["status"] == "FINISHED", job

    log = api.get(f"/api/v1/jobs/{job_id}/log").text
    for value in (SECRET, USER_SECRET, JC_SECRET):
        assert value[::-1] in log  # the job did get every value...
    assert log.count("whole *****") == 3 and log.count("split ***** end") == 3
    assert log.count("err *****") == 3  # ...and the log masks them, stdout and stderr
    outputs_list = api.get(f"/api/v1/jobs/{job_id}/outputs").json()["items"]
    assert [o["name"] for o in outputs_list] == ["report-*****.txt"]
    assert api.get(f"/api/v1/jobs/{job_id}/outputs/report-*****.txt").text == "data\n"

    answers: list[tuple[str, Any]] = []
    for path in (
        f"/api/v1/jobs/{job_id}",
        f"/api/v1/jobs/{job_id}/macros",
        f"/api/v1/jobs/{job_id}/events",
        f"/api/v1/jobs/{job_id}/log",
        f"/api/v1/jobs/{job_id}/outputs",
        "/api/v1/jobs?limit=50",
        f"/api/v1/jobconfigs/{jc}",
        f"/api/v1/jobconfigs/{jc}/macros",
        f"/api/v1/jobconfigs/{jc}/macros/resolved",
        f"/api/v1/jobconfigs/{jc}/macros/export?format=xml",
        "/api/v1/macros/account",
        "/api/v1/macros/account/export",
        "/api/v1/macros/account/export?format=xml",
        "/api/v1/me/macros",
        "/api/v1/me/macros/export",
        "/api/v1/openapi.json",
    ):
        r = api.get(path)
        assert r.status_code == 200, (path, r.text)
        answers.append((path, r.text))
    resolved = api.get(f"/api/v1/jobs/{job_id}/macros").json()["items"]
    assert {m["name"]: m["level"] for m in resolved if m["secure"]} == {
        "ACC_SECRET": "account",
        "USER_SECRET": "user",
        "JC_SECRET": "jobconfig",
    }

    for args in (
        ("macros", "list", "--account"),
        ("macros", "list", "--me", "--json"),
        ("macros", "list", "--jobconfig", "leaky"),
        ("macros", "export", "--account"),
        ("macros", "export", "--jobconfig", "leaky", "--format", "xml"),
        ("macros", "resolved", "leaky"),
        ("macros", "resolved", "leaky", "--json"),
        ("jobs", "show", str(job_id)),
        ("jobs", "log", str(job_id)),
        ("jobs", "outputs", str(job_id)),
        ("jobconfigs", "show", "leaky"),
        ("export",),
    ):
        ok(cli(*args))
    assert "*****" in next(text for name, text in outputs if name == "macros resolved leaky")

    # The audit log names each secure macro that was set, and never holds a value.
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "500", **({"cursor": cursor} if cursor else {})}
        r = api.get("/api/v1/audit", params=params)
        assert r.status_code == 200, r.text
        answers.append((f"/api/v1/audit {cursor}", r.text))
        entries += r.json()["items"]
        if not (cursor := r.json()["next_cursor"]):
            break
    macro_sets = {e["details"]["name"] for e in entries if e["action"] == "macro.set"}
    assert {"ACC_SECRET", "USER_SECRET", "JC_SECRET"} <= macro_sets, macro_sets
    assert any(e["action"] == "job.submit" and e["object_id"] == str(job_id) for e in entries)

    for where, text in [*answers, *outputs]:
        _assert_clean(where, text)
    for path in sorted(home.rglob("*")):  # database, log files, output files, key files
        if path.is_file():
            _assert_clean(str(path), path.read_bytes())
        _assert_clean(f"file name {path}", str(path))
    _assert_clean("server stdout", server.stdout_path.read_bytes())
    _assert_clean("server stderr", server.stderr_path.read_bytes())
    api.close()


def test_macros_cli_round_trip(server: RunningServer, tmp_path: Path) -> None:
    ok(_cli(server, "macros", "set", "GREETING", "hello", "--account"))
    listed = as_json(_cli(server, "macros", "list", "--account", "--json"))
    assert {"name": "GREETING", "value": "hello"}.items() <= next(
        m for m in listed["items"] if m["name"] == "GREETING"
    ).items()
    xml = tmp_path / "defs.xml"
    xml.write_text('<macrodefs><macrodef name="FROM_XML">x</macrodef></macrodefs>')
    assert "imported 1" in ok(_cli(server, "macros", "import", str(xml), "--account")).stdout
    exported = tmp_path / "out.json"
    ok(_cli(server, "macros", "export", "--account", "-o", str(exported)))
    assert '"FROM_XML"' in exported.read_text()
    ok(_cli(server, "macros", "unset", "FROM_XML", "--account"))
    assert "FROM_XML" not in ok(_cli(server, "macros", "list", "--account")).stdout
    bad = _cli(server, "macros", "list", "--account", "--me")
    assert bad.returncode == 5 and "exactly one level" in bad.stderr
    missing = _cli(server, "macros", "list", "--template", "no-such-template")
    assert missing.returncode == 4
