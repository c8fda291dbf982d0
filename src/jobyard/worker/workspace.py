"""Where a worker host keeps jobs' files: per-job folders and a package cache.

Layout under ``work_root`` (one per worker host; several worker processes may share
it, since job ids are unique and the cache is filled with atomic renames)::

    work_root/
      jobs/<job_id>/          LOCAL_JOB_SPEC_DIR: the package copy; the program's cwd
      jobs/<job_id>.out/      LOCAL_JOB_OUT_DIR: files here become output files
      jobs/<job_id>.payload/  JOB_PAYLOAD_DIR: the payload files
      jobs/<job_id>.tmp/      HOME and TMPDIR of a sandboxed job (private, removed after)
      cache/<sha256>/         a zip/tar package unpacked once, never modified after
      cache/.tmp-<sha>-<rnd>/ an unpack in progress (renamed into place when complete)
      spare/<pid>-<rnd>-<n>/  empty folders of ended jobs, recycled for the next jobs

The out and payload folders are *siblings* of the spec folder, not inside it: a package
can never shadow or pre-fill them, "every file of LOCAL_JOB_OUT_DIR" is unambiguous,
and a payload file can never replace or shadow a package file (a payload named
``run.sh`` or ``json.py`` next to the package's own files would run the caller's code
inside someone else's jobconfig).

The jobs folder may live elsewhere than the cache (``jobs_root``): when jobs run as uids
of their own (:mod:`jobyard.worker.jobuids`), every folder above a job's must be
searchable by them, while the cache and the rest of the home stay private. A job's
folders then belong to its uid (mode 0700), and nothing else is reachable: ``jobs/``
is ``0711`` (no listing), ``cache/`` and ``spare/`` are ``0700``.

Job folders are recycled: an ended job's folder that is empty (the job wrote nothing
there) is renamed to ``spare/`` and renamed back for a later job, because creating
and removing directories costs milliseconds on some disks (``discard`` mounts) while
renames cost microseconds. Non-empty folders are deleted in a thread. ``spare/`` may
be deleted whenever no worker runs.

Each job gets a *copy* of the cached tree (not hard links): a job that edits or
deletes its files cannot corrupt the cache for the next job. Single-file packages
skip the cache (placing the file is already one copy). Jobs without a package cost
two ``mkdir`` calls and, at the end, two ``rmdir`` calls.

The cache is bounded (``retention.package_cache_max_bytes``; 0 = unbounded): after a
new tree is added, the least recently used trees (by their folder's modification time,
touched at each use) are removed until the cache fits. A tree being copied into a job
is held with a shared ``flock``; eviction takes the lock exclusively without waiting
and skips a tree it cannot lock, so no running job's copy loses its source, in this
process or another sharing the folder. An evicted tree is re-created on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
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
from jobyard.core.packages import detect_kind, normalize_member_name, safe_filename, sha256_file
from jobyard.core.unpack import DEFAULT_MAX_RATIO, place_file, safe_unpack

T = TypeVar("T")
ArchiveKind = Literal["zip", "tar"]


#: (uid, gid) that a job's files belong to; None: the worker's own.
Owner = tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class JobDirs:
    """The folders of one job (``tmp`` only for sandboxed jobs).

    Held as strings: they are made, used and removed on every job's path, where four
    ``Path`` objects cost more Python time than the system calls on them. The ``Path``
    properties serve the rarer uses (packages, payload files, error messages).
    """

    spec_dir: str
    out_dir: str
    payload_dir: str
    tmp_dir: str | None = None

    @property
    def spec(self) -> Path:
        """LOCAL_JOB_SPEC_DIR: the package copy; the program's cwd."""
        return Path(self.spec_dir)

    @property
    def out(self) -> Path:
        """LOCAL_JOB_OUT_DIR: files here become output files."""
        return Path(self.out_dir)

    @property
    def payload(self) -> Path:
        """JOB_PAYLOAD_DIR: the payload files."""
        return Path(self.payload_dir)

    @property
    def tmp(self) -> Path | None:
        """HOME and TMPDIR of a sandboxed job; None for others."""
        return None if self.tmp_dir is None else Path(self.tmp_dir)

    @property
    def folders(self) -> tuple[str, ...]:
        """Every folder of the job that exists while it runs."""
        folders = (self.spec_dir, self.out_dir, self.payload_dir)
        return folders if self.tmp_dir is None else (*folders, self.tmp_dir)

    @property
    def all(self) -> tuple[Path, ...]:
        """:attr:`folders` as ``Path`` objects."""
        return tuple(Path(folder) for folder in self.folders)


class Workspace:
    """Per-host work folder: job folders and the package cache. One per worker process."""

    def __init__(
        self,
        root: Path,
        *,
        jobs_root: Path | None = None,
        unpack_max_bytes: int = 2 * 1024**3,
        unpack_max_entries: int = 100_000,
        unpack_max_ratio: float | None = DEFAULT_MAX_RATIO,
        cache_max_bytes: int = 0,
    ) -> None:
        self.root = root
        self.cache_max_bytes = cache_max_bytes
        self._tree_sizes: dict[str, int] = {}
        self.jobs_root = jobs_root or root / "jobs"
        self.cache_root = root / "cache"
        self.unpack_max_bytes = unpack_max_bytes
        self.unpack_max_entries = unpack_max_entries
        self.unpack_max_ratio = unpack_max_ratio
        self._filling: dict[str, asyncio.Task[tuple[Literal["file", "tree"], Path]]] = {}
        self._roots_made = False
        # Spares are renamed into jobs/: they must be on its file system.
        self.spare_root = self.jobs_root.with_name("spare")
        self.max_spares = 64
        #: Spare folders' paths (strings: cheaper than Path objects on every job's path).
        self._spares: list[str] = []
        self._spare_base = f"{self.spare_root}/{os.getpid()}-{uuid.uuid4().hex[:6]}-"
        self._spare_counter = itertools.count()

    @classmethod
    def from_settings(cls, settings: Any, *, jobs_root: Path | None = None) -> Workspace:
        """``$JOBYARD_HOME/work`` with the settings' unpack limits."""
        return cls(
            Path(settings.home) / "work",
            jobs_root=jobs_root,
            unpack_max_bytes=settings.unpack_max_bytes,
            unpack_max_entries=settings.unpack_max_entries,
            unpack_max_ratio=settings.unpack_max_ratio,
            cache_max_bytes=settings.retention.package_cache_max_bytes,
        )

    # -- job folders ---------------------------------------------------------------------
    def job_dirs(self, job_id: int, *, private_tmp: bool = False) -> JobDirs:
        """The folders of ``job_id`` (they may not exist)."""
        spec = f"{os.fspath(self.jobs_root)}/{job_id}"
        return JobDirs(
            spec, f"{spec}.out", f"{spec}.payload", f"{spec}.tmp" if private_tmp else None
        )

    def _make_roots(self, shared: bool) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for folder in (self.cache_root, self.spare_root):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Job uids must reach their own folders (search) but list nothing.
        self.jobs_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.jobs_root, 0o711 if shared else 0o700)
        if shared and self.jobs_root.parent == self.root:
            os.chmod(self.root, 0o711)
        self._roots_made = True

    def create_job_dirs(
        self, job_id: int, *, owner: Owner = None, private_tmp: bool = False
    ) -> JobDirs:
        """Create the (empty) folders; leftovers of an earlier crash are removed first.

        With an ``owner`` the folders belong to the job's uid (mode 0700). Empty folders
        of ended jobs are recycled (renamed) instead of created anew: on some disks
        creating and removing a directory costs milliseconds, a rename a few
        microseconds, and this is on every job's path.
        """
        if not self._roots_made:
            self._make_roots(shared=owner is not None)
        dirs = self.job_dirs(job_id, private_tmp=private_tmp)
        for folder in dirs.folders:
            try:
                self._new_dir(folder)
            except FileNotFoundError:  # jobs/ was removed under us
                self._roots_made = False
                self._spares.clear()
                return self.create_job_dirs(job_id, owner=owner, private_tmp=private_tmp)
            if owner is not None:
                os.chown(folder, *owner)
        return dirs

    def _new_dir(self, folder: str) -> None:
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
            os.mkdir(folder, 0o700)
        except FileExistsError:
            force_rmtree(folder)
            os.mkdir(folder, 0o700)

    async def remove_job_dirs(self, dirs: JobDirs) -> None:
        """Delete a job's folders: empty ones are kept as spares, others go in a thread.

        Call it only once every process of the job has ended: the folders are then
        nobody's but the worker's, whatever links the job left in them.
        """
        rest = []
        for folder in dirs.folders:
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

    def tidy(self) -> None:
        """On shutdown: drop this process's spare folders and every job folder root left
        empty (another worker process may still use them: then they stay)."""
        for spare in self._spares:
            with contextlib.suppress(OSError):
                os.rmdir(spare)
        self._spares.clear()
        self._roots_made = False
        folders = [self.spare_root, self.jobs_root]
        if self.jobs_root.parent != self.root:  # a folder of its own (see sandbox.py)
            folders.append(self.jobs_root.parent)
        for folder in folders:
            with contextlib.suppress(OSError):
                os.rmdir(folder)

    def _keep_as_spare(self, folder: str) -> bool:
        if len(self._spares) >= self.max_spares:
            return False
        # Taken back first (a job's uid may own it, a job may have opened its mode or
        # given others access through an ACL, which the mode's group bits mask): from
        # here on no process of another job can add anything, so "empty" stays true.
        os.chown(folder, os.geteuid(), os.getegid())
        os.chmod(folder, 0o700)
        with os.scandir(folder) as entries:
            if next(entries, None) is not None:
                return False
        spare = f"{self._spare_base}{next(self._spare_counter)}"
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
        owner: Owner = None,
    ) -> None:
        """Lay the package out in the job's spec folder (a copy of the cached tree).

        ``fetch`` returns a local file holding the upload (the backend downloads it if
        needed); it is called only when the cache does not have the package yet. With
        an ``owner`` the copy belongs to the job's uid.
        """
        for _attempt in range(3):
            what, path = await self.obtain_package(sha256, kind, fetch)
            if what == "file":
                await _in_thread(_place_owned_file, path, dirs.spec, filename or sha256[:12], owner)
                return
            if await _in_thread(_copy_locked_tree, path, dirs.spec, owner):
                return
            # Evicted between the lookup and the lock: obtain it again.
        raise InvalidInput(f"package {sha256} kept leaving the cache while being copied")

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
            try:
                os.utime(cached)  # last use: the LRU order of the bound
                return "tree", cached
            except (FileNotFoundError, NotADirectoryError):
                pass
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
            max_ratio=self.unpack_max_ratio,
        )
        _owner_bits_only(tmp)
        self._tree_sizes[sha256] = _tree_size(tmp)
        try:
            os.rename(tmp, cached)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                force_rmtree(tmp)
                raise
            force_rmtree(tmp)  # another process won the race; its tree is identical
        if self.cache_max_bytes > 0:
            self.prune_cache(keep=sha256)
        return cached

    def prune_cache(self, *, keep: str | None = None) -> int:
        """Remove least recently used trees until the cache fits its bound; bytes freed.

        ``keep`` (the tree just added) is never removed, nor a tree some job is being
        copied from (its shared lock is held). Blocking: call it from a thread.
        """
        entries = []
        try:
            with os.scandir(self.cache_root) as it:
                for entry in it:
                    if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                        continue
                    size = self._tree_sizes.get(entry.name)
                    if size is None:
                        size = self._tree_sizes[entry.name] = _tree_size(Path(entry.path))
                    entries.append((entry.stat(follow_symlinks=False).st_mtime, entry.name, size))
        except FileNotFoundError:
            return 0
        total = sum(size for _, _, size in entries)
        freed = 0
        for _mtime, name, size in sorted(entries):
            if total <= self.cache_max_bytes:
                break
            if name == keep:
                continue
            if _evict(self.cache_root, name):
                self._tree_sizes.pop(name, None)
                total -= size
                freed += size
        return freed

    # -- payload and outputs ---------------------------------------------------------------
    async def place_payload(self, dirs: JobDirs, name: str, src: Path, owner: Owner = None) -> Path:
        """Copy one payload file to ``JOB_PAYLOAD_DIR/<name>`` (``name`` may hold ``/``)."""
        try:
            rel = normalize_member_name(name)
        except InvalidInput as exc:
            raise InvalidInput(f"payload file name {name!r} is not usable") from exc
        if not rel:
            raise InvalidInput(f"payload file name {name!r} is not usable")
        return await _in_thread(_copy_payload, dirs.payload, rel, src, owner)


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


def _copy_tree(src: Path, dest: Path, owner: Owner) -> None:
    shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
    if owner is not None:
        chown_tree(dest, owner)


def _copy_locked_tree(src: Path, dest: Path, owner: Owner) -> bool:
    """Copy a cached tree under its shared lock; False if it was evicted first."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            # Evicted (renamed away) between the open and the lock: not ours any more.
            if os.stat(src).st_ino != os.fstat(fd).st_ino:
                return False
        except FileNotFoundError:
            return False
        _copy_tree(src, dest, owner)
        return True
    finally:
        os.close(fd)  # releases the lock


def _evict(cache_root: Path, name: str) -> bool:
    """Remove one cached tree unless a copy holds it; True when removed."""
    path = cache_root / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a job is being copied from it
        doomed = cache_root / f".evict-{name[:16]}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, doomed)
        except OSError:
            return False
    finally:
        os.close(fd)
    force_rmtree(doomed)
    return True


def _tree_size(top: Path) -> int:
    """Bytes of the files under ``top`` (links not followed)."""
    total = 0
    for folder, _dirnames, filenames in os.walk(top):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def _place_owned_file(src: Path, dest_dir: Path, name: str, owner: Owner) -> None:
    place_file(src, dest_dir, name)
    if owner is not None:
        os.lchown(dest_dir / safe_filename(name), *owner)


def _owner_bits_only(top: Path) -> None:
    """Keep only the owner's permission bits in an unpacked tree: the cache is private.

    A job's copy belongs to whoever runs it (the worker's user, or the job's uid after
    :func:`chown_tree`), so the owner bits are all it needs (executables stay so).
    """
    for folder, dirnames, filenames in os.walk(top):
        for name in (*dirnames, *filenames):
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode):
                os.chmod(path, stat.S_IMODE(mode) & 0o700)
    os.chmod(top, 0o700)


def chown_tree(top: Path, owner: tuple[int, int]) -> None:
    """Give everything under ``top`` (not ``top`` itself) to ``owner``; links not followed."""
    for folder, dirnames, filenames in os.walk(top):
        for name in (*dirnames, *filenames):
            os.lchown(os.path.join(folder, name), *owner)


def _copy_payload(base: Path, rel: str, src: Path, owner: Owner) -> Path:
    target = base.joinpath(*rel.split("/"))
    # Parents must be real folders inside the payload folder: never follow a link.
    cur = base
    for part in rel.split("/")[:-1]:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur, 0o755)
            if owner is not None:
                os.chown(cur, *owner)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidInput(f"payload file {rel!r} would be written through {cur.name!r}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target)  # a file or link of that name is replaced, not followed
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as fout, open(src, "rb") as fin:
        if owner is not None:
            os.fchown(fout.fileno(), *owner)
        shutil.copyfileobj(fin, fout, 1024 * 1024)
    return target


def force_rmtree(path: str | Path) -> None:
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


def _remove_all(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            force_rmtree(path)
