"""A newcomer's first minutes: ``make run`` on another port, then the README's commands.

The quick start as a new user lives it, with nothing set up by hand:

* a copy of the checkout (its ``Makefile`` and ``pyproject.toml``, and the ``.venv`` of
  this test run) where ``JOBYARD_PORT=<free port> make run`` starts the real server the
  way the README says, in a subprocess, with its home in the copy's ``./var``;
* a "second shell": subprocesses whose environment holds only ``PATH`` and ``HOME``,
  run from the copy's folder, that type the README's quick-start commands verbatim (read
  from README.md itself, so the test follows the README);
* the end: SIGTERM to the server stops it gracefully and ``make run`` exits 0.

Friction points covered on the way: the CLI finds a server started on a non-default
port through the home it shares with it (1), the banner prints the exact ``export
JOBYARD_SERVER=`` line (1), piped tables are not cut at 80 columns (9), exit codes of
``run --follow`` and of an unreachable server (11), a graceful stop exits 0 (16).
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 120.0
STOP_SECONDS = 60.0
COMMAND_SECONDS = 120.0


def readme_quickstart_commands() -> list[str]:
    """The commands of the README's quick start typed "in another terminal", verbatim."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    commands = [
        line.split("  #", 1)[0].strip()
        for block in blocks
        for line in block.splitlines()
        if line.startswith(".venv/bin/jobyard ")
    ]
    assert commands, "the README's quick start lists no .venv/bin/jobyard command"
    return commands


def clean_shell_env() -> dict[str, str]:
    """A new terminal of the same user: PATH and HOME, nothing of jobyard."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ["HOME"]}


def make_checkout(dest: Path) -> Path:
    """A copy of what ``make run`` needs, with this test run's virtualenv as its ``.venv``.

    ``copy2`` keeps modification times: the venv's stamp stays newer than
    ``pyproject.toml``, so ``make run`` does not reinstall anything.
    """
    dest.mkdir()
    for name in ("Makefile", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    (dest / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return dest


@dataclass
class MakeRun:
    """``make run`` running in a checkout copy."""

    checkout: Path
    port: int
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def server_pid(self) -> int:
        """The server: make's child (the recipe ``exec``s it in place of the shell)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = children.read_text().split()
        assert len(pids) == 1, f"make has children {pids}"
        return int(pids[0])

    def wait_ready(self) -> None:
        """Until the banner is printed (the server then answers)."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while "jobyard 0" not in self.stdout.read_text(errors="replace"):
            if self.process.poll() is not None:
                pytest.fail(f"make run exited {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"make run did not start within {STARTUP_SECONDS} s:\n{self.output()}")
            time.sleep(0.1)
        with httpx.Client(timeout=5) as client:
            assert client.get(f"{self.url}/healthz").status_code == 200

    def stop(self, signum: int) -> int:
        """Send ``signum`` to the server (as a terminal's Ctrl-C or a `kill` would) and
        return make's exit code."""
        os.kill(self.server_pid(), signum)
        try:
            return self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make run did not stop within {STOP_SECONDS} s:\n{self.output()}")


@contextlib.contextmanager
def make_run(checkout: Path, logs: Path, *, workers: int = 2) -> Iterator[MakeRun]:
    """``JOBYARD_PORT=<free> make run`` in ``checkout``; killed at the end if still up."""
    port = free_port()
    env = {
        **clean_shell_env(),
        "JOBYARD_PORT": str(port),
        "JOBYARD_WORKERS": str(workers),  # two cores shared by the whole test run
        "PYTHONUNBUFFERED": "1",
    }
    stdout, stderr = logs / "make-run.stdout", logs / "make-run.stderr"
    opener = lambda path, flags: os.open(path, flags, 0o600)  # noqa: E731 (the token is printed)
    with open(stdout, "wb", opener=opener) as out, open(stderr, "wb", opener=opener) as err:
        process = subprocess.Popen(  # its own process group: cleaned up as one below
            ["make", "run"],
            cwd=checkout,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    run = MakeRun(checkout, port, process, stdout, stderr)
    try:
        yield run
    finally:
        # make, the server and its worker processes, whatever state a failure left them in
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.poll() is None:
            process.wait(timeout=30)


def shell(checkout: Path, command: str) -> subprocess.CompletedProcess[str]:
    """Type ``command`` in the second shell (the checkout's folder, a clean environment)."""
    return subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=checkout,
        env=clean_shell_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=False,
    )


def show(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"exit {result.returncode}: {result.args}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


def test_the_readme_quick_start_on_another_port(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "jobyard")
    commands = readme_quickstart_commands()
    with make_run(checkout, tmp_path) as run:
        run.wait_ready()
        banner = run.stdout.read_text()
        # 1: the banner says how to reach this server from elsewhere, exactly
        assert f"\n               export JOBYARD_SERVER={run.url}\n" in banner, banner
        assert (checkout / "var" / "server.url").read_text().strip() == run.url
        # The console's first sign-in: the banner shows admin's password, kept 0600.
        password = (checkout / "var" / "admin.password").read_text().strip()
        assert f"  console:     {run.url}/  user admin, password {password}\n" in banner, banner
        login = httpx.post(
            f"{run.url}/api/v1/login", json={"name": "admin", "password": password}, timeout=30
        )
        assert login.status_code == 200, login.text

        results = {command: shell(checkout, command) for command in commands}
        for result in results.values():
            assert result.returncode == 0, show(result)

        follow = results[".venv/bin/jobyard run hello --follow"]
        assert "FINISHED" in follow.stderr and "done" in follow.stdout, show(follow)
        listing = results[".venv/bin/jobyard jobs list"].stdout
        assert re.search(r"^\s*1\s+hello\s+FINISHED\s+0\b", listing, re.M), listing
        shown = results[".venv/bin/jobyard jobs show 1"].stdout
        assert "FINISHED" in shown and "events" in shown, shown
        # 9: piped, the cron expression and the zone stay on the schedule's one line
        schedules = results[".venv/bin/jobyard schedules list hello"].stdout
        row = [line for line in schedules.splitlines() if "0 0 7 ? * MON-FRI" in line]
        assert len(row) == 1 and "Europe/Paris" in row[0], schedules
        fires = results[
            ".venv/bin/jobyard cron next '0 0 7 ? * MON-FRI' --tz Europe/Paris --count 3"
        ].stdout.split()
        assert len(fires) == 3 and all(t.endswith(("+01:00", "+02:00")) for t in fires), fires

        # 4 and 11: a refusal (4) says why, apart from a usage error (2)
        refused = shell(checkout, ".venv/bin/jobyard jobs cancel 1")
        assert refused.returncode == 4, show(refused)
        assert "job 1 has already ended (FINISHED): there is nothing to cancel" in (
            refused.stderr
        ), show(refused)
        usage = shell(checkout, ".venv/bin/jobyard run")
        assert usage.returncode == 2, show(usage)

        # 16: SIGTERM (a `kill`, a service manager) stops the server gracefully; make exits 0
        code = run.stop(signal.SIGTERM)
        output = run.output()
        assert code == 0, output
        assert "Error" not in run.stderr.read_text(), output
        assert not (checkout / "var" / "server.url").exists()

    # 1 and 11: with the server gone the CLI says so, with its own exit code (6)
    gone = shell(checkout, ".venv/bin/jobyard jobs list")
    assert gone.returncode == 6, show(gone)
    assert "cannot reach jobyard at http://127.0.0.1:8080" in gone.stderr, show(gone)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_make_run_stopped_by_a_signal_exits_0(tmp_path: Path, signum: int) -> None:
    """Ctrl-C (SIGINT to the foreground server) or SIGTERM (`kill`, a service manager):
    the server stops gracefully and exits 0, so make does too, without "Error 143"."""
    checkout = make_checkout(tmp_path / "jobyard")
    with make_run(checkout, tmp_path, workers=1) as run:
        run.wait_ready()
        code = run.stop(signum)
        assert code == 0, run.output()
        assert "Error" not in run.stderr.read_text(), run.output()


def test_the_quick_start_commands_are_what_this_test_types() -> None:
    """The checks above are keyed by the README's text: a README change shows here.
    Commands added to the quick start are run (and must exit 0) without a change here."""
    assert set(readme_quickstart_commands()) >= {
        ".venv/bin/jobyard run hello --follow",
        ".venv/bin/jobyard jobs list",
        ".venv/bin/jobyard jobs show 1",
        ".venv/bin/jobyard schedules list hello",
        ".venv/bin/jobyard cron next '0 0 7 ? * MON-FRI' --tz Europe/Paris --count 3",
    }
    assert shlex.split(readme_quickstart_commands()[-1])[3] == "0 0 7 ? * MON-FRI"


def _session_members(sid: int) -> list[int]:
    """Processes of session ``sid`` (job control puts the server in a group of its own)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # after "pid (comm)": state ppid pgrp session
                members.append(int(entry.name))
    return members


def test_make_run_in_a_terminal_stopped_by_ctrl_c_exits_0(tmp_path: Path) -> None:
    """A real terminal (a pseudo-terminal): Ctrl-C is typed, the terminal signals its
    foreground job. The server stops gracefully and make exits 0, without "Interrupt"."""
    checkout = make_checkout(tmp_path / "jobyard")
    env = {**clean_shell_env(), "JOBYARD_PORT": str(free_port()), "JOBYARD_WORKERS": "1"}
    pid, fd = pty.fork()  # the child leads a new session with the terminal as its own
    if pid == 0:  # pragma: no cover - the child becomes make
        os.chdir(checkout)
        os.execvpe("make", ["make", "run"], env)
    output = bytearray()

    closed = False

    def read_until(done: Callable[[], bool], seconds: float) -> None:
        """Collect the terminal's output until ``done()`` or the deadline."""
        nonlocal closed
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            if closed:  # nothing more to read: wait for the processes to end
                time.sleep(0.1)
                continue
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: every process of the terminal has closed it
                    chunk = b""
                closed = not chunk
                output.extend(chunk)

    status: list[int] = []

    def exited() -> bool:
        if not status:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status.append(os.waitstatus_to_exitcode(code))
        return bool(status)

    try:
        read_until(lambda: b"example:" in output or exited(), STARTUP_SECONDS)
        assert b"jobyard 0" in output and not status, output.decode(errors="replace")
        os.write(fd, b"\x03")  # Ctrl-C
        read_until(exited, STOP_SECONDS)
        assert exited(), output.decode(errors="replace")
    finally:
        # whatever is left of the session (a server make left behind, or make itself)
        for member in _session_members(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)
        if not status:
            os.waitpid(pid, 0)
        os.close(fd)
    text = output.decode(errors="replace")
    assert status == [0], text
    assert "Interrupt" not in text and "Error" not in text, text
