"""Access policies and the audit log.

Policies are few per user and read on every authorization decision (cached by
:mod:`jobyard.service.access`); audit rows are written on every change, so
:meth:`AccessMixin.audit_insert` is one INSERT without a read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select

from jobyard.core.access import (
    AUDIT_MAX_LIMIT,
    AuditEntry,
    AuditFilter,
    AuditNote,
    Policy,
    check_policy,
)
from jobyard.core.errors import Conflict, InvalidInput, NotFound
from jobyard.core.models import Page
from jobyard.store.schema import audit, policies, users
from jobyard.store.sql.base import SqlBase, Tx, decode_cursor, encode_cursor

_POLICY_COLUMNS = (
    policies.c.id,
    policies.c.user_id,
    policies.c.action,
    policies.c.resource,
    policies.c.selector,
    policies.c.created_at,
)
_AUDIT_COLUMNS = (
    audit.c.id,
    audit.c.at,
    audit.c.actor,
    audit.c.action,
    audit.c.object_type,
    audit.c.object_id,
    audit.c.details,
    audit.c.remote_addr,
)
_INSERT_AUDIT = insert(audit)


def _policy(row: Any) -> Policy:
    return Policy(*row)


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(*row)


def _missing_user(user_id: int) -> NotFound:
    return NotFound(f"user {user_id} does not exist", {"user_id": user_id})


def _user_exists(tx: Tx, user_id: int) -> bool:
    return tx.conn.execute(select(users.c.id).where(users.c.id == user_id)).first() is not None


class AccessMixin(SqlBase):
    """Access policies (per user) and the audit log."""

    # -- policies --------------------------------------------------------------------

    async def policy_insert(
        self, user_id: int, *, action: str, resource: str, selector: str
    ) -> Policy:
        """Grant a policy; ``InvalidInput`` (bad fields), ``NotFound`` (user), ``Conflict``."""
        check_policy(action, resource, selector)
        return await self._write(_policy_insert, user_id, action, resource, selector)

    async def policies_list(self, user_id: int) -> list[Policy]:
        """A user's policies by id; ``NotFound`` if there is no such user."""
        return await self._read(_policies_list, user_id, True)

    async def policies_for_user(self, user_id: int) -> list[Policy]:
        """A user's policies (none for an unknown user): the authorization read."""
        return await self._read(_policies_list, user_id, False)

    async def policy_delete(self, user_id: int, policy_id: int) -> Policy:
        """Revoke one policy of a user; ``NotFound`` if the user has no such policy."""
        return await self._write(_policy_delete, user_id, policy_id)

    # -- audit -----------------------------------------------------------------------

    async def audit_insert(
        self,
        *,
        actor: str,
        action: str,
        object_type: str,
        object_id: str | None,
        details: dict[str, Any] | None = None,
        remote_addr: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Append one audit entry (one INSERT; ``at`` defaults to the store's clock)."""
        row = audit_row(
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            details=details,
            remote_addr=remote_addr,
            at=at,
        )
        await self._write(_audit_insert, row)

    async def audit_list(
        self, flt: AuditFilter, *, cursor: str | None = None, limit: int = 100
    ) -> Page[AuditEntry]:
        """Audit entries matching ``flt``, newest first; ``limit`` 1..500."""
        if not 1 <= limit <= AUDIT_MAX_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {AUDIT_MAX_LIMIT}", {"limit": limit})
        return await self._read(_audit_list, flt, decode_cursor(cursor), limit)


def _policy_insert(tx: Tx, user_id: int, action: str, resource: str, selector: str) -> Policy:
    if not _user_exists(tx, user_id):
        raise _missing_user(user_id)
    existing = tx.conn.execute(
        select(policies.c.id).where(
            policies.c.user_id == user_id,
            policies.c.action == action,
            policies.c.resource == resource,
            policies.c.selector == selector,
        )
    ).first()
    if existing is not None:
        raise Conflict(
            f"user {user_id} already has {action} on {resource} {selector!r}",
            {"policy_id": existing[0]},
        )
    stmt = (
        insert(policies)
        .values(
            user_id=user_id,
            action=action,
            resource=resource,
            selector=selector,
            created_at=tx.now,
        )
        .returning(*_POLICY_COLUMNS)
    )
    return _policy(tx.conn.execute(stmt).one())


def _policies_list(tx: Tx, user_id: int, check_user: bool) -> list[Policy]:
    if check_user and not _user_exists(tx, user_id):
        raise _missing_user(user_id)
    stmt = select(*_POLICY_COLUMNS).where(policies.c.user_id == user_id).order_by(policies.c.id)
    return [_policy(row) for row in tx.conn.execute(stmt)]


def _policy_delete(tx: Tx, user_id: int, policy_id: int) -> Policy:
    stmt = (
        delete(policies)
        .where(policies.c.id == policy_id, policies.c.user_id == user_id)
        .returning(*_POLICY_COLUMNS)
    )
    row = tx.conn.execute(stmt).first()
    if row is None:
        raise NotFound(
            f"user {user_id} has no policy {policy_id}",
            {"user_id": user_id, "policy_id": policy_id},
        )
    return _policy(row)


def audit_row(
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str | None,
    details: dict[str, Any] | None,
    remote_addr: str | None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """An ``audit`` row, its texts cut to their column sizes."""
    return {
        "at": at,
        "actor": actor[:200],
        "action": action[:64],
        "object_type": object_type[:32],
        "object_id": None if object_id is None else object_id[:200],
        "details": details,
        "remote_addr": None if remote_addr is None else remote_addr[:64],
    }


def audit_note_insert(tx: Tx, note: AuditNote, object_id: int | str) -> None:
    """Write ``note`` about the object ``object_id`` inside the caller's transaction."""
    tx.audit(
        audit_row(
            actor=note.actor,
            action=note.action,
            object_type=note.object_type,
            object_id=str(object_id),
            details=note.details,
            remote_addr=note.remote_addr,
            at=tx.now,
        )
    )


def _audit_insert(tx: Tx, row: dict[str, Any]) -> None:
    if row["at"] is None:
        row["at"] = tx.now
    tx.conn.execute(_INSERT_AUDIT, row)


def _audit_list(tx: Tx, flt: AuditFilter, before: int | None, limit: int) -> Page[AuditEntry]:
    stmt = select(*_AUDIT_COLUMNS).order_by(audit.c.id.desc()).limit(limit + 1)
    if before is not None:
        stmt = stmt.where(audit.c.id < before)
    if flt.actor is not None:
        stmt = stmt.where(audit.c.actor == flt.actor)
    if flt.action:
        stmt = stmt.where(audit.c.action.startswith(flt.action, autoescape=True))
    if flt.object_type is not None:
        stmt = stmt.where(audit.c.object_type == flt.object_type)
    if flt.object_id is not None:
        stmt = stmt.where(audit.c.object_id == flt.object_id)
    if flt.since is not None:
        stmt = stmt.where(audit.c.at >= flt.since)
    if flt.until is not None:
        stmt = stmt.where(audit.c.at < flt.until)
    items = [_entry(row) for row in tx.conn.execute(stmt)]
    if len(items) > limit:
        items = items[:limit]
        return Page(items, encode_cursor(items[-1].id))
    return Page(items, None)
