"""Package detection, manifest validation and safe unpacking, on real archives."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from jobyard.core.errors import InvalidInput, TooLarge, UnsafePackage
from jobyard.core.packages import (
    detect_kind,
    normalize_member_name,
    parse_manifest,
    read_manifest,
    sha256_file,
)
from jobyard.core.unpack import safe_unpack, unpack_package

MB = 1024 * 1024
LIMITS = {"max_bytes": 10 * MB, "max_entries": 1000}


# -- builders ---------------------------------------------------------------------------


def make_zip(path: Path, entries: list[tuple[str, bytes | None, int]]) -> Path:
    """entries: (name, data or None for a directory, unix mode incl. type bits or 0)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (mode << 16) | (0x10 if data is None else 0)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, b"" if data is None else data)
    return path


def tar_file(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def tar_entry(name: str, type_: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.linkname = linkname
    info.mode = 0o755 if type_ == tarfile.DIRTYPE else 0o644
    return info, None


def make_tar(
    path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz"
) -> Path:
    with tarfile.open(path, mode) as tf:  # type: ignore[call-overload]
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def listing(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


# -- detection ----------------------------------------------------------------------------


def test_detect_kind_by_content(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "pkg.bin", [("a.txt", b"x", 0o100644)])
    assert detect_kind(z) == "zip"
    for mode, suffix in (("w", ".tar"), ("w:gz", ".tgz"), ("w:bz2", ".bz2"), ("w:xz", ".xz")):
        t = make_tar(tmp_path / f"pkg{suffix}.data", [tar_file("a.txt", b"x")], mode)
        assert detect_kind(t) == "tar", mode
    script = tmp_path / "run.zip"  # a misleading name does not matter
    script.write_bytes(b"#!/bin/sh\necho PK\n")
    assert detect_kind(script) == "file"
    fake_zip = tmp_path / "fake"
    fake_zip.write_bytes(b"PK\x03\x04 not really a zip")
    assert detect_kind(fake_zip) == "file"
    import gzip

    gz = tmp_path / "data.csv.gz"
    gz.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    assert detect_kind(gz) == "file"
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert detect_kind(empty) == "file"


def test_sha256_file_streams(tmp_path: Path) -> None:
    data = os.urandom(3 * MB + 17)
    f = tmp_path / "blob"
    f.write_bytes(data)
    assert sha256_file(f, chunk_size=4096) == hashlib.sha256(data).hexdigest()


# -- manifest -----------------------------------------------------------------------------


def test_manifest_valid() -> None:
    eps = parse_manifest(
        b"""
[entrypoints.main]
command = ["python", "main.py"]
env = { MODE = "full" }
timeout = 5

[entrypoints.quick]
command = ["./run.sh", "--fast"]
"""
    )
    assert eps == {
        "main": {"command": ["python", "main.py"], "env": {"MODE": "full"}, "timeout": 5},
        "quick": {"command": ["./run.sh", "--fast"], "env": {}, "timeout": None},
    }
    assert parse_manifest("") == {}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[entrypoints.main]\n", "entrypoints.main.command"),
        ('[entrypoints.main]\ncommand = "python main.py"\n', "entrypoints.main.command"),
        ("[entrypoints.main]\ncommand = []\n", "entrypoints.main.command"),
        ('[entrypoints.main]\ncommand = ["a", 1]\n', "entrypoints.main.command[1]"),
        ('[entrypoints.main]\ncommand = [""]\n', "entrypoints.main.command[0]"),
        ('[entrypoints.main]\ncommand = ["a"]\ntimeout = -1\n', "entrypoints.main.timeout"),
        ('[entrypoints.main]\ncommand = ["a"]\ntimeout = 1.5\n', "entrypoints.main.timeout"),
        ('[entrypoints.main]\ncommand = ["a"]\ntimeout = true\n', "entrypoints.main.timeout"),
        ('[entrypoints.main]\ncommand = ["a"]\nenv = { A = 1 }\n', "entrypoints.main.env.A"),
        ('[entrypoints.main]\ncommand = ["a"]\nenv = "A=1"\n', "entrypoints.main.env"),
        ('[entrypoints.main]\ncommand = ["a"]\nenv = { "1A" = "x" }\n', "entrypoints.main.env.1A"),
        ('[entrypoints.main]\ncommand = ["a"]\ncmd = ["b"]\n', "entrypoints.main.cmd"),
        ('[entrypoints."bad name"]\ncommand = ["a"]\n', "entrypoints.bad name"),
        ("entrypoints = 3\n", "entrypoints"),
        ('[entrypoint.main]\ncommand = ["a"]\n', "entrypoint"),
    ],
)
def test_manifest_errors_name_the_key(text: str, key: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_manifest(text)
    assert info.value.details["key"] == key
    assert key in info.value.message


def test_manifest_not_toml() -> None:
    with pytest.raises(InvalidInput, match="not valid TOML"):
        parse_manifest("[entrypoints.main\n")
    with pytest.raises(InvalidInput, match="not UTF-8"):
        parse_manifest(b"\xff\xfe")


def test_read_manifest_from_zip_and_tar(tmp_path: Path) -> None:
    manifest = b'[entrypoints.main]\ncommand = ["sh", "run.sh"]\n'
    z = make_zip(tmp_path / "p.zip", [("jobyard.toml", manifest, 0o100644)])
    t = make_tar(tmp_path / "p.tgz", [tar_file("./jobyard.toml", manifest)])
    nested = make_tar(tmp_path / "n.tgz", [tar_file("sub/jobyard.toml", manifest)])
    expected = {"main": {"command": ["sh", "run.sh"], "env": {}, "timeout": None}}
    assert read_manifest(z, "zip") == expected
    assert read_manifest(t, "tar") == expected
    assert read_manifest(nested, "tar") == {}  # only the root counts
    assert read_manifest(z, "file") == {}
    bad = make_zip(tmp_path / "bad.zip", [("jobyard.toml", b"[entrypoints.x]\n", 0o100644)])
    with pytest.raises(InvalidInput, match=r"entrypoints\.x\.command"):
        read_manifest(bad, "zip")


# -- names --------------------------------------------------------------------------------


def test_normalize_member_name() -> None:
    assert normalize_member_name("./a//b/") == "a/b"
    assert normalize_member_name("./") == ""
    with pytest.raises(UnsafePackage, match="absolute"):
        normalize_member_name("/etc/passwd")
    with pytest.raises(UnsafePackage, match="outside the workspace"):
        normalize_member_name("a/../../b")


# -- unpacking: valid archives ---------------------------------------------------------------


def test_unpack_valid_nested_zip(tmp_path: Path) -> None:
    z = make_zip(
        tmp_path / "p.zip",
        [
            ("bin/", None, stat.S_IFDIR | 0o755),
            ("bin/run.sh", b"#!/bin/sh\necho hi\n", stat.S_IFREG | 0o755),
            ("lib/deep/er/data.txt", b"data", stat.S_IFREG | 0o600),
            ("lib/link", b"deep/er/data.txt", stat.S_IFLNK | 0o777),
            ("plain.txt", b"plain", 0),  # no unix mode (e.g. made on Windows)
        ],
    )
    dest = tmp_path / "dest"
    stats = safe_unpack(z, dest, "zip", **LIMITS)
    assert stats.files == 3
    assert stats.bytes == len(b"#!/bin/sh\necho hi\n") + 4 + 5
    assert (dest / "bin/run.sh").stat().st_mode & 0o777 == 0o755
    assert (dest / "lib/deep/er/data.txt").stat().st_mode & 0o777 == 0o644
    assert (dest / "lib/link").is_symlink()
    assert (dest / "lib/link").read_bytes() == b"data"
    assert (dest / "plain.txt").read_bytes() == b"plain"


def test_unpack_valid_nested_tar(tmp_path: Path) -> None:
    t = make_tar(
        tmp_path / "p.tar.xz",
        [
            tar_entry("./", tarfile.DIRTYPE),
            tar_entry("./app", tarfile.DIRTYPE),
            tar_file("./app/main.py", b"print('hi')\n", 0o4755),
            tar_file("./app/conf/settings.ini", b"[x]\n"),
            tar_entry("./app/current", tarfile.SYMTYPE, "conf"),
            tar_entry("./app/copy.py", tarfile.LNKTYPE, "./app/main.py"),
            tar_file("./app/conf/settings.ini", b"[y]\n"),  # later duplicate wins
        ],
        "w:xz",
    )
    dest = tmp_path / "dest"
    safe_unpack(t, dest, "tar", **LIMITS)
    assert listing(dest) == {
        "app",
        "app/main.py",
        "app/conf",
        "app/conf/settings.ini",
        "app/current",
        "app/copy.py",
    }
    assert (dest / "app/main.py").stat().st_mode & 0o7777 == 0o755  # no setuid
    assert (dest / "app/copy.py").read_bytes() == b"print('hi')\n"
    assert (dest / "app/copy.py").stat().st_ino != (dest / "app/main.py").stat().st_ino
    assert (dest / "app/current/settings.ini").read_bytes() == b"[y]\n"


def test_unpack_single_file(tmp_path: Path) -> None:
    script = tmp_path / "upload"
    script.write_bytes(b"#!/bin/sh\necho hi\n")
    data = tmp_path / "upload2"
    data.write_bytes(b"a,b\n")
    unpack_package(script, tmp_path / "d1", "file", filename="../x/run.sh", **LIMITS)
    assert (tmp_path / "d1/run.sh").stat().st_mode & 0o777 == 0o755
    unpack_package(data, tmp_path / "d2", "file", filename="data.csv", **LIMITS)
    assert (tmp_path / "d2/data.csv").stat().st_mode & 0o777 == 0o644
    with pytest.raises(InvalidInput):
        unpack_package(data, tmp_path / "d3", "file", filename="..", **LIMITS)
    assert not (tmp_path / "d3").exists()


# -- unpacking: hostile archives ---------------------------------------------------------------


def assert_refused(
    archive: Path, kind: str, tmp_path: Path, match: str, exc: type[Exception] = UnsafePackage
) -> None:
    before = listing(tmp_path)
    dest = tmp_path / "dest"
    limits = dict(LIMITS)
    with pytest.raises(exc, match=match):
        safe_unpack(archive, dest, kind, **limits)  # type: ignore[arg-type]
    assert not dest.exists(), "a refused archive leaves nothing behind"
    assert listing(tmp_path) == before, "nothing was written outside the destination"


def test_zip_slip_refused(tmp_path: Path) -> None:
    z = make_zip(
        tmp_path / "p.zip",
        [("ok.txt", b"x", 0o100644), ("../../etc/passwd", b"root::0:0", 0o100644)],
    )
    assert_refused(
        z, "zip", tmp_path, r"archive entry '\.\./\.\./etc/passwd' would be written outside"
    )


def test_tar_slip_refused(tmp_path: Path) -> None:
    t = make_tar(tmp_path / "p.tgz", [tar_file("a/../../evil.sh", b"x")])
    assert_refused(t, "tar", tmp_path, r"'a/\.\./\.\./evil\.sh' would be written outside")


def test_absolute_paths_refused(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "p.zip", [("/tmp/evil", b"x", 0o100644)])
    assert_refused(z, "zip", tmp_path, r"archive entry '/tmp/evil' has an absolute path")
    t = make_tar(tmp_path / "p.tar", [tar_file("/tmp/evil", b"x")], "w")
    assert_refused(t, "tar", tmp_path, r"'/tmp/evil' has an absolute path")


def test_symlink_escape_refused(tmp_path: Path) -> None:
    t = make_tar(tmp_path / "abs.tgz", [tar_entry("etc", tarfile.SYMTYPE, "/etc")])
    assert_refused(t, "tar", tmp_path, r"'etc' is a symbolic link to '/etc' outside")
    t = make_tar(tmp_path / "rel.tgz", [tar_entry("a/up", tarfile.SYMTYPE, "../../..")])
    assert_refused(t, "tar", tmp_path, r"'a/up' is a symbolic link to '\.\./\.\./\.\.' outside")
    z = make_zip(tmp_path / "p.zip", [("up", b"..", stat.S_IFLNK | 0o777)])
    assert_refused(z, "zip", tmp_path, r"'up' is a symbolic link to '\.\.' outside")


def test_symlink_chain_escape_refused(tmp_path: Path) -> None:
    # Each link looks inside on its own; together they leave the destination.
    t = make_tar(
        tmp_path / "chain.tgz",
        [
            tar_entry("p/q", tarfile.DIRTYPE),
            tar_entry("p/q/s", tarfile.SYMTYPE, ".."),  # -> p
            tar_entry("t", tarfile.SYMTYPE, "p/q/s/../.."),  # lexically "p"; really "../"
        ],
    )
    assert_refused(t, "tar", tmp_path, r"'t' is a symbolic link that resolves outside")


def test_write_through_symlink_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    t = make_tar(
        tmp_path / "p.tgz",
        [
            tar_entry("inside", tarfile.DIRTYPE),
            tar_entry("link", tarfile.SYMTYPE, "inside"),
            tar_file("link/file.txt", b"x"),
        ],
    )
    assert_refused(t, "tar", tmp_path, r"'link/file\.txt' would be written through .* 'link'")


def test_hardlink_escape_refused(tmp_path: Path) -> None:
    t = make_tar(tmp_path / "abs.tgz", [tar_entry("pw", tarfile.LNKTYPE, "/etc/passwd")])
    assert_refused(t, "tar", tmp_path, r"'pw' is a hard link to '/etc/passwd' outside")
    t = make_tar(tmp_path / "rel.tgz", [tar_entry("pw", tarfile.LNKTYPE, "../../etc/passwd")])
    assert_refused(t, "tar", tmp_path, r"'pw' is a hard link to '\.\./\.\./etc/passwd' outside")
    t = make_tar(
        tmp_path / "sym.tgz",
        [tar_entry("s", tarfile.SYMTYPE, "x"), tar_entry("h", tarfile.LNKTYPE, "s")],
    )
    assert_refused(t, "tar", tmp_path, r"'h' is a hard link to 's', which is not a regular file")


@pytest.mark.parametrize(
    ("type_", "what"),
    [(tarfile.CHRTYPE, "character device"), (tarfile.BLKTYPE, "block device"),
     (tarfile.FIFOTYPE, "FIFO")],
)  # fmt: skip
def test_device_files_refused(tmp_path: Path, type_: bytes, what: str) -> None:
    t = make_tar(tmp_path / "dev.tgz", [tar_file("ok", b"1"), tar_entry("dev/null", type_)])
    assert_refused(t, "tar", tmp_path, rf"archive entry 'dev/null' is a {what}")


def test_device_file_in_zip_refused(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "p.zip", [("fifo", b"", stat.S_IFIFO | 0o644)])
    assert_refused(z, "zip", tmp_path, r"archive entry 'fifo' is a FIFO")


def test_zip_bomb_refused(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "bomb.zip", [("zeros", b"\0" * (20 * MB), 0o100644)])
    assert z.stat().st_size < 100_000
    assert_refused(z, "zip", tmp_path, "more than the limit", TooLarge)


def test_tar_bomb_refused_on_actual_bytes(tmp_path: Path) -> None:
    # Many members, each small, together over the limit: caught while writing.
    entries = [tar_file(f"f{i}", b"\0" * MB) for i in range(12)]
    t = make_tar(tmp_path / "bomb.tgz", entries)
    assert_refused(t, "tar", tmp_path, r"entry 'f10' makes the unpacked size exceed", TooLarge)


def test_zip_lying_header_refused(tmp_path: Path) -> None:
    """A central directory that under-declares sizes never yields more bytes than declared."""
    z = make_zip(tmp_path / "lie.zip", [("big", b"A" * (2 * MB), 0o100644)])
    raw = bytearray(z.read_bytes())
    size = (2 * MB).to_bytes(4, "little")
    raw = raw.replace(size, (10).to_bytes(4, "little"))  # both headers now say 10 bytes
    z.write_bytes(bytes(raw))
    assert_refused(z, "zip", tmp_path, "corrupt zip archive", InvalidInput)


def test_too_many_entries_refused(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "p.zip", [(f"f{i}", b"", 0o100644) for i in range(1001)])
    assert_refused(z, "zip", tmp_path, r"more than 1000 entries \(entry 'f1000'")
    t = make_tar(tmp_path / "p.tar", [tar_file(f"f{i}", b"") for i in range(1001)], "w")
    assert_refused(t, "tar", tmp_path, r"more than 1000 entries \(entry 'f1000'")


def test_conflicting_entries_refused(tmp_path: Path) -> None:
    t = make_tar(
        tmp_path / "p.tgz", [tar_entry("a", tarfile.DIRTYPE), tar_entry("a", tarfile.SYMTYPE, ".")]
    )
    assert_refused(t, "tar", tmp_path, r"'a' conflicts with the directory 'a'")
    t = make_tar(tmp_path / "q.tgz", [tar_file("a", b"x"), tar_file("a/b", b"y")])
    assert_refused(t, "tar", tmp_path, r"'a/b' conflicts with the file 'a'")


def test_corrupt_archive(tmp_path: Path) -> None:
    t = make_tar(tmp_path / "p.tgz", [tar_file("a", os.urandom(100_000))])
    t.write_bytes(t.read_bytes()[:50_000])
    assert_refused(t, "tar", tmp_path, "corrupt tar archive", InvalidInput)


def test_interrupt(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "p.zip", [("a", b"x", 0o100644)])
    with pytest.raises(InterruptedError):
        safe_unpack(z, tmp_path / "dest", "zip", should_stop=lambda: True, **LIMITS)
    assert not (tmp_path / "dest").exists()
