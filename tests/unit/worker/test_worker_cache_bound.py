"""The unpacked-package cache stays under its bound, least recently used first.

A tree a job is being copied from (its shared lock held, as during a copy) is never
evicted; the tree just added is kept even when it alone is over the bound.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from tests.unit.worker.test_worker_workspace import make_tgz

from jobyard.core.packages import sha256_file
from jobyard.worker.workspace import Workspace

KIB = 1024


async def _add(ws: Workspace, tmp_path: Path, name: str) -> str:
    """Put a package of ~10 KiB in the cache; its sha256."""
    pkg = make_tgz(tmp_path / f"{name}.tgz", {f"{name}.bin": os.urandom(10 * KIB)})
    sha = sha256_file(pkg)

    async def fetch() -> Path:
        return pkg

    dirs = ws.create_job_dirs(abs(hash(name)) % 10_000)
    await ws.install_package(dirs, sha256=sha, kind="tar", filename=None, fetch=fetch)
    assert (dirs.spec / f"{name}.bin").stat().st_size == 10 * KIB
    await ws.remove_job_dirs(dirs)
    return sha


def _cached(ws: Workspace) -> set[str]:
    return {p.name for p in ws.cache_root.iterdir() if not p.name.startswith(".")}


def _age(ws: Workspace, sha: str, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(ws.cache_root / sha, (when, when))


async def test_least_recently_used_trees_go_first(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "w", cache_max_bytes=25 * KIB)  # room for two trees
    a = await _add(ws, tmp_path, "a")
    b = await _add(ws, tmp_path, "b")
    _age(ws, a, 300)
    _age(ws, b, 200)
    # Using `a` again makes `b` the least recently used one.
    await ws.obtain_package(a, "tar", fetch=lambda: None)  # type: ignore[arg-type,return-value]
    c = await _add(ws, tmp_path, "c")
    assert _cached(ws) == {a, c}
    # Unbounded (0): nothing is ever evicted.
    unbounded = Workspace(tmp_path / "u")
    for name in ("x", "y", "z"):
        await _add(unbounded, tmp_path, name)
    assert len(_cached(unbounded)) == 3


async def test_a_tree_being_copied_is_never_evicted(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "w", cache_max_bytes=15 * KIB)  # room for one tree
    a = await _add(ws, tmp_path, "a")
    _age(ws, a, 300)
    fd = os.open(ws.cache_root / a, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # what a job's copy holds
        b = await _add(ws, tmp_path, "b")
        assert _cached(ws) == {a, b}  # over the bound, but `a` is in use
    finally:
        os.close(fd)
    assert ws.prune_cache(keep=b) > 0
    assert _cached(ws) == {b}
