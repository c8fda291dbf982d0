"""The sandbox pieces with real processes: thread credentials, job uids, bubblewrap argv,
and the runner with each mode (abort grace, leftovers, the job's own uid)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_fakes import RecordingBackend, make_assignment

from jobyard.core.jobs import JobStatus
from jobyard.worker.creds import thread_credentials
from jobyard.worker.jobuids import JobUidError, JobUids, private_dir
from jobyard.worker.runner import JobControl, RunnerOptions, run_job
from jobyard.worker.sandbox import (
    IsolationError,
    IsolationPlan,
    Isolator,
    bwrap_problem,
    jobs_root_for,
    resolve_isolation,
)
from jobyard.worker.workspace import JobDirs, Workspace

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="job uids need a root worker (CI runs as root)")
needs_bwrap = pytest.mark.skipif(
    bwrap_problem(shutil.which("bwrap")) is not None, reason="bubblewrap cannot run here"
)
FIRST_UID = 2_000_050_000


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def test_modes_are_resolved_or_refused_with_a_reason() -> None:
    assert resolve_isolation("none").mode == "none"
    with pytest.raises(IsolationError, match="must be one of"):
        resolve_isolation("chroot")
    auto = resolve_isolation("auto")
    if ROOT:
        assert auto.mode == "uid" and auto.job_uids
    elif bwrap_problem(shutil.which("bwrap")) is None:
        assert auto.mode == "namespace" and not auto.job_uids
    else:
        assert auto.mode == "none" and "no sandbox works here" in auto.reason
    if not ROOT:
        with pytest.raises(IsolationError, match="not possible: the worker does not run as root"):
            resolve_isolation("uid")


@needs_root
def test_a_thread_borrows_a_uid_for_one_call_and_gives_it_back() -> None:
    creds = thread_credentials()
    seen: dict[str, object] = {}
    during = threading.Event()
    release = threading.Event()

    def borrowed() -> None:
        seen["inside"] = (os.getuid(), os.geteuid(), os.getgid(), os.getgroups())
        during.set()
        release.wait(10)

    thread = threading.Thread(target=lambda: creds.run_as(FIRST_UID, FIRST_UID, borrowed))
    thread.start()
    assert during.wait(10)
    seen["other thread"] = (os.getuid(), os.geteuid())  # this thread is still root
    release.set()
    thread.join(10)
    assert seen["inside"] == (FIRST_UID, FIRST_UID, FIRST_UID, [])
    assert seen["other thread"] == (0, 0)

    def back() -> tuple[int, int]:
        return os.getuid(), os.geteuid()

    result: list[tuple[int, int]] = []
    thread = threading.Thread(
        target=lambda: (creds.run_as(FIRST_UID, FIRST_UID, lambda: None), result.append(back()))
    )
    thread.start()
    thread.join(10)
    assert result == [(0, 0)]


@needs_root
def test_a_borrowed_uid_leaves_the_threads_parent_death_signal_armed() -> None:
    """The kernel clears a thread's parent-death signal when its credentials change;
    worker processes spawn from their event loop's thread and rely on that signal to
    die with the server, so ``run_as`` puts it back (also when the call fails)."""
    libc = ctypes.CDLL(None, use_errno=True)
    creds = thread_credentials()
    seen: list[int] = []

    def armed() -> int:
        value = ctypes.c_int(-1)
        libc.prctl(2, ctypes.byref(value), 0, 0, 0)  # PR_GET_PDEATHSIG
        return value.value

    def failing() -> None:
        raise OSError("exec failed")

    def in_thread() -> None:
        # SIGWINCH: harmless should this short-lived thread's parent ever die meanwhile.
        libc.prctl(1, int(signal.SIGWINCH), 0, 0, 0)  # PR_SET_PDEATHSIG
        seen.append(armed())
        creds.run_as(FIRST_UID, FIRST_UID, lambda: None)
        seen.append(armed())
        with contextlib.suppress(OSError):
            creds.run_as(FIRST_UID, FIRST_UID, failing)
        seen.append(armed())
        libc.prctl(1, 0, 0, 0, 0)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(10)
    assert seen == [int(signal.SIGWINCH)] * 3


@needs_root
def test_kill_all_ends_every_process_of_a_uid_and_no_other() -> None:
    creds = thread_credentials()
    procs: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(uid: int) -> None:
        procs[uid] = creds.run_as(
            uid,
            uid,
            lambda: subprocess.Popen(
                ["sh", "-c", "setsid sleep 301 & (sleep 302 &); exec sleep 303"],
                start_new_session=True,
                cwd="/",
            ),
        )

    for uid in (FIRST_UID + 1, FIRST_UID + 2):
        thread = threading.Thread(target=spawn, args=(uid,))
        thread.start()
        thread.join(10)
    try:
        deadline = time.monotonic() + 10
        while len(_pids_of(FIRST_UID + 1)) < 3 or len(_pids_of(FIRST_UID + 2)) < 3:
            assert time.monotonic() < deadline, "the programs did not start"
            time.sleep(0.02)
        assert _uid_of(procs[FIRST_UID + 1].pid) == FIRST_UID + 1
        thread = threading.Thread(target=creds.kill_all, args=(FIRST_UID + 1, FIRST_UID + 1))
        thread.start()
        thread.join(10)
        procs[FIRST_UID + 1].wait(10)
        deadline = time.monotonic() + 10
        while _pids_of(FIRST_UID + 1):
            assert time.monotonic() < deadline, "setsid and orphaned processes survived"
            time.sleep(0.02)
        assert len(_pids_of(FIRST_UID + 2)) == 3, "another job's uid was touched"
    finally:
        for uid in (FIRST_UID + 1, FIRST_UID + 2):
            thread = threading.Thread(target=creds.kill_all, args=(uid, uid))
            thread.start()
            thread.join(10)
        for proc in procs.values():
            proc.wait(10)


def _pids_of(uid: int) -> list[int]:
    found = []
    with os.scandir("/proc") as entries:
        pids = [int(e.name) for e in entries if e.name.isdigit()]
    for pid in pids:
        try:
            if (
                _uid_of(pid) == uid
                and Path(f"/proc/{pid}/stat").read_text().split(")")[1][1] != "Z"
            ):
                found.append(pid)
        except OSError:
            continue
    return found


@needs_root
def test_job_uids_are_never_shared_between_holders(tmp_path: Path) -> None:
    first = JobUids(FIRST_UID, 5, lock_dir=tmp_path / "locks")
    second = JobUids(FIRST_UID, 5, lock_dir=tmp_path / "locks")
    try:
        mine = first.reserve(3)
        theirs = second.reserve(2)
        assert not set(mine) & set(theirs)
        with pytest.raises(JobUidError, match="only 0 of 1 job uids free"):
            JobUids(FIRST_UID, 5, lock_dir=tmp_path / "locks").reserve(1)
        uid = first.take()
        assert uid in mine
        first.give(uid)
        first.close()
        assert JobUids(FIRST_UID, 5, lock_dir=tmp_path / "locks").reserve(3) == mine
    finally:
        first.close()
        second.close()


def test_a_lock_folder_made_by_someone_else_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(JobUidError, match="not a private folder"):
        private_dir(shared)
    os.symlink(tmp_path, tmp_path / "link")
    with pytest.raises(JobUidError, match="not a private folder"):
        private_dir(tmp_path / "link")


@needs_root
def test_job_folders_leave_a_private_home_for_the_var_tmp(tmp_path: Path) -> None:
    plan = IsolationPlan("uid", "test")
    home = tmp_path / "home"  # pytest's folders are 0700: not reachable by job uids
    root = jobs_root_for(home, plan)
    assert root is not None and root.parent.parent == Path("/var/tmp")
    assert os.stat(root.parent).st_mode & 0o777 == 0o711
    shutil.rmtree(root.parent)
    assert jobs_root_for(home, IsolationPlan("none", "test")) is None


@pytest.fixture
def sandbox_workspace(tmp_path: Path) -> Iterator[Workspace]:
    plan = resolve_isolation("auto")
    jobs_root = jobs_root_for(tmp_path / "home", plan)
    workspace = Workspace(tmp_path / "work", jobs_root=jobs_root)
    yield workspace
    workspace.tidy()
    if jobs_root is not None:
        shutil.rmtree(jobs_root.parent, ignore_errors=True)


async def _run_sandboxed(
    plan: IsolationPlan,
    backend: RecordingBackend,
    workspace: Workspace,
    argv: list[str],
    control: JobControl | None = None,
) -> tuple[JobStatus | None, str]:
    isolator = Isolator(plan, slots=1, uid_first=FIRST_UID + 10, uid_count=50)
    await isolator.start()
    try:
        outcome = await run_job(
            make_assignment(1, argv),
            backend,
            worker_id="w1",
            workspace=workspace,
            options=RunnerOptions(abort_grace_seconds=5.0, pipe_close_timeout=2.0),
            control=control,
            isolator=isolator,
        )
    finally:
        isolator.close()
    log = backend.log_path(1).read_text(errors="replace")
    return outcome.status, log


@needs_root
async def test_a_job_runs_as_its_own_uid_with_private_folders(
    backend: RecordingBackend, sandbox_workspace: Workspace
) -> None:
    script = 'id -u; id -G; echo "home=$HOME tmp=$TMPDIR"; ls -ld "$LOCAL_JOB_SPEC_DIR"'
    status, log = await _run_sandboxed(
        resolve_isolation("uid"), backend, sandbox_workspace, ["sh", "-c", script]
    )
    assert status is JobStatus.FINISHED, log
    out = [line.split(" ", 2)[2] for line in log.splitlines() if line.split(" ")[1] == "out"]
    uid, root = FIRST_UID + 10, sandbox_workspace.jobs_root
    assert out[:3] == [str(uid), str(uid), f"home={root}/1.tmp tmp={root}/1.tmp"], log
    assert out[3].startswith("drwx------") and f" {uid} {uid} " in out[3], out[3]
    assert list(sandbox_workspace.jobs_root.iterdir()) == [], "folders removed after the job"


@needs_bwrap
async def test_namespace_abort_gives_the_program_its_grace(
    backend: RecordingBackend, sandbox_workspace: Workspace
) -> None:
    control = JobControl()
    script = (
        "trap 'echo got TERM; sleep 0.3; echo clean exit; exit 0' TERM; echo ready; sleep 30 & wait"
    )
    plan = resolve_isolation("namespace")
    assert plan.mode == "namespace"

    async def abort_when_ready() -> None:
        deadline = time.monotonic() + 20
        while b"ready" not in _read(backend.log_path(1)):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        control.abort("requested by test")

    aborter = asyncio.create_task(abort_when_ready())
    status, log = await _run_sandboxed(
        plan, backend, sandbox_workspace, ["sh", "-c", script], control
    )
    await aborter
    assert status is JobStatus.FAILED
    assert "got TERM" in log and "clean exit" in log, log


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


@needs_bwrap
def test_namespace_argv_hides_server_folders_and_binds_the_jobs_own(tmp_path: Path) -> None:
    plan = resolve_isolation("namespace")
    home = tmp_path / "home"
    (home / "blobs").mkdir(parents=True)
    isolator = Isolator(plan, hidden=(home, home / "blobs", tmp_path / "missing"))
    dirs = JobDirs(
        spec_dir=f"{home}/work/jobs/3",
        out_dir=f"{home}/work/jobs/3.out",
        payload_dir=f"{home}/work/jobs/3.payload",
        tmp_dir=f"{home}/work/jobs/3.tmp",
    )
    argv = isolator.open_job().command(["prog", "arg"], dirs)
    text = " ".join(argv)
    assert f"--tmpfs {home} " in text and f"--remount-ro {home} " in text
    assert f"--tmpfs {home}/blobs" not in text, "inside a hidden folder already"
    assert "missing" not in text
    for folder in dirs.all:
        assert f"--bind {folder} {folder}" in text
    assert text.index("--bind") < text.index("--remount-ro")
    assert argv[-3:] == ["--", "prog", "arg"]
