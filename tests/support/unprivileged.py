"""Running the code under test as an unprivileged user (``nobody``), for sandbox tests.

CI runs as root, where jobs get uids of their own; the namespace sandbox is what an
unprivileged server uses, so the security suite also starts ``jobyard up`` as ``nobody``
through ``runuser``. The venv's interpreter may live under a folder ``nobody`` cannot
enter (pyenv under ``/root``): then Debian's ``/usr/bin/python3`` (same minor version)
runs it with the venv's packages and the source tree on ``PYTHONPATH`` — copied to a
readable temporary folder if the originals are not readable by that user.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jobyard

USER = "nobody"
_RUNUSER = shutil.which(
    "runuser", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
)


@dataclass(frozen=True)
class UserRuntime:
    """How to run ``python -m jobyard.cli`` as ``user``."""

    user: str
    uid: int
    gid: int
    python: str
    pythonpath: str | None

    def command(self, *args: str) -> list[str]:
        """argv running the CLI with ``args`` as the user (environment preserved)."""
        if _RUNUSER is None:
            raise RuntimeError("runuser is missing")
        return [_RUNUSER, "-p", "-u", self.user, "--", self.python, "-m", "jobyard.cli", *args]

    def env(self, base: dict[str, str], home: Path) -> dict[str, str]:
        """``base`` plus what the user's interpreter needs."""
        env = dict(base)
        env["HOME"] = str(home)
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        return env


def _works(user: str, python: str, pythonpath: str | None) -> bool:
    if _RUNUSER is None:
        return False
    env = {"PATH": "/usr/bin:/bin"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    probe = [_RUNUSER, "-p", "-u", user, "--", python, "-c", "import jobyard.cli.main, fastapi"]
    done = subprocess.run(probe, env=env, capture_output=True, timeout=60, check=False)
    return done.returncode == 0


@functools.cache
def user_runtime() -> UserRuntime | str:
    """The way to run jobyard as ``nobody``, or the reason it cannot be done here."""
    if os.geteuid() != 0:
        return "not root: the tests already run unprivileged"
    if _RUNUSER is None:
        return "runuser (util-linux) is missing"
    entry = pwd.getpwnam(USER)
    if _works(USER, sys.executable, None):
        return UserRuntime(USER, entry.pw_uid, entry.pw_gid, sys.executable, None)
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK):
        return f"{python} is missing (make test installs it)"
    purelib = sysconfig.get_paths()["purelib"]
    source = str(Path(jobyard.__file__).resolve().parent.parent)
    pythonpath = os.pathsep.join([source, purelib])
    if _works(USER, python, pythonpath):
        return UserRuntime(USER, entry.pw_uid, entry.pw_gid, python, pythonpath)
    copy = Path(tempfile.mkdtemp(prefix="jobyard-unprivileged-py-"))
    os.chmod(copy, 0o755)
    shutil.copytree(source + "/jobyard", copy / "src" / "jobyard")
    shutil.copytree(purelib, copy / "site", symlinks=True)
    subprocess.run(["chmod", "-R", "a+rX", str(copy)], check=True)
    pythonpath = os.pathsep.join([str(copy / "src"), str(copy / "site")])
    if _works(USER, python, pythonpath):
        return UserRuntime(USER, entry.pw_uid, entry.pw_gid, python, pythonpath)
    return f"{python} cannot import jobyard's dependencies as {USER}"


def user_home(runtime: UserRuntime) -> Path:
    """A fresh folder owned by the user, reachable by it (under /tmp, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="jobyard-unprivileged-home-", dir="/tmp"))
    os.chown(path, runtime.uid, runtime.gid)
    return path
