"""The audit log: who changed what, when, from where (SPEC §8).

Entries are written by :func:`record` after a change, or built by :func:`audit_note`
for the store to write in the very transaction of the change. :func:`record` never
raises into the caller (a failure is logged). Details must never hold a secret: callers
pass macro **names** only, never values; as a second line of defence, ``details`` keys
that look like secrets (``value``, ``password``, ``token``, ``secret``...) are replaced
by ``"***"`` (:func:`scrub`). Only admins read the log (:func:`audit_list`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from jobyard.core.access import AuditEntry, AuditFilter, AuditNote
from jobyard.core.models import Page
from jobyard.service.access import require_admin_route
from jobyard.service.context import Context, Principal

log = logging.getLogger("jobyard.audit")

#: ``details`` keys whose values are never stored (a second line of defence).
SECRET_KEYS = frozenset(
    {"value", "values", "password", "secret", "token", "access_token", "refresh_token"}
)
MASK = "***"


def actor_of(principal: Principal | str | None) -> str:
    """How a caller is written in the audit log: ``user:<name>``, or a given system name."""
    if principal is None:
        return "system"
    if isinstance(principal, str):
        return principal
    return principal.actor


def scrub(details: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``details`` with every secret-looking key's value replaced by ``***`` (recursive)."""
    if details is None:
        return None
    out: dict[str, Any] = {}
    for key, value in details.items():
        if str(key).lower() in SECRET_KEYS:
            out[str(key)] = MASK
        elif isinstance(value, Mapping):
            out[str(key)] = scrub(value)
        else:
            out[str(key)] = value
    return out


async def record(
    ctx: Context,
    principal: Principal | str | None,
    action: str,
    object_type: str,
    object_id: int | str | None,
    details: Mapping[str, Any] | None = None,
    remote_addr: str | None = None,
) -> None:
    """Append one audit entry; never raises (a failure is logged and swallowed).

    ``action`` is ``<object>.<verb>`` (``jobconfig.create``, ``job.cancel``,
    ``macro.set``...). ``details`` must never hold a secure value: pass macro NAMES.
    A change made with a job's SESSION_ID records that job as ``details.via_job``.
    """
    details = _with_job(principal, details)
    try:
        await ctx.store.audit_insert(
            actor=actor_of(principal),
            action=action,
            object_type=object_type,
            object_id=None if object_id is None else str(object_id),
            details=scrub(details),
            remote_addr=remote_addr,
        )
    except Exception:  # the audited change is done: do not fail it afterwards
        log.exception("could not record audit entry %s %s %s", action, object_type, object_id)


def _with_job(
    principal: Principal | str | None, details: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    if isinstance(principal, Principal) and principal.is_job and principal.job_id is not None:
        return {**(details or {}), "via_job": principal.job_id}
    return details


def audit_note(
    principal: Principal | str | None,
    action: str,
    object_type: str,
    details: Mapping[str, Any] | None = None,
    remote_addr: str | None = None,
) -> AuditNote:
    """An audit entry (see :func:`record`) for the store to write in the transaction that
    creates the object it is about."""
    return AuditNote(
        actor=actor_of(principal),
        action=action,
        object_type=object_type,
        details=scrub(_with_job(principal, details)),
        remote_addr=remote_addr,
    )


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def audit_filter(
    *,
    actor: str | None = None,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditFilter:
    """An :class:`AuditFilter`; a bare user name as ``actor`` means ``user:<name>``.

    Times without a zone are taken as UTC.
    """
    if actor is not None and ":" not in actor and actor not in ("system", "scheduler"):
        actor = f"user:{actor}"
    return AuditFilter(
        actor=actor,
        action=action or None,
        object_type=object_type,
        object_id=object_id,
        since=_aware(since),
        until=_aware(until),
    )


async def audit_list(
    ctx: Context,
    principal: Principal,
    flt: AuditFilter,
    *,
    cursor: str | None,
    limit: int,
) -> Page[AuditEntry]:
    """The audit log, newest first (admins; 403 ``required_role: admin`` for anyone else)."""
    require_admin_route(principal)
    return await ctx.store.audit_list(flt, cursor=cursor, limit=limit)
