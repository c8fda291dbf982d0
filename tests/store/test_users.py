"""Users, login throttling counters, tokens and session tokens in the store (both engines)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from jobyard.core.errors import Conflict, InvalidInput, NotFound
from jobyard.core.jobs import JobStatus
from jobyard.core.models import JobConfigSpec, JobFilter
from jobyard.core.schedules import FiringPlanner, ScheduleSpec, validate
from jobyard.store.protocol import Store
from tests.store.conftest import new_job


async def test_users_create_find_list_update(store: Store) -> None:
    alice = await store.user_create(name="alice", role="user", password_hash="h")
    assert (alice.name, alice.role, alice.active, alice.has_password) == (
        "alice",
        "user",
        True,
        True,
    )
    with pytest.raises(Conflict):
        await store.user_create(name="alice", role="user", password_hash=None)
    with pytest.raises(InvalidInput):
        await store.user_create(name="bob", role="root", password_hash=None)
    bob = await store.user_create(name="bob", role="admin", password_hash=None)
    assert await store.user_find("alice") == alice
    assert await store.user_find("nobody") is None
    assert await store.user_get(bob.id) == bob
    with pytest.raises(NotFound):
        await store.user_get(999)
    first = await store.users_list(cursor=None, limit=1)
    assert [u.name for u in first.items] == ["alice"] and first.next_cursor
    second = await store.users_list(cursor=first.next_cursor, limit=1)
    assert [u.name for u in second.items] == ["bob"] and second.next_cursor is None
    changed = await store.user_update(alice.id, {"role": "admin", "password_hash": None})
    assert changed.role == "admin" and not changed.has_password
    with pytest.raises(InvalidInput):
        await store.user_update(alice.id, {"name": "eve"})


async def test_the_last_active_admin_stays(store: Store) -> None:
    admin = await store.user_create(name="root", role="admin", password_hash=None)
    with pytest.raises(Conflict):
        await store.user_update(admin.id, {"role": "user"})
    with pytest.raises(Conflict):
        await store.user_deactivate(admin.id, actor="user:x")
    other = await store.user_create(name="root2", role="admin", password_hash=None)
    assert (await store.user_deactivate(admin.id, actor="user:root2")).user.active is False
    with pytest.raises(Conflict):
        await store.user_update(other.id, {"role": "user"})


async def test_bootstrap_creates_admin_and_links_tokens(store: Store) -> None:
    admin = await store.users_bootstrap("h-admin")
    assert admin is not None and (admin.name, admin.role, admin.has_password) == (
        "admin",
        "admin",
        False,
    )
    found = await store.token_identity("h-admin")
    assert found is not None and found.token.user_id == admin.id and found.token.kind == "admin"
    again = await store.users_bootstrap(None)
    assert again == admin
    assert await store.tokens_count() == 1


async def test_bootstrap_links_a_token_from_before_users(store: Store) -> None:
    old = await store.token_insert(name="admin", token_hash="h-old", role="admin")
    assert old.user_id is None and old.kind == "admin"
    admin = await store.users_bootstrap(None)
    assert admin is not None
    found = await store.token_identity("h-old")
    assert found is not None and found.token.user_id == admin.id and found.user == admin


async def test_token_identity_list_revoke(store: Store) -> None:
    alice = await store.user_create(name="alice", role="user", password_hash=None)
    later = datetime.now(UTC) + timedelta(days=1)
    t1 = await store.token_insert(
        name="ci", token_hash="h1", role="user", user_id=alice.id, kind="personal", expires_at=later
    )
    t2 = await store.token_insert(
        name="login", token_hash="h2", role="user", user_id=alice.id, kind="access"
    )
    assert t1.expires_at == later and t1.kind == "personal"
    found = await store.token_identity("h1")
    assert found is not None and found.token == t1 and found.user == alice
    assert found.job_status is None
    assert await store.token_identity("nope") is None
    assert [t.id for t in await store.tokens_list(user_id=alice.id, kinds=None)] == [t2.id, t1.id]
    assert [t.id for t in await store.tokens_list(user_id=alice.id, kinds=("personal",))] == [t1.id]
    assert await store.token_get(t1.id) == t1
    revoked = await store.token_revoke(t1.id)
    assert revoked.revoked
    found = await store.token_identity("h1")
    assert found is not None and found.token.revoked
    with pytest.raises(NotFound):
        await store.token_revoke(999)
    assert await store.token_revoke_by_hash("h2", kind="refresh") is None
    assert (await store.token_revoke_by_hash("h2")) is not None
    assert await store.token_revoke_by_hash("h2") is None  # once only


async def test_token_touch_records_the_last_use(store: Store) -> None:
    alice = await store.user_create(name="alice", role="user", password_hash=None)
    token = await store.token_insert(
        name="ci", token_hash="h1", role="user", user_id=alice.id, kind="personal"
    )
    assert token.last_used_at is None
    at = datetime(2026, 12, 7, 4, 30, 15, tzinfo=UTC)
    await store.token_touch(token.id, at)
    assert (await store.token_get(token.id)).last_used_at == at
    found = await store.token_identity("h1")
    assert found is not None and found.token.last_used_at == at
    listed = await store.tokens_list(user_id=alice.id, kinds=None)
    assert [t.last_used_at for t in listed] == [at]
    await store.token_touch(999, at)  # a token that is gone: nothing happens


async def test_a_refresh_token_is_consumed_once_under_races(store: Store) -> None:
    await store.token_insert(name="r", token_hash="hr", role="user", kind="refresh")
    results = await asyncio.gather(
        *(store.token_revoke_by_hash("hr", kind="refresh") for _ in range(5))
    )
    assert sum(r is not None for r in results) == 1


async def test_login_failure_counters(store: Store) -> None:
    keys = {"user:alice": 3, "ip:1.2.3.4": 10}
    common = {"base_seconds": 2.0, "max_seconds": 60.0, "forget_after_seconds": 3600.0}
    assert await store.login_blocked_until(list(keys)) is None
    assert await store.login_failure_record(keys, **common) is None
    assert await store.login_failure_record(keys, **common) is None
    blocked = await store.login_failure_record(keys, **common)  # third: 2 s
    assert blocked is not None
    assert 1 < (blocked - datetime.now(UTC)).total_seconds() <= 2
    assert await store.login_blocked_until(list(keys)) == blocked
    longer = await store.login_failure_record(keys, **common)  # fourth: 4 s
    assert longer is not None and longer > blocked
    assert await store.login_blocked_until(["ip:1.2.3.4"]) is None  # its threshold is 10
    await store.login_failures_reset(list(keys))
    assert await store.login_blocked_until(list(keys)) is None
    assert await store.login_failure_record(keys, **common) is None  # counting starts over


async def test_deactivation_revokes_tokens_and_cancels_not_started_jobs(store: Store) -> None:
    alice = await store.user_create(name="alice", role="user", password_hash=None)
    await store.token_insert(name="a", token_hash="ha", role="user", user_id=alice.id)
    jc = await store.jobconfig_insert(JobConfigSpec(name="jc", command=["true"]), owner="bob")
    waiting = await store.job_insert(new_job(jc.id, hold=True), actor="user:alice", reason=None)
    queued = await store.job_insert(new_job(jc.id), actor="user:alice", reason=None)
    sequenced = await store.job_insert(new_job(jc.id), actor="user:alice", reason=None)
    bobs = await store.job_insert(new_job(jc.id, submitted_by="bob"), actor="user:bob", reason=None)
    assert (queued.status, sequenced.status, bobs.status) == (
        JobStatus.QUEUED,
        JobStatus.SEQUENCED,
        JobStatus.SEQUENCED,
    )
    done = await store.user_deactivate(alice.id, actor="user:root")
    assert not done.user.active and done.tokens_revoked == 1
    assert done.jobs_cancelled == sorted([waiting.id, queued.id, sequenced.id])
    for job_id in done.jobs_cancelled:
        job = await store.job_get(job_id)
        assert job.status is JobStatus.CANCELLED
        assert job.status_reason == "user alice deactivated"
    assert (await store.job_get(bobs.id)).status is JobStatus.QUEUED  # promoted
    found = await store.token_identity("ha")
    assert found is not None and found.token.revoked and found.user is not None
    assert not found.user.active
    assert (await store.user_activate(alice.id)).active
    with pytest.raises(NotFound):
        await store.user_activate(999)


async def test_session_tokens(store: Store) -> None:
    alice = await store.user_create(name="alice", role="user", password_hash=None)
    job = await store.job_insert(new_job(), actor="user:alice", reason=None)
    user = await store.session_token_create(job_id=job.id, user_name="alice", token_hash="hs")
    assert user == alice
    found = await store.token_identity("hs")
    assert found is not None
    assert (found.token.kind, found.token.job_id, found.token.user_id) == (
        "session",
        job.id,
        alice.id,
    )
    assert found.job_status == "QUEUED"
    assert (
        await store.session_token_create(job_id=job.id, user_name="ghost", token_hash="hg") is None
    )
    assert await store.token_identity("hg") is None
    await store.user_create(name="admin2", role="admin", password_hash=None)
    await store.user_deactivate(alice.id, actor="user:admin2")
    inactive = await store.session_token_create(job_id=job.id, user_name="alice", token_hash="hx")
    assert inactive is not None and not inactive.active
    assert await store.token_identity("hx") is None


async def test_schedules_of_a_deactivated_owner_fire_nothing(store: Store) -> None:
    await store.user_create(name="carol", role="user", password_hash=None)
    await store.user_create(name="root", role="admin", password_hash=None)
    jc = await store.jobconfig_insert(
        JobConfigSpec(name="nightly", command=["true"]), owner="carol"
    )
    when = (datetime.now(UTC) - timedelta(seconds=5)).replace(microsecond=0)
    spec = validate(ScheduleSpec(cron="0 0 0 1 1 ?"), allow_seconds=True)
    schedule = await store.schedule_insert(jc.id, spec, next_fire_at=when)
    carol = await store.user_find("carol")
    assert carol is not None
    await store.user_deactivate(carol.id, actor="user:root")
    fired = await store.schedules_fire_due(limit=10, planner=FiringPlanner(timedelta(seconds=60)))
    assert fired.jobs == 0
    page = await store.jobs_list(JobFilter(jobconfig_id=jc.id), cursor=None, limit=10)
    assert page.items == []
    after = await store.schedule_get(jc.id, schedule.id)
    assert after.last_result is not None and "owner carol is deactivated" in after.last_result
