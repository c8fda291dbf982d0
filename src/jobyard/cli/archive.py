"""Turn a local path into the bytes of a package, the same bytes every time.

A folder is zipped *deterministically*: entries sorted by path, every timestamp set to
1980-01-01 00:00, permissions reduced to 0644/0755 (only the executable bit survives),
no extra fields. The same folder therefore always gives the same sha256, and the server,
which stores packages by content, keeps it once however often it is pushed.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from jobyard.cli.context import CliFailure
from jobyard.client import UploadFile

#: Folders that change on their own (bytecode caches, VCS state) and never belong in a package.
SKIPPED_DIRS: frozenset[str] = frozenset({"__pycache__", ".git", ".hg", ".svn"})
#: The earliest timestamp a zip entry can hold.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644
_EXEC_MODE = 0o100755
_DIR_MODE = 0o040755
_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One member of a folder's archive: its name in the zip and where it comes from."""

    arcname: str
    source: Path
    is_dir: bool
    executable: bool


def folder_entries(folder: Path) -> list[ArchiveEntry]:
    """Every file and folder under ``folder``, sorted by archive name.

    Symbolic links to files are stored as the file they point to (as ``zip -r`` does);
    links to folders are refused, since following them could loop or leave the folder.
    """
    entries: list[ArchiveEntry] = []
    for root, dirnames, filenames in os.walk(folder):
        root_path = Path(root)
        kept = []
        for name in dirnames:
            path = root_path / name
            if path.is_symlink():
                raise CliFailure(f"{path}: links to folders are not supported in packages")
            if name in SKIPPED_DIRS:
                continue
            kept.append(name)
        dirnames[:] = kept
        for name in kept:
            path = root_path / name
            rel = path.relative_to(folder).as_posix()
            entries.append(ArchiveEntry(rel + "/", path, is_dir=True, executable=True))
        for name in filenames:
            path = root_path / name
            if name.endswith((".pyc", ".pyo")):
                continue
            try:
                mode = path.stat().st_mode
            except OSError as exc:
                raise CliFailure(f"{path}: {exc.strerror or exc}") from exc
            if not stat.S_ISREG(mode):
                raise CliFailure(f"{path}: only regular files can go into a package")
            rel = path.relative_to(folder).as_posix()
            executable = bool(mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
            entries.append(ArchiveEntry(rel, path, is_dir=False, executable=executable))
    entries.sort(key=lambda e: e.arcname)
    return entries


def write_folder_zip(folder: Path, dest: IO[bytes]) -> None:
    """Write the deterministic zip of ``folder`` to ``dest``."""
    entries = folder_entries(folder)
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for entry in entries:
            info = zipfile.ZipInfo(entry.arcname, date_time=ZIP_EPOCH)
            info.create_system = 3  # Unix, so that external_attr carries the mode
            if entry.is_dir:
                info.external_attr = (_DIR_MODE << 16) | 0x10  # MS-DOS directory flag too
                info.compress_type = zipfile.ZIP_STORED
                zf.writestr(info, b"")
                continue
            info.external_attr = (_EXEC_MODE if entry.executable else _FILE_MODE) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.file_size = entry.source.stat().st_size  # lets zipfile decide on zip64
            with entry.source.open("rb") as src, zf.open(info, "w") as out:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)


def sha256_of(stream: IO[bytes]) -> tuple[str, int]:
    """The sha256 (hex) and size of a stream, read from its start; leaves it rewound."""
    stream.seek(0)
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    stream.seek(0)
    return digest.hexdigest(), size


@dataclass(frozen=True, slots=True)
class PreparedPackage:
    """A package ready to upload: what to send, and its content hash."""

    upload: UploadFile
    sha256: str
    size: int
    from_folder: bool


@contextmanager
def prepared_package(path: Path) -> Iterator[PreparedPackage]:
    """Open ``path`` for upload: a file as it is, a folder as its deterministic zip."""
    if not path.exists():
        raise CliFailure(f"{path}: no such file or folder")
    if path.is_dir():
        with tempfile.TemporaryFile(prefix="jobyard-package-") as tmp:
            write_folder_zip(path, tmp)
            sha, size = sha256_of(tmp)
            name = (path.resolve().name or "package") + ".zip"
            yield PreparedPackage(UploadFile(name, tmp, "application/zip"), sha, size, True)
        return
    if not path.is_file():
        raise CliFailure(f"{path}: not a regular file or folder")
    with path.open("rb") as stream:
        sha, size = sha256_of(stream)
        yield PreparedPackage(UploadFile(path.name, stream), sha, size, False)
