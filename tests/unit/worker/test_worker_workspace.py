"""Workspace: job folders, the package cache, payload placement, outputs, cleanup."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
from pathlib import Path

import pytest

from jobyard.core.errors import InvalidInput
from jobyard.core.packages import sha256_file
from jobyard.worker.outputs import collect_outputs
from jobyard.worker.workspace import Workspace


def make_tgz(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return path


def test_job_dirs_layout_and_leftovers(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "w")
    dirs = ws.create_job_dirs(12)
    assert dirs.spec == tmp_path / "w" / "jobs" / "12"
    assert dirs.out == tmp_path / "w" / "jobs" / "12.out"
    (dirs.spec / "stale").write_text("x")
    again = ws.create_job_dirs(12)  # leftovers of a crashed run are cleared
    assert list(again.spec.iterdir()) == []


def test_job_dirs_as_strings_and_paths(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "w")
    base = tmp_path / "w" / "jobs"
    plain = ws.job_dirs(7)
    assert plain.folders == (f"{base}/7", f"{base}/7.out", f"{base}/7.payload")
    assert plain.all == (base / "7", base / "7.out", base / "7.payload")
    assert plain.tmp is None and plain.tmp_dir is None
    sandboxed = ws.create_job_dirs(7, private_tmp=True)
    assert sandboxed.tmp == base / "7.tmp" and sandboxed.payload == base / "7.payload"
    assert [os.path.isdir(folder) for folder in sandboxed.folders] == [True] * 4


async def test_remove_job_dirs_even_read_only(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "w")
    dirs = ws.create_job_dirs(1)
    locked = dirs.spec / "locked"
    locked.mkdir()
    (locked / "f").write_text("x")
    locked.chmod(0o500)
    (dirs.out / "o").write_text("y")
    await ws.remove_job_dirs(dirs)
    assert not dirs.spec.exists()
    assert not dirs.out.exists()
    await ws.remove_job_dirs(dirs)  # already gone: fine


async def test_cache_filled_once_under_concurrency(tmp_path: Path) -> None:
    pkg = make_tgz(tmp_path / "p.tgz", {"a.txt": b"A", "d/b.txt": b"B"})
    sha = sha256_file(pkg)
    ws = Workspace(tmp_path / "w")
    other_process = Workspace(tmp_path / "w")  # shares the folder, not the in-memory state
    fetches = 0

    async def fetch() -> Path:
        nonlocal fetches
        fetches += 1
        return pkg

    job_dirs = [ws.create_job_dirs(i) for i in range(5)]
    await asyncio.gather(
        *(
            ws.install_package(d, sha256=sha, kind="tar", filename="p.tgz", fetch=fetch)
            for d in job_dirs
        ),
        other_process.obtain_package(sha, "tar", fetch),
    )
    for d in job_dirs:
        assert (d.spec / "d" / "b.txt").read_bytes() == b"B"
    assert fetches == 2, "one fetch per process: concurrent jobs share it"
    assert sorted(p.name for p in ws.cache_root.iterdir()) == [sha], "no temp leftovers"
    (job_dirs[0].spec / "a.txt").write_text("changed by a job")
    assert (ws.cache_root / sha / "a.txt").read_bytes() == b"A", "jobs get copies"

    fresh = ws.create_job_dirs(99)
    await ws.install_package(fresh, sha256=sha, kind="tar", filename=None, fetch=fetch)
    assert fetches == 2, "a cached package is not fetched again"
    assert (fresh.spec / "a.txt").read_bytes() == b"A"


async def test_payload_goes_to_its_own_folder_never_into_the_package(tmp_path: Path) -> None:
    pkg = make_tgz(tmp_path / "p.tgz", {"real/x": b"pkg"}, links={"alias": "real", "f": "real/x"})
    sha = sha256_file(pkg)
    ws = Workspace(tmp_path / "w")
    dirs = ws.create_job_dirs(1)

    async def fetch() -> Path:
        return pkg

    await ws.install_package(dirs, sha256=sha, kind=None, filename=None, fetch=fetch)
    src = tmp_path / "payload"
    src.write_bytes(b"payload")
    await ws.place_payload(dirs, "alias/x", src)
    await ws.place_payload(dirs, "f", src)
    assert (dirs.payload / "alias" / "x").read_bytes() == b"payload"
    assert (dirs.payload / "f").read_bytes() == b"payload"
    assert (dirs.spec / "f").is_symlink(), "the package is untouched"
    assert (dirs.spec / "real" / "x").read_bytes() == b"pkg"
    os.symlink(dirs.spec, dirs.payload / "link")
    with pytest.raises(InvalidInput, match="written through"):
        await ws.place_payload(dirs, "link/x", src)
    for bad in ("../escape", "/abs", "", "a/../../b"):
        with pytest.raises(InvalidInput):
            await ws.place_payload(dirs, bad, src)


def test_output_files(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "w")
    dirs = ws.create_job_dirs(3)
    (dirs.out / "z.txt").write_text("z")
    (dirs.out / "sub" / "deeper").mkdir(parents=True)
    (dirs.out / "sub" / "deeper" / "a.bin").write_bytes(b"a")
    os.symlink("/etc/hostname", dirs.out / "link")
    os.symlink(dirs.out / "sub", dirs.out / "dirlink")
    scan = collect_outputs(dirs.out)
    assert [name for name, _ in scan.kept] == ["sub/deeper/a.bin", "z.txt"]
    assert sorted(scan.refused) == [
        "output file 'dirlink' not kept: a symbolic link",
        "output file 'link' not kept: a symbolic link",
    ]


def test_job_folders_belong_to_the_job_uid(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "w", jobs_root=tmp_path / "elsewhere" / "jobs")
    # As root: a uid of the job range; unprivileged, chown can only keep our own.
    owner = (2_000_000_123,) * 2 if os.geteuid() == 0 else (os.getuid(), os.getgid())
    dirs = ws.create_job_dirs(4, owner=owner, private_tmp=True)
    assert dirs.tmp == tmp_path / "elsewhere" / "jobs" / "4.tmp"
    for folder in dirs.all:
        st = os.stat(folder)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (*owner, 0o700)
    assert os.stat(ws.jobs_root).st_mode & 0o777 == 0o711
    assert os.stat(ws.cache_root).st_mode & 0o777 == 0o700
    assert ws.spare_root == tmp_path / "elsewhere" / "spare"


@pytest.mark.skipif(os.geteuid() != 0, reason="job folders belong to a job uid only as root")
async def test_an_ended_jobs_folder_is_taken_back_before_it_is_found_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that opened its folder to others must not let another job's process slip a
    file in between the emptiness check and the folder becoming a spare."""
    ws = Workspace(tmp_path / "work")
    dirs = ws.create_job_dirs(1, owner=(2_000_000_001, 2_000_000_001), private_tmp=True)
    os.chmod(dirs.out, 0o777)
    seen: dict[str, tuple[int, int]] = {}
    real_scandir = os.scandir

    def checking(path: Path) -> object:
        st = os.stat(path)
        seen[os.fspath(path)] = (st.st_uid, st.st_mode & 0o7777)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", checking)
    await ws.remove_job_dirs(dirs)
    monkeypatch.undo()
    assert seen == {os.fspath(folder): (os.geteuid(), 0o700) for folder in dirs.all}
    assert not any(folder.exists() for folder in dirs.all)
    again = ws.create_job_dirs(2, owner=(2_000_000_002, 2_000_000_002), private_tmp=True)
    for folder in again.all:  # spares, given to the next job's uid
        st = os.stat(folder)
        assert (st.st_uid, st.st_mode & 0o777, os.listdir(folder)) == (2_000_000_002, 0o700, [])
