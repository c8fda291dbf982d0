"""Packages: one row per content (sha256), listed newest first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from jobyard.core.errors import NotFound
from jobyard.core.models import Package, Page
from jobyard.store.schema import packages
from jobyard.store.sql.base import (
    SqlBase,
    Tx,
    check_limit,
    decode_cursor,
    encode_cursor,
    package_from_row,
    upsert,
)


class PackagesMixin(SqlBase):
    """Uploaded archives, by id and by content."""

    async def package_insert(
        self,
        *,
        sha256: str,
        filename: str,
        size: int,
        kind: str,
        entrypoints: dict[str, dict[str, Any]],
    ) -> tuple[Package, bool]:
        """Insert a package, or return the existing one with that sha256 (one row per content)."""
        values = {
            "sha256": sha256,
            "filename": filename,
            "size": size,
            "kind": kind,
            "entrypoints": entrypoints,
        }
        return await self._write(_package_insert, values)

    async def package_get(self, package_id: int) -> Package:
        """Return a package or raise ``NotFound``."""
        return await self._read(_package_get, package_id)

    async def packages_list(self, *, cursor: str | None, limit: int) -> Page[Package]:
        """Newest first, cursor-paginated."""
        after = decode_cursor(cursor)
        check_limit(limit)
        return await self._read(_packages_list, after, limit)


# -- transaction bodies ------------------------------------------------------------------


def _package_insert(tx: Tx, values: dict[str, Any]) -> tuple[Package, bool]:
    stmt = (
        upsert(tx, packages)
        .values(**values, created_at=tx.now)
        .on_conflict_do_nothing(index_elements=[packages.c.sha256])
        .returning(*packages.c)
    )
    row = tx.conn.execute(stmt).first()
    if row is not None:
        return package_from_row(row), True
    existing = tx.conn.execute(select(packages).where(packages.c.sha256 == values["sha256"])).one()
    return package_from_row(existing), False


def _package_get(tx: Tx, package_id: int) -> Package:
    row = tx.conn.execute(select(packages).where(packages.c.id == package_id)).first()
    if row is None:
        raise NotFound(f"package {package_id} does not exist", {"package_id": package_id})
    return package_from_row(row)


def _packages_list(tx: Tx, after: int | None, limit: int) -> Page[Package]:
    stmt = select(packages).order_by(packages.c.id.desc()).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(packages.c.id < after)
    items = [package_from_row(row) for row in tx.conn.execute(stmt)]
    if len(items) > limit:
        items = items[:limit]
        return Page(items, encode_cursor(items[-1].id))
    return Page(items, None)
