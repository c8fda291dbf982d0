"""Access policies and the audit log in the store (both engines)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from jobyard.core.access import AuditFilter
from jobyard.core.errors import Conflict, InvalidInput, NotFound
from jobyard.store.protocol import Store


async def test_policies_insert_list_delete(store: Store) -> None:
    alice = await store.user_create(name="alice", role="user", password_hash=None)
    bob = await store.user_create(name="bob", role="user", password_hash=None)
    p1 = await store.policy_insert(alice.id, action="view", resource="jobconfigs", selector="*")
    p2 = await store.policy_insert(
        alice.id, action="execute", resource="jobconfigs", selector="template:7"
    )
    p3 = await store.policy_insert(alice.id, action="edit", resource="templates", selector="12")
    assert (p1.user_id, p1.action, p1.resource, p1.selector) == (
        alice.id,
        "view",
        "jobconfigs",
        "*",
    )
    assert p1.created_at.tzinfo is not None
    assert await store.policies_list(alice.id) == [p1, p2, p3]
    assert await store.policies_for_user(alice.id) == [p1, p2, p3]
    assert await store.policies_list(bob.id) == []
    # The same grant twice is a conflict; the same grant to another user is not.
    with pytest.raises(Conflict):
        await store.policy_insert(alice.id, action="view", resource="jobconfigs", selector="*")
    await store.policy_insert(bob.id, action="view", resource="jobconfigs", selector="*")

    # Revoking: only the user's own policy, once.
    with pytest.raises(NotFound):
        await store.policy_delete(bob.id, p2.id)
    assert await store.policy_delete(alice.id, p2.id) == p2
    with pytest.raises(NotFound):
        await store.policy_delete(alice.id, p2.id)
    assert await store.policies_for_user(alice.id) == [p1, p3]


async def test_policies_validation_and_unknown_users(store: Store) -> None:
    alice = await store.user_create(name="alice", role="user", password_hash=None)
    bad = [
        ("run", "jobconfigs", "1"),
        ("view", "jobs", "1"),
        ("view", "jobconfigs", "abc"),
        ("view", "jobconfigs", "0"),
        ("view", "jobconfigs", "-1"),
        ("view", "templates", "template:1"),
        ("view", "jobconfigs", "template:"),
        ("view", "jobconfigs", "template:x"),
        ("view", "jobconfigs", "99999999999999999999"),
    ]
    for action, resource, selector in bad:
        with pytest.raises(InvalidInput):
            await store.policy_insert(alice.id, action=action, resource=resource, selector=selector)
    with pytest.raises(NotFound):
        await store.policy_insert(999, action="view", resource="jobconfigs", selector="*")
    with pytest.raises(NotFound):
        await store.policies_list(999)
    assert await store.policies_for_user(999) == []


async def test_policies_go_with_their_user(store: Store, db: Engine) -> None:
    alice = await store.user_create(name="alice", role="user", password_hash=None)
    await store.policy_insert(alice.id, action="view", resource="templates", selector="*")
    with db.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": alice.id})
    assert await store.policies_for_user(alice.id) == []


async def test_audit_insert_and_filters(store: Store) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        ("user:alice", "jobconfig.create", "jobconfig", "1", t0),
        ("user:alice", "jobconfig.update", "jobconfig", "1", t0 + timedelta(minutes=1)),
        ("user:bob", "macro.set", "jobconfig", "1", t0 + timedelta(minutes=2)),
        ("user:bob", "job.cancel", "job", "5", t0 + timedelta(minutes=3)),
        ("scheduler", "job_x%", "job", "6", t0 + timedelta(minutes=4)),
    ]
    for actor, action, otype, oid, at in rows:
        await store.audit_insert(
            actor=actor,
            action=action,
            object_type=otype,
            object_id=oid,
            details={"macro": "PASSWORD"} if action == "macro.set" else None,
            remote_addr="10.0.0.1",
            at=at,
        )
    every = await store.audit_list(AuditFilter())
    assert [e.action for e in every.items] == [r[1] for r in reversed(rows)]
    assert every.next_cursor is None
    macro = every.items[2]
    assert macro.details == {"macro": "PASSWORD"} and macro.remote_addr == "10.0.0.1"
    assert macro.at == t0 + timedelta(minutes=2)

    async def actions(flt: AuditFilter) -> list[str]:
        return [e.action for e in (await store.audit_list(flt)).items]

    assert await actions(AuditFilter(actor="user:alice")) == [
        "jobconfig.update",
        "jobconfig.create",
    ]
    assert await actions(AuditFilter(action="jobconfig.")) == [
        "jobconfig.update",
        "jobconfig.create",
    ]
    # The prefix is literal: % and _ are not wildcards.
    assert await actions(AuditFilter(action="job_")) == ["job_x%"]
    assert await actions(AuditFilter(action="job%")) == []
    assert await actions(AuditFilter(object_type="jobconfig", object_id="1")) == [
        "macro.set",
        "jobconfig.update",
        "jobconfig.create",
    ]
    window = AuditFilter(since=t0 + timedelta(minutes=1), until=t0 + timedelta(minutes=3))
    assert await actions(window) == ["macro.set", "jobconfig.update"]


async def test_audit_pagination_newest_first(store: Store) -> None:
    for i in range(7):
        await store.audit_insert(actor="system", action="a", object_type="t", object_id=str(i))
    seen: list[str | None] = []
    cursor = None
    while True:
        page = await store.audit_list(AuditFilter(), cursor=cursor, limit=3)
        seen.extend(e.object_id for e in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [str(i) for i in reversed(range(7))]
    entry = (await store.audit_list(AuditFilter(), limit=1)).items[0]
    assert entry.at.tzinfo is not None and entry.details is None
    for limit in (0, 501):
        with pytest.raises(InvalidInput):
            await store.audit_list(AuditFilter(), limit=limit)
    with pytest.raises(InvalidInput):
        await store.audit_list(AuditFilter(), cursor="garbage!")
