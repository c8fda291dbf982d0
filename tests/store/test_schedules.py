"""Schedules in the store: CRUD, and firing exactly once (both engines)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from jobyard.core.errors import Conflict, NotFound
from jobyard.core.jobs import JobStatus
from jobyard.core.models import JobConfigSpec, JobFilter
from jobyard.core.schedules import FiringPlanner, MisfirePolicy, ScheduleSpec, validate
from jobyard.store.factory import open_store
from jobyard.store.protocol import Store
from jobyard.store.schema import jobs, schedules

GRACE = timedelta(seconds=60)
EVERY_MINUTE = "0 * * * * ?"
#: Fires once a year: a schedule made due "a few seconds ago" has exactly one due firing
#: (a minute expression would have two whenever a whole minute fell in between).
YEARLY = "0 0 0 1 1 ?"


def _spec(cron: str = EVERY_MINUTE, **kw: object) -> ScheduleSpec:
    return validate(ScheduleSpec(cron=cron, **kw), allow_seconds=True)  # type: ignore[arg-type]


async def _jobconfig(store: Store, name: str = "nightly", **kw: object) -> int:
    spec = JobConfigSpec(name=name, command=["true"], **kw)  # type: ignore[arg-type]
    return (await store.jobconfig_insert(spec, owner="alice")).id


async def _due(store: Store, jc: int, ago: timedelta, cron: str = YEARLY, **kw: object) -> int:
    """A schedule whose next fire time was ``ago`` (on the whole second)."""
    when = (datetime.now(UTC) - ago).replace(microsecond=0)
    s = await store.schedule_insert(jc, _spec(cron, **kw), next_fire_at=when)
    return s.id


async def _fire(store: Store, limit: int = 1000) -> int:
    return (await store.schedules_fire_due(limit=limit, planner=FiringPlanner(GRACE))).jobs


async def _jobs_of(store: Store, jc: int) -> list:  # type: ignore[type-arg]
    return (await store.jobs_list(JobFilter(jobconfig_id=jc), cursor=None, limit=500)).items


async def test_crud_and_conflicts(store: Store) -> None:
    jc = await _jobconfig(store)
    s = await store.schedule_insert(jc, _spec(name="hourly"), next_fire_at=None)
    assert (s.name, s.cron, s.version, s.misfire_policy) == (
        "hourly", EVERY_MINUTE, 1, MisfirePolicy.FIRE_ONCE,
    )  # fmt: skip
    assert [x.id for x in await store.schedules_list(jc)] == [s.id]
    assert (await store.schedule_get(jc, s.id)).name == "hourly"
    with pytest.raises(Conflict, match="hourly"):
        await store.schedule_insert(jc, _spec(name="hourly"), next_fire_at=None)
    moved = await store.schedule_replace(
        jc, s.id, _spec("0 0 * * * ?", name="hourly"), next_fire_at=None, expected_version=1
    )
    assert (moved.cron, moved.version) == ("0 0 * * * ?", 2)
    with pytest.raises(Conflict, match="changed meanwhile"):
        await store.schedule_replace(jc, s.id, _spec(), next_fire_at=None, expected_version=1)
    other = await _jobconfig(store, "other")
    with pytest.raises(NotFound):
        await store.schedule_get(other, s.id)
    with pytest.raises(NotFound):
        await store.schedules_list(999)
    await store.schedule_delete(jc, s.id)
    with pytest.raises(NotFound):
        await store.schedule_delete(jc, s.id)
    assert await store.schedules_list(jc) == []


async def test_a_due_schedule_fires_one_job_as_the_owner(store: Store) -> None:
    jc = await _jobconfig(store)
    sid = await _due(store, jc, timedelta(seconds=2), macros={"WHO": "cron"})
    before = await store.schedule_get(jc, sid)
    assert await _fire(store) == 1
    assert await _fire(store) == 0  # advanced: nothing due any more
    (job,) = await _jobs_of(store, jc)
    assert (job.trigger, job.submitted_by, job.schedule_id) == ("schedule", "alice", sid)
    assert job.scheduled_for == before.next_fire_at
    assert job.macros == {"WHO": "cron"}
    assert job.status is JobStatus.QUEUED
    events = await store.job_events(job.id)
    assert [e.status for e in events] == [JobStatus.SEQUENCED, JobStatus.QUEUED]
    assert events[0].actor == "scheduler"
    after = await store.schedule_get(jc, sid)
    assert after.last_fire_at == before.next_fire_at
    assert after.next_fire_at is not None and after.next_fire_at > datetime.now(UTC)
    assert after.last_result is not None and after.last_result.endswith("fired")


@pytest.mark.parametrize(
    ("policy", "expected"), [(MisfirePolicy.FIRE_ONCE, 1), (MisfirePolicy.SKIP, 0)]
)
async def test_missed_firings_follow_the_misfire_policy(
    store: Store, policy: MisfirePolicy, expected: int
) -> None:
    jc = await _jobconfig(store)
    sid = await _due(
        store, jc, timedelta(minutes=3, seconds=30), EVERY_MINUTE, misfire_policy=policy
    )
    assert await _fire(store) == expected
    assert await _fire(store) == 0
    s = await store.schedule_get(jc, sid)
    assert s.next_fire_at is not None and s.next_fire_at > datetime.now(UTC)
    assert s.last_result is not None and "missed" in s.last_result
    jobs_ = await _jobs_of(store, jc)
    assert len(jobs_) == expected
    if jobs_:  # the catch-up job is recorded for the latest missed fire time
        assert jobs_[0].scheduled_for == s.last_fire_at
        assert datetime.now(UTC) - jobs_[0].scheduled_for < timedelta(seconds=61)


async def test_a_late_firing_within_the_grace_still_fires(store: Store) -> None:
    jc = await _jobconfig(store)
    await _due(store, jc, timedelta(seconds=40), misfire_policy=MisfirePolicy.SKIP)
    assert await _fire(store) == 1


async def test_firing_respects_the_jobconfig_limit(store: Store) -> None:
    jc = await _jobconfig(store, max_concurrent=1)
    for i in range(3):
        await _due(store, jc, timedelta(seconds=1 + i), name=f"s{i}")
    assert await _fire(store) == 3
    statuses = sorted(j.status.value for j in await _jobs_of(store, jc))
    assert statuses == ["QUEUED", "SEQUENCED", "SEQUENCED"]
    # Older SEQUENCED jobs wait: a new firing queues nothing ahead of them.
    await _due(store, jc, timedelta(seconds=1), name="late")
    assert await _fire(store) == 1
    by_seq = sorted(await _jobs_of(store, jc), key=lambda j: j.seq)
    assert [j.status.value for j in by_seq] == ["QUEUED", *["SEQUENCED"] * 3]


async def test_unlimited_jobconfig_queues_every_firing(store: Store) -> None:
    jc = await _jobconfig(store, max_concurrent=0)
    for i in range(5):
        await _due(store, jc, timedelta(seconds=1), name=f"s{i}")
    assert await _fire(store, limit=2) == 2  # batches: the limit holds per call
    assert await _fire(store) == 3
    assert {j.status for j in await _jobs_of(store, jc)} == {JobStatus.QUEUED}


async def test_a_disabled_jobconfig_advances_without_a_job(store: Store) -> None:
    jc = await _jobconfig(store, enabled=False)
    sid = await _due(store, jc, timedelta(seconds=1))
    assert await _fire(store) == 0
    s = await store.schedule_get(jc, sid)
    assert s.last_result is not None and "disabled" in s.last_result
    assert s.next_fire_at is not None and s.next_fire_at > datetime.now(UTC)


async def test_paused_schedules_never_fire(store: Store) -> None:
    jc = await _jobconfig(store)
    await store.schedule_insert(jc, _spec(paused=True), next_fire_at=None)
    assert await _fire(store) == 0
    assert await store.schedules_next_due() is None


async def test_deleting_a_jobconfig_deletes_its_schedules(store: Store, db: Engine) -> None:
    jc = await _jobconfig(store)
    await _due(store, jc, timedelta(hours=-1))
    await store.jobconfig_delete(jc)
    with db.connect() as conn:
        assert conn.execute(select(schedules.c.id)).all() == []


async def test_the_database_refuses_a_second_job_for_one_firing(store: Store, db: Engine) -> None:
    jc = await _jobconfig(store)
    sid = await _due(store, jc, timedelta(seconds=1))
    await _fire(store)
    with db.begin() as conn:
        row = conn.execute(select(jobs).where(jobs.c.schedule_id == sid)).mappings().one()
        copy = {k: v for k, v in row.items() if k not in ("id", "seq")}
        with pytest.raises(IntegrityError):
            conn.execute(insert(jobs).values(**copy))


async def test_warming_pages_by_fire_time_then_id(store: Store) -> None:
    jc = await _jobconfig(store)
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    ids = [
        (await store.schedule_insert(jc, _spec(name=f"s{i}"), next_fire_at=when)).id
        for i in range(5)
    ]
    first = await store.schedules_due_between(None, when, limit=3)
    rest = await store.schedules_due_between(when, when, limit=3, after_id=first[-1].id)
    assert [s.id for s in first + rest] == ids
    assert await store.schedules_due_between(when, when, limit=3) == []


async def test_racing_firers_fire_each_schedule_exactly_once(
    store: Store, migrated_store_url: str, db: Engine
) -> None:
    """Four stores (own connections; on PostgreSQL truly parallel) fire 300 schedules."""
    jcs = [await _jobconfig(store, f"jc{i}", max_concurrent=0) for i in range(10)]
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    for n in range(300):
        await store.schedule_insert(
            jcs[n % 10], _spec(YEARLY, name=f"s{n}"), next_fire_at=when - timedelta(seconds=n % 7)
        )
    firers = [await open_store(migrated_store_url, migrate=False) for _ in range(4)]
    try:

        async def drain(s: Store) -> int:
            total = 0
            while True:
                fired = await s.schedules_fire_due(limit=17, planner=FiringPlanner(GRACE))
                total += fired.jobs
                if fired.schedules == 0:
                    return total
                await asyncio.sleep(0)

        totals = await asyncio.gather(*(drain(s) for s in firers))
    finally:
        for s in firers:
            await s.close()
    assert sum(totals) == 300
    with db.connect() as conn:
        fired = conn.execute(select(jobs.c.schedule_id, jobs.c.scheduled_for)).all()
        assert len(fired) == len(set(fired)) == 300
        # Every schedule moved on exactly one minute step past its firing.
        left_due = conn.execute(
            select(schedules.c.id).where(schedules.c.next_fire_at <= when)
        ).all()
        assert left_due == []
        conn.execute(update(schedules).values(next_fire_at=None))
