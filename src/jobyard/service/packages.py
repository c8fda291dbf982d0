"""Package use cases: upload (validated, content-addressed, stored once), read, list."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from jobyard.blobs.keys import package_key
from jobyard.core import packages as pk
from jobyard.core.models import Package, Page
from jobyard.core.unpack import safe_unpack
from jobyard.service import access
from jobyard.service.context import Context, Principal
from jobyard.settings import Settings


def _inspect(
    path: Path, tmp_root: Path, settings: Settings
) -> tuple[str, str, dict[str, dict[str, Any]]]:
    """Hash, detect the kind, and for archives unpack safely to validate every entry.

    The trial unpack is bounded by size, ratio and entries (it stops as soon as one is
    crossed) and its folder is removed before returning, whatever happened.
    """
    sha = pk.sha256_file(path)
    kind = pk.detect_kind(path)
    if kind == "file":
        return sha, kind, {}
    scratch = Path(tempfile.mkdtemp(prefix="inspect-", dir=tmp_root))
    try:
        safe_unpack(
            path,
            scratch / "pkg",
            kind,
            max_bytes=settings.unpack_max_bytes,
            max_entries=settings.unpack_max_entries,
            max_ratio=settings.unpack_max_ratio,
        )
        return sha, kind, pk.read_manifest(path, kind)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def upload(
    ctx: Context, path: Path, filename: str, *, principal: Principal | None = None
) -> tuple[Package, bool]:
    """Validate and store an uploaded package; identical content is stored once.

    With a ``principal`` (an API caller): a job's SESSION_ID uploads nothing (403), a
    job token creates no definitions. Internal callers (the example) pass none.
    """
    if principal is not None:
        access.refuse_job_token(principal, "upload packages")
    tmp_root = ctx.settings.home / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    sha, kind, entrypoints = await asyncio.to_thread(_inspect, path, tmp_root, ctx.settings)
    key = package_key(sha)
    # Touching an existing blob restarts its grace period: the retention pass leaves
    # an unreferenced package alone while its blob is newer than blob_grace_hours.
    if not await ctx.blobs.touch(key):
        await ctx.blobs.put_file(key, path)
    size = path.stat().st_size
    safe_name = Path(filename).name or "package"
    recorded = await ctx.store.package_insert(
        sha256=sha, filename=safe_name, size=size, kind=kind, entrypoints=entrypoints
    )
    # A purge may have removed the blob between the touch and the insert (it puts a
    # blob back only for rows it sees): make sure the recorded package has its content.
    if not await ctx.blobs.exists(key):
        await ctx.blobs.put_file(key, path)
    return recorded


async def get(ctx: Context, package_id: int) -> Package:
    """Read one package."""
    return await ctx.store.package_get(package_id)


async def list_(
    ctx: Context, *, cursor: str | None, limit: int, sha256: str | None = None
) -> Page[Package]:
    """List packages newest first; with ``sha256``, the one package of those bytes (if any),
    so a client pushes only what the server does not hold yet."""
    if sha256 is not None:
        found = await ctx.store.package_get_by_sha256(sha256)
        return Page(items=[found] if found is not None else [], next_cursor=None)
    return await ctx.store.packages_list(cursor=cursor, limit=limit)
