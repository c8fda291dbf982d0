"""Where a worker host keeps jobs' files: per-job folders and a package cache.

Layout under ``work_root`` (one per worker host; several worker processes may share
it, since job ids are unique and the cache is filled with atomic renames)::

    work_root/
      jobs/<job_id>/          LOCAL_JOB_SPEC_DIR: package copy + payload files; cwd
      jobs/<job_id>.out/      LOCAL_JOB_OUT_DIR: files here become output files
      cache/<sha256>/         a zip/tar package unpacked once, never modified after
      cache/.tmp-<sha>-<rnd>/ an unpack in progress (renamed into place when complete)
      spare/<pid>-<rnd>-<n>/  empty folders of ended jobs, recycled for the next jobs

The out folder is a *sibling* of the spec folder, not inside it, so a package can
never shadow or pre-fill it and "every file of LOCAL_JOB_OUT_DIR" is unambiguous.

Job folders are recycled: an ended job's folder that is empty (the job wrote nothing
there) is renamed to ``spare/`` and renamed back for a later job, because creating
and removing directories costs milliseconds on some disks (``discard`` mounts) while
renames cost microseconds. Non-empty folders are deleted in a thread. ``spare/`` may
be deleted whenever no worker runs.

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
import functools
import itertools
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
from jobyard.core.packages import detect_kind, normalize_member_name, sha256_file
from jobyard.core.unpack import place_file, safe_unpack

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
        self._filling: dict[str, asyncio.Task[tuple[Literal["file", "tree"], Path]]] = {}
        self._roots_made = False
        self.spare_root = root / "spare"
        self.max_spares = 64
        self._spares: list[Path] = []
        self._spare_prefix = f"{os.getpid()}-{uuid.uuid4().hex[:6]}-"
        self._spare_counter = itertools.count()

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
        """Create both (empty) folders; leftovers of an earlier crash are removed first.

        Empty folders of ended jobs are recycled (renamed) instead of created anew:
        on some disks creating and removing a directory costs milliseconds, a rename
        a few microseconds, and this is on every job's path.
        """
        if not self._roots_made:
            for folder in (self.jobs_root, self.cache_root, self.spare_root):
                folder.mkdir(parents=True, exist_ok=True)
            self._roots_made = True
        dirs = self.job_dirs(job_id)
        for folder in (dirs.spec, dirs.out):
            try:
                self._new_dir(folder)
            except FileNotFoundError:  # jobs/ was removed under us
                self._roots_made = False
                self._spares.clear()
                return self.create_job_dirs(job_id)
        return dirs

    def _new_dir(self, folder: Path) -> None:
        while self._spares:
            spare = self._spares.pop()
            try:
                os.rename(spare, folder)
                return
            except FileNotFoundError:
                if not self.jobs_root.is_dir():
                    raise
                continue  # the spare vanished (someone cleaned spare/): try the next
            except OSError:  # a stale non-empty folder of that name: clear it, go on
                self._spares.append(spare)
                force_rmtree(folder)
        try:
            os.mkdir(folder, 0o755)
        except FileExistsError:
            force_rmtree(folder)
            os.mkdir(folder, 0o755)

    async def remove_job_dirs(self, dirs: JobDirs) -> None:
        """Delete a job's folders: empty ones are kept as spares, others go in a thread."""
        rest = []
        for folder in (dirs.spec, dirs.out):
            try:
                if self._keep_as_spare(folder):
                    continue
                os.rmdir(folder)
            except FileNotFoundError:
                pass
            except OSError:
                rest.append(folder)
        if rest:
            await asyncio.to_thread(_remove_all, rest)

    def _keep_as_spare(self, folder: Path) -> bool:
        if len(self._spares) >= self.max_spares:
            return False
        with os.scandir(folder) as entries:
            if next(entries, None) is not None:
                return False
        os.chmod(folder, 0o755)  # a job may have changed it
        spare = self.spare_root / f"{self._spare_prefix}{next(self._spare_counter)}"
        os.rename(folder, spare)
        self._spares.append(spare)
        return True

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
        """Lay the package out in the job's spec folder (a copy of the cached tree).

        ``fetch`` returns a local file holding the upload (the backend downloads it if
        needed); it is called only when the cache does not have the package yet.
        """
        what, path = await self.obtain_package(sha256, kind, fetch)
        if what == "file":
            await _in_thread(place_file, path, dirs.spec, filename or sha256[:12])
        else:
            await _in_thread(_copy_tree, path, dirs.spec)

    async def obtain_package(
        self, sha256: str, kind: str | None, fetch: Callable[[], Awaitable[Path]]
    ) -> tuple[Literal["file", "tree"], Path]:
        """``("tree", cached tree)`` for an archive, ``("file", upload)`` for a single file.

        One fetch and one unpack per sha256 at a time in this process: concurrent jobs
        of one package wait for the same work. Other processes sharing the folder race
        with atomic renames and the loser discards its copy. The work is not cancelled
        when a waiting job is aborted: the next job will want the package too.
        """
        if kind != "file":
            cached = self.cache_root / sha256
            if cached.is_dir():
                return "tree", cached
        task = self._filling.get(sha256)
        if task is None:
            task = asyncio.create_task(self._obtain(sha256, kind, fetch), name=f"pkg-{sha256}")
            self._filling[sha256] = task
            task.add_done_callback(functools.partial(self._obtained, sha256))
        return await asyncio.shield(task)

    async def _obtain(
        self, sha256: str, kind: str | None, fetch: Callable[[], Awaitable[Path]]
    ) -> tuple[Literal["file", "tree"], Path]:
        src = await fetch()
        if kind is None:
            kind = await asyncio.to_thread(detect_kind, src)
        if kind == "file":
            return "file", src
        if kind not in ("zip", "tar"):
            raise InvalidInput(f"unknown package kind {kind!r}")
        archive: ArchiveKind = "zip" if kind == "zip" else "tar"
        return "tree", await asyncio.to_thread(self._fill_cache, sha256, archive, src)

    def _obtained(self, sha256: str, task: asyncio.Task[tuple[str, Path]]) -> None:
        self._filling.pop(sha256, None)
        if not task.cancelled():
            task.exception()  # retrieved: waiters re-raise it; nobody else must log it

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
