"""The job sandbox: what a job's processes can reach, and how all of them end with it.

A job is untrusted code (SPEC §8). Modes (setting ``isolation``):

``uid``
    (root workers) Each running job gets a uid of its own (:mod:`jobyard.worker.jobuids`)
    with no supplementary groups and ``no_new_privs``. Its folders belong to that uid;
    the server's home, blobs, cache and every other job's folders are closed to it, and
    it cannot signal, trace or read ``/proc/<pid>/{environ,cwd,root,mem}`` of the worker
    or of other jobs (other uids). When the job ends, every process of its uid is killed
    (``setsid`` and double forks included). Costs no measurable time per job: the spawn
    uses the thread-credential path of :mod:`jobyard.worker.creds`.
``namespace``
    The program runs under bubblewrap (``bwrap``) in new user, mount, pid and IPC
    namespaces: the host's file system read-only; the server's home, blobs and work
    folders, the server user's home folder and ``/run/jobyard`` replaced by empty
    read-only folders; ``/tmp`` and ``/var/tmp`` empty and private to the job; only the
    job's own folders bound in, writable; a new ``/proc`` shows only the job's
    processes. When the program ends, the pid namespace ends and every process in it is
    killed. Works unprivileged (user namespaces); a root worker also switches to a job
    uid. Costs a few milliseconds per job (measured in docs/benchmarks.md).
``none``
    The program runs as the worker's own user: it can read everything the server can
    (its key, its database, every log). Only for a single trusted user; announced at
    start as unsafe when several users exist.
``auto``
    (default) ``uid`` as root, else ``namespace`` if bubblewrap works here, else
    ``none`` with a warning saying why.

Every mode keeps what a job needs: its working folder with the package, its payload
folder, ``LOCAL_JOB_OUT_DIR``, the network, and the API through ``SESSION_ID``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from jobyard.core.errors import JobyardError
from jobyard.worker.child import Child, Launch, Process
from jobyard.worker.creds import thread_credentials, unsupported_reason
from jobyard.worker.jobuids import JobUids, private_dir
from jobyard.worker.logwriter import LogWriter
from jobyard.worker.workspace import JobDirs, Owner

_log = logging.getLogger(__name__)

Mode = Literal["uid", "namespace", "none"]
ISOLATION_CHOICES = ("auto", "uid", "namespace", "none")
BWRAP = "bwrap"
#: Host folders a namespace job gets empty and private (writable scratch space).
SCRATCH = ("/tmp", "/var/tmp")
#: Host folders a namespace job never sees (each replaced by an empty read-only folder).
ALWAYS_HIDDEN = ("/run/jobyard",)


class IsolationError(JobyardError):
    """The isolation asked for cannot work on this host."""

    code = "isolation_unavailable"


@dataclass(frozen=True, slots=True)
class IsolationPlan:
    """The mode a server chose and why (printed at start)."""

    mode: Mode
    reason: str
    bwrap: str | None = None

    @property
    def job_uids(self) -> bool:
        """Jobs run as uids of their own (root workers, in both sandboxed modes)."""
        return self.mode != "none" and os.geteuid() == 0

    @property
    def sandboxed(self) -> bool:
        """Whether jobs are confined at all."""
        return self.mode != "none"


def bwrap_problem(bwrap: str | None) -> str | None:
    """Why bubblewrap cannot make a sandbox here (None: it works)."""
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed (Debian: apt-get install bubblewrap)"
    argv = [bwrap, *_NAMESPACES, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    try:
        done = subprocess.run(
            [*argv, "--", "/bin/true"], capture_output=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bwrap does not run: {exc}"
    if done.returncode != 0:
        return "bwrap cannot create namespaces: " + done.stderr.decode(errors="replace").strip()
    return None


def resolve_isolation(requested: str) -> IsolationPlan:
    """Turn the ``isolation`` setting into a mode for this host, or raise IsolationError."""
    if requested not in ISOLATION_CHOICES:
        raise IsolationError(
            f"isolation must be one of {', '.join(ISOLATION_CHOICES)}, not {requested!r}"
        )
    if requested == "none":
        return IsolationPlan("none", "isolation = none was asked for")
    no_uid = unsupported_reason()
    if requested == "uid":
        if no_uid is not None:
            raise IsolationError(f"isolation = uid is not possible: {no_uid}")
        return IsolationPlan("uid", "isolation = uid: one uid per running job")
    if requested == "auto" and no_uid is None:
        return IsolationPlan("uid", "auto: the worker is root, so one uid per running job")
    bwrap = shutil.which(BWRAP)
    problem = bwrap_problem(bwrap)
    if problem is None:
        how = "auto: " if requested == "auto" else ""
        return IsolationPlan("namespace", f"{how}user, mount and pid namespaces", bwrap)
    if requested == "namespace":
        raise IsolationError(f"isolation = namespace is not possible: {problem}")
    return IsolationPlan(
        "none",
        f"auto: no sandbox works here ({no_uid}; {problem}): jobs run as the server's own "
        "user and can read its files",
    )


_NAMESPACES = ("--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-cgroup-try")


@dataclass(slots=True)
class Isolator:
    """One worker process's sandbox maker: reserves job uids, opens a sandbox per job."""

    plan: IsolationPlan
    slots: int = 1
    uid_first: int = 2_000_000_000
    uid_count: int = 65_536
    hidden: tuple[Path, ...] = ()
    uids: JobUids | None = field(default=None, init=False)

    async def start(self) -> None:
        """Reserve one uid per slot and kill whatever an earlier holder left running."""
        if not self.plan.job_uids:
            return
        uids = JobUids(self.uid_first, self.uid_count)
        reserved = uids.reserve(self.slots)
        self.uids = uids
        creds = thread_credentials()
        for uid in reserved:
            creds.kill_all(uid, uid)

    def close(self) -> None:
        """Give the uids back (the processes of their jobs are already gone)."""
        if self.uids is not None:
            self.uids.close()
            self.uids = None

    def open_job(self) -> JobSandbox:
        """The sandbox of one job (holding a uid until :meth:`JobSandbox.close`)."""
        uid = None
        if self.uids is not None:
            uid = self.uids.take()
        return JobSandbox(self, uid)


class JobSandbox:
    """One job's confinement, from its folders to the end of its last process."""

    def __init__(self, isolator: Isolator, uid: int | None) -> None:
        self._isolator = isolator
        self.plan = isolator.plan
        self.uid = uid
        self._closed = False
        self._collected = False

    @property
    def owner(self) -> Owner:
        """(uid, gid) the job's folders and files belong to; None: the worker's own."""
        return None if self.uid is None else (self.uid, self.uid)

    @property
    def private_tmp(self) -> bool:
        """Sandboxed jobs get a private HOME and TMPDIR of their own."""
        return self.plan.sandboxed

    def environment(self, dirs: JobDirs) -> dict[str, str]:
        """Variables the sandbox sets (over the base environment, under execution macros)."""
        tmp = dirs.tmp_dir
        if tmp is None:
            return {}
        return {"HOME": tmp, "TMPDIR": tmp}

    def command(self, argv: Sequence[str], dirs: JobDirs) -> list[str]:
        """The argv to spawn: the program's own, or wrapped by bubblewrap."""
        if self.plan.mode != "namespace" or self.plan.bwrap is None:
            return list(argv)
        wrapped = [self.plan.bwrap, "--die-with-parent", *_NAMESPACES]
        wrapped += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for scratch in SCRATCH:
            if os.path.isdir(scratch):
                wrapped += ["--tmpfs", scratch]
        hidden = _outermost(self._isolator.hidden)
        for path in hidden:
            if path.is_dir():
                wrapped += ["--tmpfs", str(path)]
            else:
                wrapped += ["--ro-bind", "/dev/null", str(path)]
        for folder in dirs.folders:
            wrapped += ["--bind", folder, folder]
        for path in hidden:  # after the binds: their mount points are made, nothing more
            if path.is_dir():
                wrapped += ["--remount-ro", str(path)]
        return [*wrapped, "--chdir", dirs.spec_dir, "--", *argv]

    def launcher(self) -> Launch | None:
        """How the program is started (as the job's uid), or None: plainly."""
        uid = self.uid
        if uid is None:
            return None
        creds = thread_credentials()

        def launch(spawn: Callable[[], Process]) -> Process:
            return creds.run_as(uid, uid, spawn)

        return launch

    async def spawn(
        self, argv: Sequence[str], dirs: JobDirs, env: dict[str, str], writer: LogWriter
    ) -> Child:
        """Start the program in its sandbox."""
        return await Child.spawn(
            self.command(argv, dirs), cwd=dirs.spec_dir, env=env, writer=writer,
            launch=self.launcher(),
        )  # fmt: skip

    def stop(self, child: Child, sig: signal.Signals) -> None:
        """Send ``sig`` to the program so it can end cleanly (abort and timeout).

        In a namespace the group also holds bubblewrap's own two processes, which would
        die of SIGTERM and take the program down with SIGKILL at once: only the others get
        it. SIGKILL goes to the whole group.
        """
        if self.plan.mode != "namespace" or sig == signal.SIGKILL:
            child.signal_group(sig)
            return
        for pid in _group_members(child.pid, skip_parent_of=child.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    async def collect(self) -> None:
        """Kill every process the job left (its uid's; a namespace ends with its program).

        Once done, nothing of the job can start again (a killed process cannot fork), so
        later calls cost nothing.
        """
        if self.uid is not None and not self._collected:
            uid = self.uid
            creds = thread_credentials()
            creds.kill_all(uid, uid)
            self._collected = True

    def close(self) -> None:
        """Give the uid back; call after :meth:`collect` (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.uid is not None and self._isolator.uids is not None:
            self._isolator.uids.give(self.uid)


def searchable_by_others(folder: Path) -> bool:
    """Whether every folder from ``/`` down to ``folder`` lets other users through (o+x)."""
    for path in (folder, *folder.parents):
        try:
            if not os.stat(path).st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def jobs_root_for(home: Path, plan: IsolationPlan) -> Path | None:
    """Where job folders go when jobs run as uids of their own (None: ``home/work/jobs``).

    Those uids must be able to reach their folders: the home is then made searchable
    (0711, nothing in it readable but their own folders), provided everything above it
    is. Otherwise (a home under a private folder such as ``/root``) job folders go to a
    root-only, searchable folder of ``/var/tmp`` named after the home.
    """
    if not plan.job_uids or searchable_by_others(home.parent):
        return None
    tag = hashlib.sha256(str(home).encode()).hexdigest()[:12]
    base = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path("/tmp")
    return private_dir(base / f"jobyard-{tag}", 0o711) / "jobs"


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """The existing ``paths``, without those inside another one (hidden with it)."""
    found = sorted(
        {p for p in paths if p != Path("/") and os.path.lexists(p)},
        key=lambda p: (len(p.parts), str(p)),
    )
    kept: list[Path] = []
    for path in found:
        if not any(path.is_relative_to(outer) for outer in kept):
            kept.append(path)
    return kept


def _group_members(pgid: int, *, skip_parent_of: int) -> list[int]:
    """Pids of process group ``pgid`` but its leader and the leader's direct children."""
    members = []
    with os.scandir("/proc") as entries:
        pids = [int(entry.name) for entry in entries if entry.name.isdigit()]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        ppid, pgrp = int(fields[1]), int(fields[2])
        if pgrp == pgid and pid != pgid and ppid != skip_parent_of:
            members.append(pid)
    return members


def hidden_paths(server_paths: Iterable[Path]) -> tuple[Path, ...]:
    """What a namespace job must not see: ``server_paths`` (the server's home, blobs,
    settings file...), ``/run/jobyard`` and the home folder of the server's user."""
    paths = [Path(p) for p in ALWAYS_HIDDEN]
    paths.extend(Path(p).resolve() for p in server_paths)
    with contextlib.suppress(KeyError):
        user_home = Path(pwd.getpwuid(os.geteuid()).pw_dir)
        if user_home != Path("/"):
            paths.append(user_home)
    return tuple(paths)
