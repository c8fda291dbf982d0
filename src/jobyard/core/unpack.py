"""Safe unpacking of package archives.

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

Expansion is bounded by size **and by ratio**: an archive may unpack to at most
``max_bytes``, and at most ``max_ratio`` times its own (compressed) size (never less
than :data:`RATIO_FLOOR_BYTES`, so small packages are not refused for compressing
well). The unpacked size is counted on the bytes actually written, not on the
headers, so zip bombs and lying headers stop at the bound with
:class:`~jobyard.core.errors.TooLarge`; a size declared above it (zip directory, tar
header) is refused before anything is decompressed. A tar stream is also bounded as
it is decompressed (the unpacked bytes plus :data:`TAR_HEADER_ALLOWANCE` per entry):
data that is never written (huge extended headers, skipped bytes) cannot make it
decompress gigabytes either. On any failure the destination is removed.
Only the executable bit of file modes is kept (files become 0755 or 0644,
directories 0755): no setuid, no read-only trees a cleanup cannot delete.

Pure: this module imports nothing of jobyard beyond :mod:`jobyard.core`.
"""

from __future__ import annotations

import contextlib
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from jobyard.core.errors import InvalidInput, TooLarge, UnsafePackage
from jobyard.core.packages import (
    CHUNK_BYTES,
    EXEC_MAGIC,
    PackageKind,
    TarStream,
    normalize_member_name,
    safe_filename,
)

#: Default of ``max_ratio``: how many times its own size an archive may expand to.
DEFAULT_MAX_RATIO = 200.0
#: The ratio never limits an archive to less than this (small packages compress well).
RATIO_FLOOR_BYTES = 16 * 1024**2
#: Decompressed tar bytes allowed per entry beyond its content: its header, an extended
#: (pax or GNU long name) header, and padding to 512-byte blocks.
TAR_HEADER_ALLOWANCE = 8 * 1024
#: Decompressed tar bytes allowed after the last entry (end blocks, record padding).
TAR_TRAILER_ALLOWANCE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ExpansionLimit:
    """How many bytes an archive of ``compressed`` bytes may unpack to, and why."""

    max_bytes: int
    max_ratio: float | None
    compressed: int

    @property
    def bytes(self) -> int:
        """The bound: ``max_bytes``, or less when the ratio allows less."""
        if self.max_ratio is None:
            return self.max_bytes
        by_ratio = max(RATIO_FLOOR_BYTES, int(self.max_ratio * self.compressed))
        return min(self.max_bytes, by_ratio)

    def describe(self) -> str:
        """The bound in words, naming the ratio when it is what limits."""
        if self.bytes < self.max_bytes:
            return (
                f"{self.bytes} bytes ({self.max_ratio:g} times the archive's "
                f"{self.compressed} bytes)"
            )
        return f"{self.max_bytes} bytes"


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
    max_ratio: float | None = DEFAULT_MAX_RATIO,
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
    return safe_unpack(
        src, dest, kind, max_bytes=max_bytes, max_entries=max_entries, max_ratio=max_ratio
    )


def place_file(src: Path, dest_dir: Path, filename: str) -> int:
    """Copy a single-file package into ``dest_dir`` under its own name; return its size.

    Mode 0755 when it starts with a shebang (``#!``) or is an ELF binary, else 0644.
    An existing entry of that name is replaced, never written through.
    """
    name = safe_filename(filename)
    target = dest_dir / name
    with open(src, "rb") as fin:
        executable = fin.read(4).startswith(EXEC_MAGIC)
        fin.seek(0)
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        mode = 0o755 if executable else 0o644
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout, CHUNK_BYTES)
            os.fchmod(fout.fileno(), mode)
            return fout.tell()


def safe_unpack(
    archive: Path,
    dest: Path,
    kind: Literal["zip", "tar"],
    *,
    max_bytes: int,
    max_entries: int,
    max_ratio: float | None = DEFAULT_MAX_RATIO,
    should_stop: Callable[[], bool] | None = None,
) -> UnpackStats:
    """Unpack a zip or tar archive into ``dest``, which this function creates.

    See the module docstring for what is refused; ``max_ratio`` None: no ratio bound.
    ``dest``'s parent must exist and ``dest`` must not; on any error ``dest`` is
    removed again. ``should_stop`` is polled between entries so a caller in another
    thread can interrupt a long unpack (raises :class:`InterruptedError`).
    """
    limit = ExpansionLimit(max_bytes, max_ratio, os.stat(archive).st_size)
    os.mkdir(dest, 0o755)
    unpacker = _Unpacker(dest, limit=limit, max_entries=max_entries)
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
                f"{u.limit.describe()}",
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
    with (
        TarStream(archive, check=u.check_stream) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tf,
    ):
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

    def __init__(self, dest: Path, *, limit: ExpansionLimit, max_entries: int) -> None:
        self.dest = dest
        self.dest_fs = os.fspath(dest)
        self.limit = limit
        self.max_bytes = limit.bytes
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
            f"{self.limit.describe()}",
            {"entry": name, "limit": self.max_bytes},
        )

    def check_stream(self, total: int) -> None:
        """Stop decompressing a tar stream that outgrows its entries (see the module doc)."""
        allowed = self.max_bytes + TAR_HEADER_ALLOWANCE * (self.entries + 1) + TAR_TRAILER_ALLOWANCE
        if total > allowed:
            raise TooLarge(
                f"archive expands beyond the limit of {self.limit.describe()}: its tar "
                f"stream passed {allowed} bytes after {self.entries} entries",
                {"limit": self.max_bytes},
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
    while chunk := f.read(CHUNK_BYTES):
        yield chunk


def _nofollow_opener(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)
