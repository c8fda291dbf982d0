"""The runner, for real: real child processes, real files, a recording control plane."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import io
import os
import re
import sys
import tarfile
import time
from pathlib import Path

import pytest
from worker_fakes import RecordingBackend, make_assignment, make_job, pid_gone, wait_until

from jobyard.core.errors import NotFound
from jobyard.core.jobs import JobStatus
from jobyard.core.models import Job
from jobyard.core.packages import sha256_file
from jobyard.worker.protocol import Assignment, PayloadRef
from jobyard.worker.runner import (
    JobControl,
    JobOutcome,
    RunnerOptions,
    _timeout_reason,
    run_acquired_job,
    run_job,
)
from jobyard.worker.workspace import Workspace

LOG_LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (out|err|sys) (.*)$")
PY = sys.executable


async def run(
    backend: RecordingBackend,
    workspace: Workspace,
    options: RunnerOptions,
    argv: list[str],
    job_id: int = 1,
    control: JobControl | None = None,
    **changes: object,
) -> JobOutcome:
    assignment = make_assignment(job_id, argv, **changes)
    return await run_job(
        assignment,
        backend,
        worker_id="w1",
        workspace=workspace,
        options=options,
        control=control,
    )


def log_lines(backend: RecordingBackend, job_id: int = 1) -> list[tuple[str, bytes]]:
    lines = []
    for raw in backend.log_path(job_id).read_bytes().splitlines():
        m = LOG_LINE.match(raw)
        assert m, f"malformed log line {raw!r}"
        lines.append((m.group(1).decode(), m.group(2)))
    return lines


def assert_workspace_gone(workspace: Workspace, job_id: int = 1) -> None:
    dirs = workspace.job_dirs(job_id)
    assert not dirs.spec.exists()
    assert not dirs.out.exists()


# -- end statuses ------------------------------------------------------------------------


async def test_finished(backend: RecordingBackend, workspace: Workspace, options: RunnerOptions):
    outcome = await run(backend, workspace, options, ["true"])
    assert outcome == JobOutcome(JobStatus.FINISHED, 0, None, True)
    assert backend.ended[1].status is JobStatus.FINISHED
    assert backend.names(1) == ["set_running", "log_closed", "end"]
    assert isinstance(backend.running[1], int)
    assert not backend.log_path(1).exists()  # nothing printed: no file created
    assert_workspace_gone(workspace)


async def test_error_exit_code(backend: RecordingBackend, workspace: Workspace, options):
    outcome = await run(backend, workspace, options, ["sh", "-c", "exit 3"])
    assert (outcome.status, outcome.exit_code, outcome.reason) == (
        JobStatus.ERROR,
        3,
        "exit code 3",
    )
    assert log_lines(backend)[-1] == ("sys", b"ERROR: exit code 3")


async def test_success_exit_codes(backend: RecordingBackend, workspace: Workspace, options):
    outcome = await run(
        backend, workspace, options, ["sh", "-c", "exit 3"], success_exit_codes=frozenset({0, 3})
    )
    assert (outcome.status, outcome.exit_code) == (JobStatus.FINISHED, 3)
    outcome = await run(
        backend, workspace, options, ["true"], job_id=2, success_exit_codes=frozenset({1})
    )
    assert (outcome.status, outcome.reason) == (JobStatus.ERROR, "exit code 0")


async def test_killed_by_signal_is_error(backend: RecordingBackend, workspace: Workspace, options):
    outcome = await run(backend, workspace, options, ["sh", "-c", "kill -TERM $$"])
    assert (outcome.status, outcome.exit_code, outcome.reason) == (
        JobStatus.ERROR,
        None,
        "killed by signal SIGTERM",
    )


# -- environment -------------------------------------------------------------------------


async def test_environment(
    backend: RecordingBackend,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("JOBYARD_TOKEN", "server-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "server-secret-2")
    options = RunnerOptions()  # inherits from this (patched) environment
    job = make_job(5, jobconfig_id=None)
    outcome = await run(
        backend,
        workspace,
        options,
        ["sh", "-c", 'env > "$LOCAL_JOB_OUT_DIR/env.txt"; pwd > "$LOCAL_JOB_OUT_DIR/cwd.txt"'],
        job_id=5,
        job=job,
        env={"MY_MACRO": "hello world", "JOB_ID": "forged"},
        template_id=None,
        session_token="tok-123",
    )
    assert outcome.status is JobStatus.FINISHED
    env = dict(line.split("=", 1) for line in backend.outputs[5]["env.txt"].decode().splitlines())
    dirs = workspace.job_dirs(5)
    assert env["MY_MACRO"] == "hello world"
    assert env["JOB_ID"] == "5"
    assert env["JOB_CONFIG_ID"] == ""
    assert env["JOB_TEMPLATE_ID"] == ""
    assert env["LOCAL_JOB_SPEC_DIR"] == str(dirs.spec)
    assert env["LOCAL_JOB_OUT_DIR"] == str(dirs.out)
    assert env["SESSION_ID"] == "tok-123"
    assert env["PATH"] == os.environ["PATH"]
    assert "JOBYARD_TOKEN" not in env
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "server-secret" not in backend.outputs[5]["env.txt"].decode()
    assert backend.outputs[5]["cwd.txt"].decode().strip() == str(dirs.spec)


async def test_environment_ids(backend: RecordingBackend, workspace: Workspace, options):
    outcome = await run(
        backend,
        workspace,
        options,
        ["sh", "-c", 'echo "$JOB_CONFIG_ID/$JOB_TEMPLATE_ID"'],
        template_id=4,
    )
    assert outcome.status is JobStatus.FINISHED
    assert log_lines(backend) == [("out", b"7/4")]


async def test_bad_macro_name_fails_initialization(backend, workspace, options):
    outcome = await run(backend, workspace, options, ["true"], env={"A=B": "x"})
    assert outcome.status is JobStatus.FAILED
    assert outcome.reason is not None
    assert outcome.reason.startswith("initialization failed: macro name 'A=B'")
    assert "set_running" not in backend.names(1)


# -- log ---------------------------------------------------------------------------------


async def test_log_lines_are_timestamped_by_stream(backend, workspace, options):
    script = "echo hello; echo oops >&2; echo; printf 'no newline'"
    before = time.time()
    outcome = await run(backend, workspace, options, ["sh", "-c", script])
    assert outcome.status is JobStatus.FINISHED
    lines = log_lines(backend)
    assert sorted(lines) == sorted(
        [("out", b"hello"), ("err", b"oops"), ("out", b""), ("out", b"no newline")]
    )
    out_lines = [text for stream, text in lines if stream == "out"]
    assert out_lines == [b"hello", b"", b"no newline"], "order within a stream is kept"
    stamp = backend.log_path(1).read_bytes()[:24].decode()
    assert stamp.endswith("Z")
    logged = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    assert before - 1 <= logged <= time.time() + 1, "UTC, not local time"


async def test_log_is_live(backend, workspace, options):
    """A reader following the file sees a line while the program still runs."""
    control = JobControl()
    task = asyncio.create_task(
        run(backend, workspace, options, ["sh", "-c", "echo ready; sleep 300"], control=control)
    )
    log = backend.log_path(1)
    await wait_until(lambda: log.exists() and b"ready" in log.read_bytes(), timeout=5)
    assert not task.done()
    control.abort("test over")
    outcome = await task
    assert outcome.reason == "aborted: test over"


async def test_long_lines_are_split(backend, workspace, options):
    code = "import sys; sys.stdout.write('x' * 200000 + '\\n' + 'y' * 70000)"
    outcome = await run(backend, workspace, options, [PY, "-c", code])
    assert outcome.status is JobStatus.FINISHED
    lines = log_lines(backend)
    assert [len(text) for _, text in lines] == [65536, 65536, 65536, 3392, 65536, 4464]
    assert b"".join(t for _, t in lines[:4]) == b"x" * 200000


async def test_secrets_are_masked_even_when_split_across_reads(backend, workspace, options):
    code = (
        "import sys, time\n"
        "sys.stdout.write('token=s3cr3t-'); sys.stdout.flush()\n"
        "time.sleep(0.05)\n"
        "sys.stdout.write('VALUE end\\n'); sys.stdout.flush()\n"
        "sys.stderr.write('err s3cr3t-VALUE\\n')\n"
        "print('first line of multi')\n"
        "print('second-LINE-secret here')\n"
        "print('clean line')\n"
    )
    outcome = await run(
        backend,
        workspace,
        options,
        [PY, "-c", code],
        secret_values=["s3cr3t-VALUE", "first line of multi\nsecond-LINE-secret"],
    )
    assert outcome.status is JobStatus.FINISHED
    raw = backend.log_path(1).read_bytes()
    assert b"s3cr3t" not in raw
    assert b"VALUE" not in raw
    assert b"second-LINE-secret" not in raw
    lines = log_lines(backend)
    assert ("out", b"token=***** end") in lines
    assert ("err", b"err *****") in lines
    assert ("out", b"*****") in lines
    assert ("out", b"***** here") in lines
    assert ("out", b"clean line") in lines


# -- stopping ----------------------------------------------------------------------------


async def test_abort_kills_the_whole_process_group(backend, workspace, options):
    control = JobControl()
    script = 'sleep 300 & echo $! > "$LOCAL_JOB_SPEC_DIR/bg.pid"; sleep 300'
    task = asyncio.create_task(
        run(backend, workspace, options, ["sh", "-c", script], control=control)
    )
    pid_file = workspace.job_dirs(1).spec / "bg.pid"
    await wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    await wait_until(lambda: 1 in backend.running)
    grandchild = int(pid_file.read_text())
    child = backend.running[1]
    assert child is not None
    assert not pid_gone(grandchild)
    started = time.monotonic()
    control.abort("stopped by alice")
    outcome = await asyncio.wait_for(task, 10)
    assert time.monotonic() - started < 4, "SIGTERM was enough: no grace wait"
    assert (outcome.status, outcome.reason) == (JobStatus.FAILED, "aborted: stopped by alice")
    assert backend.ended[1].reason == "aborted: stopped by alice"
    await wait_until(lambda: pid_gone(grandchild) and pid_gone(child), timeout=5)
    assert log_lines(backend)[-1] == ("sys", b"FAILED: aborted: stopped by alice")
    assert_workspace_gone(workspace)


async def test_abort_escalates_to_sigkill_after_grace(backend, workspace):
    options = RunnerOptions(abort_grace_seconds=0.3)
    control = JobControl()
    script = "trap '' TERM; echo ready; while :; do sleep 1; done"
    task = asyncio.create_task(
        run(backend, workspace, options, ["sh", "-c", script], control=control)
    )
    log = backend.log_path(1)
    await wait_until(lambda: log.exists() and b"ready" in log.read_bytes())
    await wait_until(lambda: 1 in backend.running)
    started = time.monotonic()
    control.abort("now")
    outcome = await asyncio.wait_for(task, 10)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 3
    assert outcome.status is JobStatus.FAILED
    assert backend.running[1] is not None
    assert pid_gone(backend.running[1])


async def test_background_processes_do_not_survive_a_normal_exit(backend, workspace, options):
    script = 'sleep 300 & echo $! > "$LOCAL_JOB_OUT_DIR/bg.pid"; exit 0'
    started = time.monotonic()
    outcome = await run(backend, workspace, options, ["sh", "-c", script])
    assert time.monotonic() - started < 2, "the straggler holding the pipes was killed"
    assert outcome.status is JobStatus.FINISHED
    grandchild = int(backend.outputs[1]["bg.pid"])
    await wait_until(lambda: pid_gone(grandchild), timeout=5)


async def test_timeout(backend, workspace, options):
    started = time.monotonic()
    outcome = await run(backend, workspace, options, ["sleep", "300"], timeout_seconds=0.3)
    assert 0.3 <= time.monotonic() - started < 3
    assert (outcome.status, outcome.reason) == (JobStatus.FAILED, "timeout after 0.3 seconds")
    assert backend.names(1) == ["set_running", "log_closed", "end"]


async def test_timeout_counts_from_acquisition(backend, workspace, options):
    assignment = make_assignment(1, ["sleep", "300"], timeout_seconds=1.0)
    outcome = await run_job(
        assignment,
        backend,
        worker_id="w1",
        workspace=workspace,
        options=options,
        acquired_at=time.monotonic() - 5,
    )
    assert (outcome.status, outcome.reason) == (JobStatus.FAILED, "timeout after 1 second")
    assert "set_running" not in backend.names(1), "timed out during initialization"


def test_timeout_reason_wording():
    assert _timeout_reason(60) == "timeout after 1 minute"
    assert _timeout_reason(300) == "timeout after 5 minutes"
    assert _timeout_reason(1.5) == "timeout after 1.5 seconds"


async def test_abort_during_initialization(backend, workspace, options):
    backend.prepare_gate = asyncio.Event()  # prepare blocks
    backend.assignments[1] = make_assignment(1, ["true"])
    control = JobControl()
    task = asyncio.create_task(
        run_acquired_job(
            make_job(1),
            backend,
            worker_id="w1",
            workspace=workspace,
            options=options,
            control=control,
        )
    )
    await wait_until(lambda: "prepare" in backend.names(1))
    control.abort("changed my mind")
    outcome = await asyncio.wait_for(task, 5)
    assert (outcome.status, outcome.reason) == (JobStatus.FAILED, "aborted: changed my mind")
    assert backend.names(1) == ["prepare", "log_closed", "end"]


class _StubbornBackend(RecordingBackend):
    """Its preparation ignores being cancelled and finishes all the same."""

    async def prepare(self, job: Job) -> Assignment:
        self.calls.append(("prepare", job.id))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        return self.assignments[job.id]


class _RaisingOnCutBackend(RecordingBackend):
    """Its preparation turns being cancelled into an error of its own."""

    async def prepare(self, job: Job) -> Assignment:
        self.calls.append(("prepare", job.id))
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise NotFound("gave up") from None
        return self.assignments[job.id]


async def _run_in_own_task(
    backend: RecordingBackend, workspace: Workspace, options: RunnerOptions, **kwargs: object
) -> tuple[JobOutcome, int]:
    """Run job 1 (acquired) in a task of its own; its outcome and how many cancellations
    that task still has pending once the run returned (the runner must leave none)."""

    async def job_task() -> tuple[JobOutcome, int]:
        outcome = await run_acquired_job(
            kwargs.pop("job", make_job(1)),  # type: ignore[arg-type]
            backend,
            worker_id="w1",
            workspace=workspace,
            options=options,
            **kwargs,  # type: ignore[arg-type]
        )
        task = asyncio.current_task()
        assert task is not None
        return outcome, task.cancelling()

    return await asyncio.wait_for(asyncio.create_task(job_task()), 10)


async def test_timeout_during_initialization(backend, workspace, options):
    backend.prepare_gate = asyncio.Event()  # prepare blocks past the deadline
    backend.assignments[1] = make_assignment(1, ["true"])
    outcome, cancelling = await _run_in_own_task(
        backend, workspace, options, job=make_job(1, timeout=1),
        acquired_at=time.monotonic() - 59.7,
    )  # fmt: skip
    assert (outcome.status, outcome.reason) == (JobStatus.FAILED, "timeout after 1 minute")
    assert cancelling == 0
    assert backend.names(1) == ["prepare", "log_closed", "end"]


async def test_abort_of_a_preparation_that_finishes_anyway(tmp_path, workspace, options):
    backend = _StubbornBackend(tmp_path / "control")
    backend.assignments[1] = make_assignment(1, ["true"])
    control = JobControl()
    asyncio.get_running_loop().call_later(0.2, control.abort, "changed my mind")
    outcome, cancelling = await _run_in_own_task(backend, workspace, options, control=control)
    assert (outcome.status, outcome.reason) == (JobStatus.FAILED, "aborted: changed my mind")
    assert cancelling == 0  # the cut was taken back although nothing raised it
    assert backend.names(1) == ["prepare", "log_closed", "end"]
    assert 1 not in backend.running  # never spawned


async def test_abort_of_a_preparation_that_fails_when_cut(tmp_path, workspace, options):
    backend = _RaisingOnCutBackend(tmp_path / "control")
    control = JobControl()
    asyncio.get_running_loop().call_later(0.2, control.abort, "changed my mind")
    outcome, cancelling = await _run_in_own_task(backend, workspace, options, control=control)
    assert (outcome.status, outcome.reason) == (JobStatus.FAILED, "aborted: changed my mind")
    assert cancelling == 0


async def test_cancelling_the_task_during_initialization_still_reports(backend, workspace, options):
    backend.prepare_gate = asyncio.Event()
    backend.assignments[1] = make_assignment(1, ["true"])
    control = JobControl()
    task = asyncio.create_task(
        run_acquired_job(
            make_job(1), backend, worker_id="w1", workspace=workspace, options=options,
            control=control,
        )
    )  # fmt: skip
    await wait_until(lambda: "prepare" in backend.names(1))
    control.abort("too late")  # the task's own cancellation wins over the cut
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backend.ended[1].reason == "aborted: worker task cancelled"


async def test_lost_lease_kills_without_reporting(backend, workspace, options):
    control = JobControl()
    task = asyncio.create_task(run(backend, workspace, options, ["sleep", "300"], control=control))
    await wait_until(lambda: 1 in backend.running)
    control.lose()
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.reported is False
    assert backend.ended == {}
    assert "log_closed" not in backend.names(1)
    pid = backend.running[1]
    assert pid is not None
    assert pid_gone(pid)
    assert_workspace_gone(workspace)


async def test_set_running_refused_kills_the_program(backend, workspace, options):
    backend.allow_running = False
    outcome = await run(backend, workspace, options, ["sleep", "300"])
    assert outcome.reported is False
    assert backend.names(1) == ["set_running"]


async def test_cancelling_the_task_still_reports(backend, workspace, options):
    task = asyncio.create_task(run(backend, workspace, options, ["sleep", "300"]))
    await wait_until(lambda: 1 in backend.running)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backend.ended[1].status is JobStatus.FAILED
    pid = backend.running[1]
    assert pid is not None
    await wait_until(lambda: pid_gone(pid), timeout=5)


# -- initialization failures -------------------------------------------------------------


async def test_prepare_error_fails_initialization(backend, workspace, options):
    backend.prepare_errors[1] = NotFound("entry point 'nightly' is not in the package")
    outcome = await run_acquired_job(
        make_job(1), backend, worker_id="w1", workspace=workspace, options=options
    )
    reason = "initialization failed: entry point 'nightly' is not in the package"
    assert (outcome.status, outcome.reason) == (JobStatus.FAILED, reason)
    assert backend.names(1) == ["prepare", "log_closed", "end"]
    assert log_lines(backend) == [("sys", f"FAILED: {reason}".encode())]


async def test_unexpected_prepare_exception(backend, workspace, options):
    backend.prepare_errors[1] = RuntimeError("boom")
    outcome = await run_acquired_job(
        make_job(1), backend, worker_id="w1", workspace=workspace, options=options
    )
    assert outcome.reason == "initialization failed: RuntimeError: boom"


async def test_cannot_start_program(backend, workspace, options):
    outcome = await run(backend, workspace, options, ["/no/such/program", "x"])
    assert outcome.status is JobStatus.FAILED
    assert outcome.reason is not None
    assert outcome.reason.startswith("cannot start program: No such file or directory")
    assert "set_running" not in backend.names(1)
    assert_workspace_gone(workspace)


async def test_cannot_start_program_not_executable(backend, workspace, options, tmp_path):
    script = tmp_path / "run.sh"
    script.write_bytes(b"echo no shebang, not executable\n")
    sha = sha256_file(script)
    backend.packages[sha] = script
    outcome = await run(
        backend,
        workspace,
        options,
        ["run.sh"],
        package_sha256=sha,
        package_kind="file",
        package_filename="run.sh",
    )
    assert outcome.reason is not None
    assert "write ./run.sh" in outcome.reason


async def test_empty_command(backend, workspace, options):
    outcome = await run(backend, workspace, options, [])
    assert outcome.reason == "initialization failed: no command to run"


# -- files -------------------------------------------------------------------------------


async def test_outputs_handed_over(backend, workspace, options):
    script = (
        'cd "$LOCAL_JOB_OUT_DIR" && echo a > a.txt && mkdir -p sub/deep && echo b > sub/deep/b.txt'
        " && ln -s /etc/hostname link && mkfifo fifo"
    )
    outcome = await run(backend, workspace, options, ["sh", "-c", script])
    assert outcome.status is JobStatus.FINISHED
    assert backend.outputs[1] == {"a.txt": b"a\n", "sub/deep/b.txt": b"b\n"}
    assert backend.names(1) == ["set_running", "store_output", "store_output", "log_closed", "end"]
    assert_workspace_gone(workspace)


async def test_payload_files(backend, workspace, options, tmp_path):
    src = tmp_path / "blob"
    src.write_bytes(b"col\n1\n")
    backend.payloads["payloads/1/in.csv"] = src
    outcome = await run(
        backend,
        workspace,
        options,
        [
            "sh",
            "-c",
            'cd "$JOB_PAYLOAD_DIR" && cat in.csv data/x.csv > "$LOCAL_JOB_OUT_DIR/copy"'
            ' && echo z >> in.csv && ls -A "$LOCAL_JOB_SPEC_DIR" | wc -l',
        ],
        payload=[
            PayloadRef("in.csv", "payloads/1/in.csv"),
            PayloadRef("data/x.csv", "payloads/1/in.csv"),
        ],
    )
    assert outcome.status is JobStatus.FINISHED
    assert backend.outputs[1]["copy"] == b"col\n1\ncol\n1\n"
    assert src.read_bytes() == b"col\n1\n", "the job got a copy"
    assert ("out", b"0") in log_lines(backend), "payload files stay out of the package folder"


async def test_outputs_refused_are_noted_and_odd_names_kept_safely(backend, workspace, options):
    script = (
        'cd "$LOCAL_JOB_OUT_DIR" && echo a > "back\\slash" && echo b > "new\nline"'
        " && printf c > \"$(printf 'bad\\377')\" && echo d > '100%.txt'"
        " && echo e > twice && ln twice twice2 && ln -s /etc/hostname link && mkfifo fifo"
    )
    outcome = await run(backend, workspace, options, ["sh", "-c", script])
    assert outcome.status is JobStatus.FINISHED
    assert backend.outputs[1] == {
        "back%5Cslash": b"a\n",
        "new%0Aline": b"b\n",
        "bad%FF": b"c",
        "100%.txt": b"d\n",
    }
    notes = b"\n".join(text for stream, text in log_lines(backend) if stream == "sys")
    for name, why in [
        (b"twice", b"a hard link"),
        (b"twice2", b"a hard link"),
        (b"link", b"a symbolic link"),
        (b"fifo", b"a FIFO"),
    ]:
        assert b"output file '" + name + b"' not kept: " + why in notes, notes


async def test_payload_never_replaces_a_package_file(backend, workspace, options, tmp_path):
    pkg = make_tgz(tmp_path / "pkg.tgz", {"run.sh": (b"#!/bin/sh\necho package\n", 0o755)})
    backend.packages[sha256_file(pkg)] = pkg
    evil = tmp_path / "evil"
    evil.write_bytes(b"#!/bin/sh\necho caller\n")
    backend.payloads["k"] = evil
    outcome = await run(
        backend,
        workspace,
        options,
        ["./run.sh"],
        package_sha256=sha256_file(pkg),
        package_kind="tar",
        package_filename="pkg.tgz",
        payload=[PayloadRef("run.sh", "k")],
    )
    assert outcome.status is JobStatus.FINISHED
    assert ("out", b"package") in log_lines(backend)


async def test_bad_payload_name(backend, workspace, options, tmp_path):
    src = tmp_path / "blob"
    src.write_bytes(b"x")
    backend.payloads["k"] = src
    outcome = await run(backend, workspace, options, ["true"], payload=[PayloadRef("../x", "k")])
    assert outcome.status is JobStatus.FAILED
    assert outcome.reason is not None and "initialization failed" in outcome.reason
    assert not (workspace.jobs_root / "x").exists()


def make_tgz(path: Path, files: dict[str, tuple[bytes, int]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tf.addfile(info, io.BytesIO(data))
    return path


async def test_package_unpacked_cached_and_copied(backend, workspace, options, tmp_path):
    pkg = make_tgz(
        tmp_path / "pkg.tgz",
        {
            "run.sh": (b'#!/bin/sh\necho "v=$(cat conf/v.txt)"\nrm conf/v.txt\n', 0o755),
            "conf/v.txt": (b"42", 0o644),
        },
    )
    sha = sha256_file(pkg)
    backend.packages[sha] = pkg
    pkg_fields = {"package_sha256": sha, "package_kind": "tar", "package_filename": "pkg.tgz"}
    first, second = await asyncio.gather(
        run(backend, workspace, options, ["./run.sh"], job_id=1, **pkg_fields),
        run(backend, workspace, options, ["./run.sh"], job_id=2, **pkg_fields),
    )
    third = await run(backend, workspace, options, ["./run.sh"], job_id=3, **pkg_fields)
    assert [o.status for o in (first, second, third)] == [JobStatus.FINISHED] * 3
    for job_id in (1, 2, 3):
        assert log_lines(backend, job_id) == [("out", b"v=42")], "each job has an intact copy"
    assert (workspace.cache_root / sha / "conf/v.txt").read_bytes() == b"42"
    assert backend.package_fetches <= 2  # concurrent first runs share one unpack
    fetches = backend.package_fetches
    await run(backend, workspace, options, ["./run.sh"], job_id=4, **pkg_fields)
    assert backend.package_fetches == fetches, "a cached package is not fetched again"
    assert [p.name for p in workspace.cache_root.iterdir()] == [sha]


async def test_package_kind_detected_when_unknown(backend, workspace, options, tmp_path):
    pkg = make_tgz(tmp_path / "pkg.bin", {"hello.txt": (b"hi", 0o644)})
    sha = sha256_file(pkg)
    backend.packages[sha] = pkg
    outcome = await run(
        backend, workspace, options, ["cat", "hello.txt"], package_sha256=sha, package_kind=None
    )
    assert outcome.status is JobStatus.FINISHED
    assert log_lines(backend) == [("out", b"hi")]


async def test_single_file_package(backend, workspace, options, tmp_path):
    script = tmp_path / "upload"
    script.write_bytes(b"#!/bin/sh\necho single\n")
    sha = sha256_file(script)
    backend.packages[sha] = script
    outcome = await run(
        backend,
        workspace,
        options,
        ["./job.sh"],
        package_sha256=sha,
        package_kind="file",
        package_filename="job.sh",
    )
    assert outcome.status is JobStatus.FINISHED
    assert log_lines(backend) == [("out", b"single")]


async def test_unsafe_package_fails_initialization(backend, workspace, options, tmp_path):
    pkg = make_tgz(tmp_path / "evil.tgz", {"ok": (b"", 0o644), "../../evil.sh": (b"x", 0o755)})
    sha = sha256_file(pkg)
    backend.packages[sha] = pkg
    outcome = await run(
        backend, workspace, options, ["true"], package_sha256=sha, package_kind="tar"
    )
    assert outcome.status is JobStatus.FAILED
    assert outcome.reason == (
        "initialization failed: archive entry '../../evil.sh' would be written outside the "
        "workspace"
    )
    assert "set_running" not in backend.names(1)
    assert not (tmp_path / "evil.sh").exists()
    assert not (workspace.root / "evil.sh").exists()
    assert list(workspace.cache_root.iterdir()) == []


async def test_package_checksum_mismatch(backend, workspace, options, tmp_path):
    pkg = make_tgz(tmp_path / "p.tgz", {"a": (b"", 0o644)})
    backend.packages["0" * 64] = pkg
    outcome = await run(
        backend, workspace, options, ["true"], package_sha256="0" * 64, package_kind="tar"
    )
    assert outcome.reason is not None
    assert outcome.reason.startswith("initialization failed: package checksum mismatch")
