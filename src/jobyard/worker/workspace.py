"""Where a worker host keeps jobs' files: per-job folders and a package cache.

Layout under ``work_root`` (one per worker host; several worker processes may share
it, since job ids are unique and the cache is filled with atomic renames)::

    work_root/
      jobs/<job_id>/          LOCAL_JOB_SPEC_DIR: package copy + payload files; cwd
      jobs/<job_id>.out/      LOCAL_JOB_OUT_DIR: files here become output files
      cache/<sha256>/         a zip/tar package unpacked once, never modified after
      cache/.tmp-<sha>-<rnd>/ an unpack in progress (renamed into place when complete)

The out folder is a *sibling* of the spec folder, not inside it, so a package can
never shadow or pre-fill it and "every file of LOCAL_JOB_OUT_DIR" is unambiguous.

Each job gets a *copy* of the cached tree (not hard links): a job that edits or
deletes its files cannot corrupt the cache for the next job. Single-file packages
skip the cache (placing the file is already one copy). Jobs without a package cost
two ``mkdir`` calls and, at the end, two ``rmdir`` calls.

The cache is not pruned automatically yet: delete ``cache/`` while no job runs to
reclaim the space (entries are re-created on demand).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import stat
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from jobyard.core.errors import InvalidInput
from jobyard.core.packages import (
    detect_kind,
    normalize_member_name,
    place_file,
    safe_unpack,
    sha256_file,
)

T = TypeVar("T")
ArchiveKind = Literal["zip", "tar"]


@dataclass(frozen=True, slots=True)
class JobDirs:
    """The two folders of one job."""

    spec: Path
    out: Path


class Workspace:
    """Per-host work folder: job folders and the package cache. One per worker process."""

    def __init__(
        self,
        root: Path,
        *,
        unpack_max_bytes: int = 2 * 1024**3,
        unpack_max_entries: int = 100_000,
    ) -> None:
        self.root = root
        self.jobs_root = root / "jobs"
        self.cache_root = root / "cache"
        self.unpack_max_bytes = unpack_max_bytes
        self.unpack_max_entries = unpack_max_entries
        self._filling: dict[str, asyncio.Task[Path]] = {}
        self._roots_made = False

    @classmethod
    def from_settings(cls, settings: Any) -> Workspace:
        """``$JOBYARD_HOME/work`` with the settings' unpack limits."""
        return cls(
            Path(settings.home) / "work",
            unpack_max_bytes=settings.unpack_max_bytes,
            unpack_max_entries=settings.unpack_max_entries,
        )

    # -- job folders ---------------------------------------------------------------------
    def job_dirs(self, job_id: int) -> JobDirs:
        """The folders of ``job_id`` (they may not exist)."""
        return JobDirs(spec=self.jobs_root / str(job_id), out=self.jobs_root / f"{job_id}.out")

    def create_job_dirs(self, job_id: int) -> JobDirs:
        """Create both (empty) folders; leftovers of an earlier crash are removed first."""
        if not self._roots_made:
            self.jobs_root.mkdir(parents=True, exist_ok=True)
            self.cache_root.mkdir(parents=True, exist_ok=True)
            self._roots_made = True
        dirs = self.job_dirs(job_id)
        for folder in (dirs.spec, dirs.out):
            try:
                os.mkdir(folder, 0o755)
            except FileExistsError:
                force_rmtree(folder)
                os.mkdir(folder, 0o755)
            except FileNotFoundError:  # jobs/ was removed under us
                self._roots_made = False
                return self.create_job_dirs(job_id)
        return dirs

    async def remove_job_dirs(self, dirs: JobDirs) -> None:
        """Delete a job's folders: inline when empty (the common case), else in a thread."""
        rest = []
        for folder in (dirs.spec, dirs.out):
            try:
                os.rmdir(folder)
            except FileNotFoundError:
                pass
            except OSError:
                rest.append(folder)
        if rest:
            await asyncio.to_thread(_remove_all, rest)

    # -- package -------------------------------------------------------------------------
    async def install_package(
        self,
        dirs: JobDirs,
        *,
        sha256: str,
        kind: str | None,
        filename: str | None,
        fetch: Callable[[], Awaitable[Path]],
    ) -> None:
        """Lay the package out in the job's spec folder.

        ``fetch`` returns a local file holding the upload; it is called only when the
        cache does not have the package yet (and for single files).
        """
        cached = self.cache_root / sha256
        if kind != "file" and cached.is_dir():
            await _in_thread(_copy_tree, cached, dirs.spec)
            return
        src = await fetch()
        if kind is None:
            kind = await asyncio.to_thread(detect_kind, src)
        if kind == "file":
            name = filename or sha256[:12]
            await _in_thread(place_file, src, dirs.spec, name)
            return
        if kind not in ("zip", "tar"):
            raise InvalidInput(f"unknown package kind {kind!r}")
        tree = await self.cached_tree(sha256, "zip" if kind == "zip" else "tar", src)
        await _in_thread(_copy_tree, tree, dirs.spec)

    async def cached_tree(self, sha256: str, kind: ArchiveKind, src: Path) -> Path:
        """The unpacked tree of a package, unpacking it once per sha256.

        Concurrent callers in this process share one unpack; other processes race
        with atomic renames, and the loser discards its copy. An unpack is not
        cancelled when a waiting job is aborted: the next job will want it too.
        """
        cached = self.cache_root / sha256
        if cached.is_dir():
            return cached
        task = self._filling.get(sha256)
        if task is None:
            task = asyncio.create_task(
                asyncio.to_thread(self._fill_cache, sha256, kind, src), name=f"unpack-{sha256}"
            )
            self._filling[sha256] = task
            task.add_done_callback(lambda _t: self._filling.pop(sha256, None))
        return await asyncio.shield(task)

    def _fill_cache(self, sha256: str, kind: ArchiveKind, src: Path) -> Path:
        cached = self.cache_root / sha256
        if cached.is_dir():
            return cached
        actual = sha256_file(src)
        if actual != sha256:
            raise InvalidInput(
                f"package checksum mismatch: expected {sha256}, got {actual}",
                {"expected": sha256, "actual": actual},
            )
        self.cache_root.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_root / f".tmp-{sha256[:16]}-{uuid.uuid4().hex[:8]}"
        safe_unpack(
            src,
            tmp,
            kind,
            max_bytes=self.unpack_max_bytes,
            max_entries=self.unpack_max_entries,
        )
        try:
            os.rename(tmp, cached)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                force_rmtree(tmp)
                raise
            force_rmtree(tmp)  # another process won the race; its tree is identical
        return cached

    # -- payload and outputs ---------------------------------------------------------------
    async def place_payload(self, dirs: JobDirs, name: str, src: Path) -> Path:
        """Copy one payload file to ``spec/<name>`` (``name`` may hold ``/``)."""
        try:
            rel = normalize_member_name(name)
        except InvalidInput as exc:
            raise InvalidInput(f"payload file name {name!r} is not usable") from exc
        if not rel:
            raise InvalidInput(f"payload file name {name!r} is not usable")
        return await _in_thread(_copy_payload, dirs.spec, rel, src)

    @staticmethod
    def output_files(dirs: JobDirs) -> list[tuple[str, Path]]:
        """Every regular file under the out folder, as ``(relative/name, path)``, sorted.

        Symbolic links are skipped: a job could otherwise hand over a file it merely
        points at.
        """
        found: list[tuple[str, Path]] = []
        stack = [(dirs.out, "")]
        while stack:
            folder, prefix = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            for entry in entries:
                name = f"{prefix}{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), f"{name}/"))
                elif entry.is_file(follow_symlinks=False):
                    found.append((name, Path(entry.path)))
        found.sort()
        return found


# -- helpers -------------------------------------------------------------------------------


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking file work in a thread; if cancelled, wait for it to stop first.

    Cancelling ``asyncio.to_thread`` leaves the thread running; a job being aborted
    must not have its folder deleted while a copy still writes into it.
    """
    fut = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await asyncio.wait([fut])
        raise


def _copy_tree(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)


def _copy_payload(spec: Path, rel: str, src: Path) -> Path:
    target = spec.joinpath(*rel.split("/"))
    # Parents must be real folders inside spec: never follow a package's link.
    cur = spec
    for part in rel.split("/")[:-1]:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidInput(f"payload file {rel!r} would be written through {cur.name!r}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target)  # a package file or link of that name is replaced, not followed
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as fout, open(src, "rb") as fin:
        shutil.copyfileobj(fin, fout, 1024 * 1024)
    return target


def force_rmtree(path: Path) -> None:
    """Remove a tree even where a job removed write permission from its folders."""

    def retry(func: Callable[..., Any], p: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o755)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o755)
            func(p)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:
        shutil.rmtree(path, onerror=retry)


def _remove_all(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            force_rmtree(path)
