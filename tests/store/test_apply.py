"""``apply_writes``: a document's writes in ONE transaction (both engines).

What is written commits together with its audit rows; when any write is refused (the
last one here, so that every other kind of write has run before it), nothing of the
list remains: no template, jobconfig, schedule or audit row, and the objects it changed
or deleted are as they were.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from jobyard.core.access import AuditNote
from jobyard.core.applywrites import (
    ApplyWrite,
    Expect,
    JobConfigWrite,
    Ref,
    ScheduleDelete,
    ScheduleWrite,
    Stale,
    TemplateWrite,
    WriteRefused,
)
from jobyard.core.errors import Conflict, NotFound
from jobyard.core.models import JobConfig, JobConfigSpec
from jobyard.core.schedules import Schedule, ScheduleSpec
from jobyard.core.templates import TemplateSpec
from jobyard.store.protocol import Store
from jobyard.store.schema import audit, jobconfigs, schedules, templates
from tests.store.conftest import make_jobconfig

START = datetime(2030, 1, 1, tzinfo=UTC)


def _note(action: str, kind: str, **details: Any) -> AuditNote:
    return AuditNote("user:alice", action, kind, details or None, "10.0.0.1")


def _counts(db: Engine) -> dict[str, int]:
    with db.connect() as conn:
        return {
            t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (templates, jobconfigs, schedules, audit)
        }


async def _existing(store: Store) -> tuple[JobConfig, Schedule]:
    jc = await make_jobconfig(store, "old")
    sched = await store.schedule_insert(
        jc.id, ScheduleSpec(cron="0 3 * * *", name="nightly"), next_fire_at=START
    )
    return jc, sched


def _document(old: JobConfig, nightly: Schedule) -> list[ApplyWrite]:
    """Every kind of write: create a template, a jobconfig naming it and a schedule of
    that jobconfig; change an existing jobconfig and one of its schedules away."""
    return [
        TemplateWrite(
            TemplateSpec(name="tpl", command=["echo", "t"]),
            by="alice",
            audit=_note("template.create", "template", name="tpl"),
        ),
        JobConfigWrite(
            JobConfigSpec(name="fresh", macros={"A": "1"}),
            template=Ref(0),
            by="alice",
            audit=_note("jobconfig.create", "jobconfig", name="fresh"),
        ),
        ScheduleWrite(
            Ref(1),
            ScheduleSpec(interval_minutes=15, start_at=START, name="quarterly"),
            next_fire_at=START,
            by="alice",
            audit=_note("schedule.create", "schedule", jobconfig_id=Ref(1)),
        ),
        JobConfigWrite(
            JobConfigSpec(name="old", command=["true"], timeout=9),
            jobconfig_id=old.id,
            by="alice",
            audit=_note("jobconfig.update", "jobconfig"),
        ),
        ScheduleDelete(
            old.id, nightly.id, _note("schedule.delete", "schedule", jobconfig_id=old.id)
        ),
    ]


async def test_the_writes_commit_together_with_their_audit_rows(store: Store, db: Engine) -> None:
    old, nightly = await _existing(store)
    gone = ScheduleDelete(old.id, nightly.id + 1000, _note("schedule.delete", "schedule"))
    ids = await store.apply_writes([*_document(old, nightly), gone])
    tpl_id, fresh_id, sched_id = ids[0], ids[1], ids[2]
    assert ids[3:] == [old.id, nightly.id, None]  # a schedule already gone is no refusal
    assert isinstance(tpl_id, int) and isinstance(fresh_id, int) and isinstance(sched_id, int)

    fresh = await store.jobconfig_get(fresh_id)
    assert (fresh.name, fresh.template_id, fresh.owner, fresh.macros) == (
        "fresh", tpl_id, "alice", {"A": "1"},
    )  # fmt: skip
    assert [s.id for s in await store.schedules_list(fresh_id)] == [sched_id]
    assert (await store.jobconfig_get(old.id)).timeout == 9
    assert await store.schedules_list(old.id) == []

    with db.connect() as conn:
        rows = conn.execute(
            select(audit.c.action, audit.c.object_id, audit.c.details).order_by(audit.c.id)
        ).all()
    assert [(r.action, r.object_id) for r in rows] == [
        ("template.create", str(tpl_id)),
        ("jobconfig.create", str(fresh_id)),
        ("schedule.create", str(sched_id)),
        ("jobconfig.update", str(old.id)),
        ("schedule.delete", str(nightly.id)),
    ]
    # a reference among the details is written as the id it names
    assert rows[2].details == {"jobconfig_id": fresh_id}


def _taken_name(old: JobConfig) -> ApplyWrite:
    return JobConfigWrite(JobConfigSpec(name="old", command=["x"]), by="alice")


def _unknown_package(old: JobConfig) -> ApplyWrite:
    return JobConfigWrite(JobConfigSpec(name="other", package_id=999_999), by="alice")


def _moved_schedule(old: JobConfig) -> ApplyWrite:
    spec = ScheduleSpec(cron="0 4 * * *", name="later")
    return ScheduleWrite(old.id, spec, None, schedule_id=0, expected_version=1)


def _unknown_template(old: JobConfig) -> ApplyWrite:
    spec = JobConfigSpec(name="old", command=["true"], timeout=11)
    return JobConfigWrite(spec, template=999_999, jobconfig_id=old.id, by="alice")


@pytest.mark.parametrize(
    ("last", "error"),
    [
        (_taken_name, Conflict),
        (_unknown_package, NotFound),
        (_moved_schedule, NotFound),
        (_unknown_template, NotFound),
    ],
)
async def test_a_refused_last_write_leaves_nothing(
    store: Store, db: Engine, last: Any, error: type[Exception]
) -> None:
    old, nightly = await _existing(store)
    before = _counts(db)
    writes = [*_document(old, nightly), last(old)]
    with pytest.raises(WriteRefused) as refused:
        await store.apply_writes(writes)
    assert refused.value.index == len(writes) - 1
    assert isinstance(refused.value.error, error)

    assert _counts(db) == before
    with pytest.raises(NotFound):
        await store.template_get_by_name("tpl")
    with pytest.raises(NotFound):
        await store.jobconfig_get_by_name("fresh")
    assert await store.jobconfig_get(old.id) == old
    assert await store.schedules_list(old.id) == [nightly]  # the same row, not a copy


async def test_a_schedule_changed_since_the_plan_is_refused(store: Store, db: Engine) -> None:
    old, nightly = await _existing(store)
    spec = ScheduleSpec(cron="0 5 * * *", name="nightly")
    await store.schedule_replace(old.id, nightly.id, spec, next_fire_at=START)
    before = _counts(db)
    stale = ScheduleWrite(
        old.id, ScheduleSpec(cron="0 6 * * *", name="nightly"), START, nightly.id, nightly.version
    )
    with pytest.raises(WriteRefused) as refused:
        await store.apply_writes([_document(old, nightly)[0], stale])
    assert refused.value.index == 1 and isinstance(refused.value.error, Conflict)
    assert _counts(db) == before
    (kept,) = await store.schedules_list(old.id)
    assert kept.cron == "0 5 * * *"


async def test_concurrent_applies_crossing_the_same_rows_all_commit(store: Store) -> None:
    """Applies changing the same jobconfigs and schedules, listed in opposite orders,
    run at once: each commits whole (the store locks in one order, whatever the list's)."""
    a, b = await make_jobconfig(store, "a"), await make_jobconfig(store, "b")
    first = ScheduleSpec(cron="0 1 * * *", name="sa")
    second = ScheduleSpec(cron="0 2 * * *", name="sb")
    sa = await store.schedule_insert(a.id, first, next_fire_at=START)
    sb = await store.schedule_insert(b.id, second, next_fire_at=START)

    def writes(timeout: int, reverse: bool) -> list[ApplyWrite]:
        pairs: list[list[ApplyWrite]] = []
        for jc, sched in ((a, sa), (b, sb)):
            spec = dataclasses.replace(
                JobConfigSpec(name=jc.name, command=["true"]), timeout=timeout
            )
            sspec = ScheduleSpec(cron=sched.cron, name=sched.name, description=f"t{timeout}")
            pairs.append(
                [
                    JobConfigWrite(spec, jobconfig_id=jc.id, by="alice"),
                    ScheduleWrite(jc.id, sspec, START, sched.id),
                ]
            )
        if reverse:
            pairs.reverse()
        return [w for pair in pairs for w in pair]

    await asyncio.gather(*(store.apply_writes(writes(n, n % 2 == 1)) for n in range(1, 13)))
    timeouts = {(await store.jobconfig_get(jc.id)).timeout for jc in (a, b)}
    descriptions = {s.description for jc in (a, b) for s in await store.schedules_list(jc.id)}
    assert len(timeouts) == 1 and descriptions == {f"t{t}" for t in timeouts}


async def test_an_expectation_no_longer_met_refuses_the_list(store: Store, db: Engine) -> None:
    old, nightly = await _existing(store)
    seen = ((nightly.id, nightly.version),)
    holds: list[ApplyWrite] = [
        Expect("jobconfig", old.id, old.updated_at, seen),
        TemplateWrite(TemplateSpec(name="tpl", command=["x"]), by="alice"),
    ]
    assert (await store.apply_writes(holds))[0] is None  # an expectation writes nothing
    tpl = await store.template_get_by_name("tpl")

    later = ScheduleSpec(cron="0 5 * * *", name="nightly")
    await store.schedule_replace(old.id, nightly.id, later, next_fire_at=START)
    await store.template_update(tpl.id, {"command": ["y"]})
    before = _counts(db)
    first = JobConfigWrite(JobConfigSpec(name="fresh", command=["x"]), by="alice")
    stale: list[list[ApplyWrite]] = [
        # a schedule of the jobconfig changed since the plan read it
        [Expect("jobconfig", old.id, old.updated_at, seen)],
        # the template changed
        [Expect("template", tpl.id, tpl.updated_at)],
        # the jobconfig is gone
        [Expect("jobconfig", old.id + 1000, old.updated_at)],
    ]
    for expectation in stale:
        writes = [first, *expectation]
        with pytest.raises(WriteRefused) as refused:
            await store.apply_writes(writes)
        assert isinstance(refused.value.error, Stale) and refused.value.index == 1
        assert _counts(db) == before
