"""A :class:`~jobyard.blobs.protocol.BlobStore` on a local (or shared, mounted) folder.

Keys map to files under ``root``; writes go to a temporary file in the target's folder
and are published with ``os.replace``, so a reader sees either nothing or the whole
blob, never half of one (logs are the exception: :meth:`LocalBlobStore.spool_path` is
the blob's final path, so a worker appends to it directly, readers follow it live and
sealing it costs nothing).

Small operations (``stat``, reads of one chunk, writes of small byte strings) run
inline: on a local disk they cost microseconds, less than a hop to a thread. Copies of
whole files and recursive deletes run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from jobyard.core.errors import Conflict, InvalidInput, NotFound

_INLINE_MAX = 256 * 1024
_COPY_CHUNK = 1024 * 1024


def key_parts(key: str) -> list[str]:
    """Split a blob key into path components, refusing anything that could escape."""
    if not key or key.startswith("/") or "\x00" in key or "\\" in key:
        raise InvalidInput(f"invalid blob key {key!r}", {"key": key})
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidInput(f"invalid blob key {key!r}", {"key": key})
    return parts


class LocalBlobStore:
    """Blobs as files under ``root``. ``fsync=True`` makes each write durable first."""

    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        self._root = root
        self._fsync = fsync

    @property
    def root(self) -> Path:
        """The folder holding every blob."""
        return self._root

    def local_path(self, key: str) -> Path:
        """Filesystem path of ``key`` (it may not exist yet)."""
        return self._root.joinpath(*key_parts(key))

    # -- writes ----------------------------------------------------------------------
    async def put_file(self, key: str, src: Path, *, move: bool = False) -> int:
        """Store the file at ``src`` under ``key``; ``move`` renames it when possible."""
        dest = self.local_path(key)
        return await asyncio.to_thread(self._put_file, dest, src, move)

    async def put_bytes(self, key: str, data: bytes) -> int:
        """Store ``data`` under ``key`` atomically."""
        dest = self.local_path(key)
        if len(data) <= _INLINE_MAX and not self._fsync:
            return self._put_bytes(dest, data)
        return await asyncio.to_thread(self._put_bytes, dest, data)

    def _ensure_dir(self, folder: Path) -> None:
        # No cache of created folders: another process may purge them at any time.
        folder.mkdir(parents=True, exist_ok=True)

    def _tmp_for(self, dest: Path) -> Path:
        return dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp")

    def _publish(self, tmp: Path, dest: Path) -> None:
        os.replace(tmp, dest)
        if self._fsync:
            fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _put_bytes(self, dest: Path, data: bytes) -> int:
        self._ensure_dir(dest.parent)
        tmp = self._tmp_for(dest)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                if self._fsync:
                    f.flush()
                    os.fsync(f.fileno())
            self._publish(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return len(data)

    def _put_file(self, dest: Path, src: Path, move: bool) -> int:
        self._ensure_dir(dest.parent)
        if move:
            size = src.stat().st_size
            if self._fsync:
                with open(src, "rb+") as f:
                    os.fsync(f.fileno())
            try:
                self._publish(src, dest)
                return size
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
            size = self._copy_in(dest, src)
            src.unlink()
            return size
        return self._copy_in(dest, src)

    def _copy_in(self, dest: Path, src: Path) -> int:
        tmp = self._tmp_for(dest)
        try:
            with open(src, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout, _COPY_CHUNK)
                size = fout.tell()
                if self._fsync:
                    fout.flush()
                    os.fsync(fout.fileno())
            self._publish(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return size

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Write ``chunks`` to a temporary file beside the target, then publish it."""
        dest = self.local_path(key)
        self._ensure_dir(dest.parent)
        tmp = self._tmp_for(dest)
        try:
            with open(tmp, "wb") as f:
                async for chunk in chunks:
                    f.write(chunk)
            return await asyncio.to_thread(self._put_file, dest, tmp, True)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    async def copy(self, src: str, dst: str) -> int:
        """Copy one blob file to another key (``NotFound`` when ``src`` is absent)."""
        path = self.local_path(src)
        if not path.is_file():
            raise NotFound(f"blob {src!r} not found", {"key": src})
        return await asyncio.to_thread(self._put_file, self.local_path(dst), path, False)

    # -- growing blobs ---------------------------------------------------------------
    def spool_path(self, key: str) -> Path:
        """The blob's own path: the writer appends in place (the writer makes its folder)."""
        return self.local_path(key)

    async def append(self, key: str, offset: int, data: bytes, *, unsealed: bool = False) -> int:
        """Write ``data`` at ``offset`` of the blob file itself (a shared folder is how
        replicas share it); see :meth:`BlobStore.append` (``unsealed`` changes nothing
        here: the file says where it ends)."""
        path = self.local_path(key)
        return await asyncio.to_thread(_append_at, path, offset, data, self._fsync)

    async def seal(self, key: str) -> None:
        """Nothing to do: the spool file already is the blob."""

    async def spooled(self, prefix: str) -> list[str]:
        """None: every spool file already is its blob."""
        return []

    # -- reads -----------------------------------------------------------------------
    async def get_file(self, key: str, dest: Path) -> int:
        """Copy the blob into ``dest`` (``NotFound`` when absent)."""
        path = self.local_path(key)
        if not path.is_file():
            raise NotFound(f"blob {key!r} not found", {"key": key})

        def copy() -> int:
            shutil.copyfile(path, dest)
            return dest.stat().st_size

        return await asyncio.to_thread(copy)

    async def materialize(self, key: str, dest: Path) -> Path:
        """The blob's own file (no copy; ``dest`` is unused), ``NotFound`` when absent."""
        path = self.local_path(key)
        if not path.is_file():
            raise NotFound(f"blob {key!r} not found", {"key": key})
        return path

    async def list_children(self, prefix: str) -> list[tuple[str, float]]:
        """``(name, mtime)`` of the entries of the folder ``prefix`` (none when absent)."""
        return await asyncio.to_thread(_entries, self._root.joinpath(*key_parts(prefix)))

    async def exists(self, key: str) -> bool:
        """Tell whether ``key`` holds a blob."""
        return self.local_path(key).is_file()

    async def size(self, key: str) -> int | None:
        """Size in bytes, or None when absent."""
        try:
            return self.local_path(key).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    async def read_chunks(
        self, key: str, *, offset: int = 0, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        """Stream from ``offset`` to the blob's end *as of each read* (logs keep growing).

        Raises :class:`NotFound` when the blob does not exist.
        """
        path = self.local_path(key)
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed in the finally below
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFound(f"blob {key!r} not found", {"key": key}) from exc
        try:
            if offset:
                f.seek(offset)
            while chunk := f.read(chunk_size):
                yield chunk
        finally:
            f.close()

    # -- deletes ---------------------------------------------------------------------
    async def delete_prefix(self, prefix: str) -> None:
        """Delete every blob whose key starts with ``prefix`` (string prefix, like S3).

        ``outputs/12/`` removes that folder; ``outputs/12`` also removes ``outputs/123/``.
        """
        if prefix.endswith("/"):
            folder = self._root.joinpath(*key_parts(prefix[:-1]))
            stem = None
        else:
            path = self.local_path(prefix)
            folder, stem = path.parent, path.name
        await asyncio.to_thread(self._delete, folder, stem)

    def _delete(self, folder: Path, stem: str | None) -> None:
        if stem is None:
            shutil.rmtree(folder, ignore_errors=True)
            return
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            if not name.startswith(stem):
                continue
            path = folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    # -- retention -------------------------------------------------------------------
    async def touch(self, key: str) -> bool:
        """Set the blob's modification time to now (a re-upload: its grace starts again)."""
        try:
            os.utime(self.local_path(key))
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    async def modified_at(self, key: str) -> float | None:
        """The blob's modification time, or None when absent."""
        try:
            return self.local_path(key).stat().st_mtime
        except (FileNotFoundError, NotADirectoryError):
            return None

    async def rename(self, src: str, dst: str) -> bool:
        """``os.replace`` one blob file to another key (same folder tree: atomic)."""
        source, target = self.local_path(src), self.local_path(dst)
        try:
            os.replace(source, target)
        except (FileNotFoundError, NotADirectoryError):
            if not source.is_file():
                return False
            self._ensure_dir(target.parent)  # a key in a folder that does not exist yet
            try:
                os.replace(source, target)
            except (FileNotFoundError, NotADirectoryError):
                return False
        return True

    async def delete_batch(
        self, keys: list[str], prefixes: list[str], *, dry_run: bool = False
    ) -> tuple[int, int]:
        """Delete files by key and folders by ``prefix/`` in one thread; (files, bytes)."""
        paths = [self.local_path(k) for k in keys]
        folders = [self._root.joinpath(*key_parts(p.rstrip("/"))) for p in prefixes]
        return await asyncio.to_thread(_delete_batch, paths, folders, dry_run)


def _append_at(path: Path, offset: int, data: bytes, fsync: bool) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        if offset > size:
            raise gap_refused(offset, size)
        skip = size - offset
        if skip < len(data):
            os.pwrite(fd, data[skip:], size)
            size += len(data) - skip
            if fsync:
                os.fsync(fd)
        return size
    finally:
        os.close(fd)


def gap_refused(offset: int, size: int) -> Conflict:
    """The error of a piece that would leave a gap: the sender resends from ``size``."""
    return Conflict(
        f"log piece at offset {offset} leaves a gap: the log has {size} bytes; "
        f"resend from offset {size}",
        {"size": size},
    )


def _entries(folder: Path) -> list[tuple[str, float]]:
    try:
        with os.scandir(folder) as it:
            found = []
            for entry in it:
                with contextlib.suppress(OSError):
                    found.append((entry.name, entry.stat(follow_symlinks=False).st_mtime))
            return found
    except (FileNotFoundError, NotADirectoryError):
        return []


def _delete_batch(paths: list[Path], folders: list[Path], dry_run: bool) -> tuple[int, int]:
    files = size = 0
    for path in paths:
        try:
            size += path.stat().st_size
            if not dry_run:
                path.unlink()
            files += 1
        except (FileNotFoundError, NotADirectoryError):
            continue
    for folder in folders:
        try:
            walk = list(os.walk(folder))
        except OSError:
            continue
        for top, _dirs, names in walk:
            for name in names:
                with contextlib.suppress(OSError):
                    size += os.lstat(os.path.join(top, name)).st_size
                    files += 1
        if not dry_run:
            shutil.rmtree(folder, ignore_errors=True)
    return files, size
