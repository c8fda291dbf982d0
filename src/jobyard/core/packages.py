"""Packages: kind detection, the ``jobyard.toml`` manifest, and safe unpacking.

A package is an upload that is a zip archive, a tar archive (plain, gzip, bzip2 or
xz compressed) or a single file. The kind is decided by the content, never by the
name alone, because a name is whatever the uploader typed.

Unpacking treats every archive as hostile. :func:`safe_unpack` writes only inside a
destination directory it creates itself, and refuses (raising
:class:`~jobyard.core.errors.UnsafePackage` naming the entry):

- absolute names and names with ``..`` components;
- entries written *through* a symbolic link of the archive (every parent directory
  is checked with ``lstat`` and files are opened with ``O_NOFOLLOW | O_EXCL``);
- symbolic links whose target is absolute or resolves outside the destination
  (checked lexically per entry, then once more with real resolution at the end,
  which catches chains of links that only escape together);
- hard links to anything but a regular file extracted earlier (they are unpacked as
  copies, so no inode is shared with anything);
- device files, FIFOs and other special entries;
- more than ``max_entries`` entries.

The unpacked size is counted on the bytes actually written, not on the headers, so
zip bombs and lying headers stop at ``max_bytes`` with
:class:`~jobyard.core.errors.TooLarge`. On any failure the destination is removed.
Only the executable bit of file modes is kept (files become 0755 or 0644,
directories 0755): no setuid, no read-only trees a cleanup cannot delete.

Pure: this module imports nothing of jobyard beyond :mod:`jobyard.core`.
"""

from __future__ import annotations

import contextlib
import hashlib
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tomllib
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

from jobyard.core.errors import InvalidInput, TooLarge, UnsafePackage

PackageKind = Literal["zip", "tar", "file"]

#: Name of the optional manifest at the root of an archive.
MANIFEST_NAME = "jobyard.toml"
#: Largest manifest accepted.
MANIFEST_MAX_BYTES = 256 * 1024

_CHUNK = 1024 * 1024
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENTRYPOINT_KEYS = frozenset({"command", "env", "timeout"})
_EXEC_MAGIC = (b"#!", b"\x7fELF")


# -- hashing and detection -----------------------------------------------------------


def sha256_file(path: Path, *, chunk_size: int = _CHUNK) -> str:
    """Hex sha256 of a file, read in chunks (packages may be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def detect_kind(path: Path) -> PackageKind:
    """Decide whether an upload is a zip archive, a tar archive or a single file.

    Zip needs the local-header magic at offset 0 *and* a readable central
    directory (so a script that merely contains ``PK`` is a file). Tar is recognised
    by a valid first header after transparent gzip/bzip2/xz decompression; a
    compressed non-tar (``data.csv.gz``) is therefore a single file.
    """
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as zf:
                zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return "file"
        return "zip"
    try:
        with tarfile.open(path, "r|*") as tf:
            return "tar" if tf.next() is not None else "file"
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error, ValueError):
        return "file"


# -- names -----------------------------------------------------------------------------


def normalize_member_name(name: str) -> str:
    """Return the normalised relative POSIX form of an archive entry name.

    ``./a//b/`` becomes ``a/b``; the root (``./``) becomes ``""``. Raises
    :class:`UnsafePackage` for absolute names, ``..`` components and NUL bytes.
    """
    if "\x00" in name:
        raise UnsafePackage(f"archive entry {name!r} has a NUL byte in its name", {"entry": name})
    if name.startswith("/"):
        raise UnsafePackage(
            f"archive entry {name!r} has an absolute path", {"entry": name, "problem": "absolute"}
        )
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePackage(
            f"archive entry {name!r} would be written outside the workspace",
            {"entry": name, "problem": "parent_reference"},
        )
    return "/".join(parts)


def safe_filename(filename: str) -> str:
    """The last component of an uploaded file name, refusing empty and special names."""
    base = PurePosixPath(filename.replace("\\", "/")).name
    if base in ("", ".", "..") or "\x00" in base:
        raise InvalidInput(f"unusable file name {filename!r}", {"filename": filename})
    return base


# -- manifest --------------------------------------------------------------------------


def parse_manifest(data: bytes | str) -> dict[str, dict[str, Any]]:
    """Validate a ``jobyard.toml`` and return its entry points.

    Result: ``{name: {"command": [str, ...], "env": {str: str}, "timeout": int | None}}``
    (``timeout`` in minutes, 0 = none, None = not set by the package). Raises
    :class:`InvalidInput` naming the offending key.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{MANIFEST_NAME}: not UTF-8 text: {exc}") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{MANIFEST_NAME}: not valid TOML: {exc}") from exc
    unknown = sorted(set(doc) - {"entrypoints"})
    if unknown:
        raise _manifest_error(unknown[0], "unknown key (only [entrypoints.NAME] tables)")
    entrypoints = doc.get("entrypoints", {})
    if not isinstance(entrypoints, dict):
        raise _manifest_error("entrypoints", "must be a table of [entrypoints.NAME] tables")
    result: dict[str, dict[str, Any]] = {}
    for name, spec in entrypoints.items():
        key = f"entrypoints.{name}"
        if not _NAME_RE.match(name):
            raise _manifest_error(
                key, "entry point names use letters, digits, '.', '_', '-' (at most 100)"
            )
        if not isinstance(spec, dict):
            raise _manifest_error(key, "must be a table")
        extra = sorted(set(spec) - _ENTRYPOINT_KEYS)
        if extra:
            raise _manifest_error(f"{key}.{extra[0]}", "unknown key (command, env, timeout)")
        result[name] = {
            "command": _manifest_command(key, spec.get("command")),
            "env": _manifest_env(key, spec.get("env", {})),
            "timeout": _manifest_timeout(key, spec.get("timeout")),
        }
    return result


def _manifest_error(key: str, problem: str) -> InvalidInput:
    return InvalidInput(
        f"{MANIFEST_NAME}: {key}: {problem}",
        {"file": MANIFEST_NAME, "key": key, "problem": problem},
    )


def _manifest_command(key: str, command: Any) -> list[str]:
    key = f"{key}.command"
    if command is None:
        raise _manifest_error(key, "is required")
    if not isinstance(command, list) or not command:
        raise _manifest_error(key, "must be a non-empty array of strings")
    for i, arg in enumerate(command):
        if not isinstance(arg, str):
            raise _manifest_error(f"{key}[{i}]", "must be a string")
        if "\x00" in arg:
            raise _manifest_error(f"{key}[{i}]", "must not contain a NUL character")
    if not command[0]:
        raise _manifest_error(f"{key}[0]", "the program must not be empty")
    return list(command)


def _manifest_env(key: str, env: Any) -> dict[str, str]:
    key = f"{key}.env"
    if not isinstance(env, dict):
        raise _manifest_error(key, "must be a table of strings")
    for name, value in env.items():
        if not _ENV_NAME_RE.match(name):
            raise _manifest_error(f"{key}.{name}", "is not a valid environment variable name")
        if not isinstance(value, str):
            raise _manifest_error(f"{key}.{name}", "must be a string")
        if "\x00" in value:
            raise _manifest_error(f"{key}.{name}", "must not contain a NUL character")
    return dict(env)


def _manifest_timeout(key: str, timeout: Any) -> int | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise _manifest_error(f"{key}.timeout", "must be an integer number of minutes >= 0")
    return timeout


def read_manifest(path: Path, kind: PackageKind) -> dict[str, dict[str, Any]]:
    """Entry points declared by the package's root ``jobyard.toml``; ``{}`` when absent."""
    if kind == "file":
        return {}
    data: bytes | None = None
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if not info.is_dir() and _root_manifest(info.filename):
                        with zf.open(info) as f:
                            data = _read_limited(f)
                        break
        else:
            with tarfile.open(path, "r|*") as tf:
                for member in tf:
                    if member.isreg() and _root_manifest(member.name):
                        member_file = tf.extractfile(member)
                        if member_file is not None:
                            data = _read_limited(member_file)
                        break
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, lzma.LZMAError, zlib.error) as exc:
        raise InvalidInput(f"corrupt {kind} archive: {exc}") from exc
    return {} if data is None else parse_manifest(data)


def _root_manifest(name: str) -> bool:
    return name in (MANIFEST_NAME, f"./{MANIFEST_NAME}")


def _read_limited(f: IO[bytes]) -> bytes:
    data = f.read(MANIFEST_MAX_BYTES + 1)
    if len(data) > MANIFEST_MAX_BYTES:
        raise TooLarge(f"{MANIFEST_NAME} is larger than {MANIFEST_MAX_BYTES} bytes")
    return data


# -- unpacking -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnpackStats:
    """What an unpack produced."""

    entries: int
    files: int
    bytes: int


def unpack_package(
    src: Path,
    dest: Path,
    kind: PackageKind,
    *,
    filename: str,
    max_bytes: int,
    max_entries: int,
) -> UnpackStats:
    """Lay a package out in ``dest`` (which must not exist yet): unpack or place the file."""
    if kind == "file":
        os.mkdir(dest, 0o755)
        try:
            size = place_file(src, dest, filename)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        return UnpackStats(entries=1, files=1, bytes=size)
    return safe_unpack(src, dest, kind, max_bytes=max_bytes, max_entries=max_entries)


def place_file(src: Path, dest_dir: Path, filename: str) -> int:
    """Copy a single-file package into ``dest_dir`` under its own name; return its size.

    Mode 0755 when it starts with a shebang (``#!``) or is an ELF binary, else 0644.
    An existing entry of that name is replaced, never written through.
    """
    name = safe_filename(filename)
    target = dest_dir / name
    with open(src, "rb") as fin:
        executable = fin.read(4).startswith(_EXEC_MAGIC)
        fin.seek(0)
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        mode = 0o755 if executable else 0o644
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout, _CHUNK)
            os.fchmod(fout.fileno(), mode)
            return fout.tell()


def safe_unpack(
    archive: Path,
    dest: Path,
    kind: Literal["zip", "tar"],
    *,
    max_bytes: int,
    max_entries: int,
    should_stop: Callable[[], bool] | None = None,
) -> UnpackStats:
    """Unpack a zip or tar archive into ``dest``, which this function creates.

    See the module docstring for what is refused. ``dest``'s parent must exist and
    ``dest`` must not; on any error ``dest`` is removed again. ``should_stop`` is
    polled between entries so a caller in another thread can interrupt a long unpack
    (raises :class:`InterruptedError`).
    """
    os.mkdir(dest, 0o755)
    unpacker = _Unpacker(dest, max_bytes=max_bytes, max_entries=max_entries)
    try:
        if kind == "zip":
            _unpack_zip(archive, unpacker, should_stop)
        elif kind == "tar":
            _unpack_tar(archive, unpacker, should_stop)
        else:
            raise InvalidInput(f"cannot unpack a package of kind {kind!r}")
        unpacker.check_links()
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, lzma.LZMAError, zlib.error) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise InvalidInput(f"corrupt {kind} archive: {exc}") from exc
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return UnpackStats(entries=unpacker.entries, files=unpacker.files, bytes=unpacker.total)


def _unpack_zip(archive: Path, u: _Unpacker, should_stop: Callable[[], bool] | None) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > u.max_entries:
            u.too_many(infos[u.max_entries].filename)
        declared = sum(i.file_size for i in infos)
        if declared > u.max_bytes:
            raise TooLarge(
                f"archive declares {declared} bytes unpacked, more than the limit of "
                f"{u.max_bytes} bytes",
                {"limit": u.max_bytes},
            )
        for info in infos:
            if should_stop is not None and should_stop():
                raise InterruptedError("unpack interrupted")
            mode = (info.external_attr >> 16) if info.create_system == 3 else 0
            ftype = stat.S_IFMT(mode)
            name = info.filename
            if info.is_dir() or ftype == stat.S_IFDIR:
                u.directory(name)
            elif ftype == stat.S_IFLNK:
                if info.file_size > 4096:
                    raise UnsafePackage(f"archive entry {name!r} has an oversized link target")
                with zf.open(info) as f:
                    target = f.read(4097).decode("utf-8", "surrogateescape")
                u.symlink(name, target)
            elif ftype in (0, stat.S_IFREG):
                if info.flag_bits & 0x1:
                    raise InvalidInput(f"archive entry {name!r} is encrypted")
                with zf.open(info) as f:
                    u.file(name, f, executable=bool(mode & 0o111))
            else:
                u.special(name, _type_name(ftype))


def _unpack_tar(archive: Path, u: _Unpacker, should_stop: Callable[[], bool] | None) -> None:
    with tarfile.open(archive, "r|*") as tf:
        for member in tf:
            if should_stop is not None and should_stop():
                raise InterruptedError("unpack interrupted")
            name = member.name
            if member.isdir():
                u.directory(name)
            elif member.issym():
                u.symlink(name, member.linkname)
            elif member.islnk():
                u.hardlink(name, member.linkname)
            elif member.isreg():
                if u.total + member.size > u.max_bytes:
                    u.oversize(name)
                f = tf.extractfile(member)
                if f is None:  # pragma: no cover - isreg() members always have data
                    raise InvalidInput(f"archive entry {name!r} has no data")
                u.file(name, f, executable=bool(member.mode & 0o111))
            elif member.ischr():
                u.special(name, "character device")
            elif member.isblk():
                u.special(name, "block device")
            elif member.isfifo():
                u.special(name, "FIFO")
            else:
                u.special(name, f"special entry (type {member.type!r})")


def _type_name(ftype: int) -> str:
    return {
        stat.S_IFCHR: "character device",
        stat.S_IFBLK: "block device",
        stat.S_IFIFO: "FIFO",
        stat.S_IFSOCK: "socket",
    }.get(ftype, f"special entry (mode {ftype:o})")


class _Unpacker:
    """Writes validated entries under ``dest``; never follows a link while writing."""

    def __init__(self, dest: Path, *, max_bytes: int, max_entries: int) -> None:
        self.dest = dest
        self.dest_fs = os.fspath(dest)
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.entries = 0
        self.files = 0
        self.total = 0
        self._dirs: set[str] = {""}
        self._regular: dict[str, str] = {}  # normalised name -> archive name of regular files
        self._links: list[tuple[str, str]] = []  # (normalised name, archive name)

    # -- limits --------------------------------------------------------------------
    def _count(self, name: str) -> None:
        self.entries += 1
        if self.entries > self.max_entries:
            self.too_many(name)

    def too_many(self, name: str) -> None:
        raise UnsafePackage(
            f"archive has more than {self.max_entries} entries (entry {name!r} is one too many)",
            {"entry": name, "limit": self.max_entries, "problem": "too_many_entries"},
        )

    def oversize(self, name: str) -> None:
        raise TooLarge(
            f"archive entry {name!r} makes the unpacked size exceed the limit of "
            f"{self.max_bytes} bytes",
            {"entry": name, "limit": self.max_bytes},
        )

    # -- paths ---------------------------------------------------------------------
    def _path(self, rel: str) -> str:
        return os.path.join(self.dest_fs, rel)

    def _ensure_parent(self, rel: str, name: str) -> None:
        parent = posixpath.dirname(rel)
        if parent in self._dirs:
            return
        prefix = ""
        for part in parent.split("/"):
            prefix = f"{prefix}/{part}" if prefix else part
            if prefix in self._dirs:
                continue
            path = self._path(prefix)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                os.mkdir(path, 0o755)
            else:
                self._refuse_non_dir(st, prefix, name)
            self._dirs.add(prefix)

    def _refuse_non_dir(self, st: os.stat_result, prefix: str, name: str) -> None:
        if stat.S_ISDIR(st.st_mode):
            return
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePackage(
                f"archive entry {name!r} would be written through the symbolic link {prefix!r}",
                {"entry": name, "problem": "through_link"},
            )
        raise UnsafePackage(
            f"archive entry {name!r} conflicts with the file {prefix!r}",
            {"entry": name, "problem": "conflict"},
        )

    def _clear(self, rel: str, name: str) -> None:
        """Make room for a non-directory entry; replacing a file or link is allowed."""
        if rel in self._dirs:
            raise UnsafePackage(
                f"archive entry {name!r} conflicts with the directory {rel!r}",
                {"entry": name, "problem": "conflict"},
            )
        path = self._path(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):  # pragma: no cover - directories are tracked in _dirs
            raise UnsafePackage(f"archive entry {name!r} conflicts with a directory")
        os.unlink(path)
        self._regular.pop(rel, None)

    # -- entries -------------------------------------------------------------------
    def directory(self, name: str) -> None:
        self._count(name)
        rel = normalize_member_name(name)
        if rel in self._dirs:
            return
        self._ensure_parent(rel, name)
        path = self._path(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o755)
        else:
            self._refuse_non_dir(st, rel, name)
        self._dirs.add(rel)

    def file(self, name: str, src: IO[bytes], *, executable: bool) -> None:
        self._count(name)
        rel = normalize_member_name(name)
        if not rel:
            raise UnsafePackage(f"archive entry {name!r} has an empty name", {"entry": name})
        self._ensure_parent(rel, name)
        self._clear(rel, name)
        self._write(rel, name, _chunks(src), executable=executable)

    def _write(self, rel: str, name: str, chunks: Iterator[bytes], *, executable: bool) -> None:
        mode = 0o755 if executable else 0o644
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self._path(rel), flags, 0o600)
        try:
            for chunk in chunks:
                self.total += len(chunk)
                if self.total > self.max_bytes:
                    self.oversize(name)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        self.files += 1
        self._regular[rel] = name

    def symlink(self, name: str, target: str) -> None:
        self._count(name)
        rel = normalize_member_name(name)
        if not rel:
            raise UnsafePackage(f"archive entry {name!r} has an empty name", {"entry": name})
        if not target or "\x00" in target:
            raise UnsafePackage(
                f"archive entry {name!r} is a symbolic link with an unusable target",
                {"entry": name, "problem": "link"},
            )
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise UnsafePackage(
                f"archive entry {name!r} is a symbolic link to {target!r} outside the workspace",
                {"entry": name, "target": target, "problem": "link_escape"},
            )
        self._ensure_parent(rel, name)
        self._clear(rel, name)
        os.symlink(target, self._path(rel))
        self._links.append((rel, name))

    def hardlink(self, name: str, target: str) -> None:
        self._count(name)
        rel = normalize_member_name(name)
        try:
            rel_target = normalize_member_name(target)
        except UnsafePackage:
            rel_target = None
        if rel_target is None:
            raise UnsafePackage(
                f"archive entry {name!r} is a hard link to {target!r} outside the workspace",
                {"entry": name, "target": target, "problem": "link_escape"},
            )
        if rel_target not in self._regular:
            raise UnsafePackage(
                f"archive entry {name!r} is a hard link to {target!r}, which is not a regular "
                "file earlier in the archive",
                {"entry": name, "target": target, "problem": "link_target"},
            )
        if rel == rel_target:
            return
        src = self._path(rel_target)
        with open(src, "rb", opener=_nofollow_opener) as f:
            executable = bool(os.fstat(f.fileno()).st_mode & 0o111)
            self._ensure_parent(rel, name)
            self._clear(rel, name)
            self._write(rel, name, _chunks(f), executable=executable)

    def special(self, name: str, what: str) -> None:
        self._count(name)
        raise UnsafePackage(
            f"archive entry {name!r} is a {what}; only files, directories and links are allowed",
            {"entry": name, "problem": "special_file"},
        )

    def check_links(self) -> None:
        """Resolve every extracted link for real: chains of links must stay inside too."""
        if not self._links:
            return
        root = os.path.realpath(self.dest_fs)
        for rel, name in self._links:
            real = os.path.realpath(self._path(rel))
            if real != root and not real.startswith(root + os.sep):
                raise UnsafePackage(
                    f"archive entry {name!r} is a symbolic link that resolves outside the "
                    "workspace",
                    {"entry": name, "problem": "link_escape"},
                )


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(_CHUNK):
        yield chunk


def _nofollow_opener(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)
