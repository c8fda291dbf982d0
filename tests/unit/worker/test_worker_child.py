"""The child process layer: the lean spawn, its Popen fallback, and the descriptor watch."""

from __future__ import annotations

import asyncio
import os
import select
from pathlib import Path

import pytest

from jobyard.worker import child as child_module
from jobyard.worker.child import Child
from jobyard.worker.logwriter import LogWriter

ENV = {"PATH": os.defpath, "LANG": "C.UTF-8"}


@pytest.fixture(params=["fork_exec", "popen"])
def spawn_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of spawning: Popen's primitive called directly, and Popen itself."""
    if request.param == "popen":
        monkeypatch.setattr(child_module, "_fork_exec", None)
    elif child_module._fork_exec is None:
        pytest.skip("this Python's spawning primitive is not known")
    return str(request.param)


async def _run(argv: list[str], cwd: Path, log: Path) -> tuple[Child, list[bytes]]:
    writer = LogWriter(log)
    child = await Child.spawn(argv, cwd=cwd, env=ENV, writer=writer)
    await asyncio.wait_for(asyncio.gather(child.exited, child.closed), 10)
    child.release()
    writer.close()
    raw = log.read_bytes() if log.exists() else b""  # nothing written: no log file
    lines = [line.split(b" ", 1)[1] for line in raw.splitlines()]
    return child, lines


async def test_output_exit_status_and_stdin(spawn_path: str, tmp_path: Path) -> None:
    script = "read x || echo no-stdin; echo out; echo err >&2; pwd; umask; exit 3"
    child, lines = await _run(["sh", "-c", script], tmp_path, tmp_path / "log")
    assert child.returncode == 3
    assert sorted(lines) == sorted(
        [b"out no-stdin", b"out out", b"err err", b"out " + os.fsencode(tmp_path), b"out 0022"]
    )


async def test_new_session_and_only_its_own_descriptors(spawn_path: str, tmp_path: Path) -> None:
    child, lines = await _run(
        ["sh", "-c", "ps -o sid= -p $$; ls /proc/self/fd | wc -l"], tmp_path, tmp_path / "log"
    )
    assert child.returncode == 0
    assert lines[0].split() == [b"out", str(child.pid).encode()]  # session leader
    # 0, 1, 2, and the descriptor ls opens to list the folder: nothing of the worker.
    assert lines[1].split() == [b"out", b"4"]


async def test_killed_by_a_signal(spawn_path: str, tmp_path: Path) -> None:
    child, _ = await _run(["sh", "-c", "kill -TERM $$"], tmp_path, tmp_path / "log")
    assert child.returncode == -15


async def test_exec_failures_raise_as_popen_does(spawn_path: str, tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "log")
    missing = "no-such-program-here"
    with pytest.raises(FileNotFoundError) as raised:
        await Child.spawn([missing], cwd=tmp_path, env=ENV, writer=writer)
    assert raised.value.filename == missing
    gone = tmp_path / "gone"
    with pytest.raises(FileNotFoundError) as raised:
        await Child.spawn(["true"], cwd=gone, env=ENV, writer=writer)
    assert raised.value.filename == str(gone)  # chdir failed, as Popen reports it
    plain = tmp_path / "plain.txt"
    plain.write_text("not a program")
    with pytest.raises(PermissionError) as raised:
        await Child.spawn([str(plain)], cwd=tmp_path, env=ENV, writer=writer)
    assert raised.value.filename == str(plain)
    assert len(os.listdir("/proc/self/fd")) < 64  # no pipe left open by the failures


async def test_loop_readers_when_epoll_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delattr(select, "epoll")
    readers = child_module._Readers(asyncio.get_running_loop())
    monkeypatch.setattr(child_module, "_readers", lambda _loop: readers)
    child, lines = await _run(["sh", "-c", "echo hi"], tmp_path, tmp_path / "log")
    assert (child.returncode, lines) == (0, [b"out hi"])


async def test_a_failing_read_callback_does_not_stop_the_others() -> None:
    loop = asyncio.get_running_loop()
    errors: list[str] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context["message"]))
    readers = child_module._Readers(loop)
    seen = asyncio.Event()
    (r1, w1), (r2, w2) = os.pipe(), os.pipe()

    def fail() -> None:
        raise RuntimeError("boom")

    readers.add(r1, fail)
    readers.add(r2, seen.set)
    os.write(w1, b"x")
    os.write(w2, b"x")
    await asyncio.wait_for(seen.wait(), 5)
    for fd in (r1, r2):
        readers.remove(fd)
    for fd in (r1, w1, r2, w2):
        os.close(fd)
    assert "exception in a job's read callback" in errors
