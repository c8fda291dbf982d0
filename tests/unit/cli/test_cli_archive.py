"""Deterministic folder zips: the same folder, the same bytes."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from jobyard.cli.archive import prepared_package, write_folder_zip
from jobyard.cli.context import CliFailure


def make_folder(root: Path) -> Path:
    (root / "lib" / "deep").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "main.sh").write_text("echo hi\n")
    (root / "main.sh").chmod(0o700)
    (root / "lib" / "util.py").write_text("X = 1\n")
    (root / "lib" / "deep" / "data.bin").write_bytes(bytes(range(256)) * 10)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.pyc").write_bytes(b"junk")
    (root / "lib" / "stale.pyc").write_bytes(b"junk")
    return root


def zip_bytes(folder: Path) -> bytes:
    buf = io.BytesIO()
    write_folder_zip(folder, buf)
    return buf.getvalue()


def sha_of(folder: Path) -> str:
    with prepared_package(folder) as prepared:
        return prepared.sha256


def test_same_folder_same_sha(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "pkg")
    first = sha_of(folder)
    assert sha_of(folder) == first
    for path in folder.rglob("*"):  # timestamps and group/other bits do not matter
        os.utime(path, (1_234_567, 1_234_567))
    (folder / "lib" / "util.py").chmod(0o600)
    assert sha_of(folder) == first


def test_a_copy_elsewhere_has_the_same_sha(tmp_path: Path) -> None:
    assert sha_of(make_folder(tmp_path / "a")) == sha_of(make_folder(tmp_path / "b" / "a"))


def test_content_and_exec_bit_change_the_sha(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "pkg")
    before = sha_of(folder)
    (folder / "lib" / "util.py").chmod(0o755)
    with_exec = sha_of(folder)
    assert with_exec != before
    (folder / "lib" / "util.py").chmod(0o644)
    assert sha_of(folder) == before
    (folder / "lib" / "util.py").write_text("X = 2\n")
    assert sha_of(folder) != before


def test_entries_sorted_fixed_time_and_modes(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "pkg")
    with zipfile.ZipFile(io.BytesIO(zip_bytes(folder))) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        assert names == sorted(names)
        assert names == [
            "empty/",
            "lib/",
            "lib/deep/",
            "lib/deep/data.bin",
            "lib/util.py",
            "main.sh",
        ]
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        modes = {i.filename: i.external_attr >> 16 for i in infos}
        assert modes["main.sh"] == 0o100755  # exec bit kept (owner-only x becomes 755)
        assert modes["lib/util.py"] == 0o100644
        assert stat.S_ISDIR(modes["lib/"])
        assert zf.read("lib/deep/data.bin") == bytes(range(256)) * 10
        assert zf.testzip() is None


def test_a_file_is_sent_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "job.tar.gz"
    path.write_bytes(b"not really a tarball")
    with prepared_package(path) as prepared:
        assert prepared.upload.filename == "job.tar.gz"
        assert not prepared.from_folder
        assert prepared.size == len(b"not really a tarball")


def test_folder_upload_is_named_after_the_folder(tmp_path: Path) -> None:
    with prepared_package(make_folder(tmp_path / "etl")) as prepared:
        assert prepared.upload.filename == "etl.zip"
        assert prepared.from_folder


def test_links_to_files_are_followed_links_to_folders_refused(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "pkg")
    (folder / "alias.sh").symlink_to(folder / "main.sh")
    with zipfile.ZipFile(io.BytesIO(zip_bytes(folder))) as zf:
        assert zf.read("alias.sh") == b"echo hi\n"
    (folder / "loop").symlink_to(folder)
    with pytest.raises(CliFailure, match="links to folders"):
        zip_bytes(folder)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CliFailure, match="no such file"), prepared_package(tmp_path / "nope"):
        pass
