"""Definers and parameters: who decided what a job runs, recorded by the store (both
engines).

A jobconfig's and a template's ``definition_changed_by`` changes only when what their
jobs run really changes; a job snapshots its definers at submission (also when a
schedule fires); a session token's identity carries them with their users as they are.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobyard.core.errors import NotFound
from jobyard.core.models import JobConfigSpec, JobFilter, NewJob
from jobyard.core.schedules import FiringPlanner, ScheduleSpec, validate
from jobyard.core.templates import TemplateSpec
from jobyard.store.protocol import Store


async def _jobconfig(store: Store, name: str = "jc", **fields: object) -> int:
    spec = JobConfigSpec(name=name, command=["true"], **fields)  # type: ignore[arg-type]
    return (await store.jobconfig_insert(spec, owner="owner")).id


def _spec(**fields: Any) -> ScheduleSpec:
    return validate(ScheduleSpec(**fields), allow_seconds=False)


async def _definer(store: Store, jobconfig_id: int) -> str | None:
    return (await store.jobconfig_get(jobconfig_id)).definition_changed_by


async def test_a_jobconfig_is_defined_by_its_creator_and_by_real_changes(store: Store) -> None:
    jc_id = await _jobconfig(store, parameters=["B", "A", "B"])
    created = await store.jobconfig_get(jc_id)
    assert (created.definition_changed_by, created.parameters) == ("owner", ["A", "B"])
    assert created.definition_changed_at == created.created_at
    # Fields that do not decide what runs, and rewriting the same values: no change.
    await store.jobconfig_update(jc_id, {"description": "x", "max_concurrent": 2}, changed_by="eve")
    await store.jobconfig_update(
        jc_id, {"command": ["true"], "parameters": ["A", "B"], "macros": {}}, changed_by="eve"
    )
    same = await store.jobconfig_get(jc_id)
    assert (same.definition_changed_by, same.definition_changed_at) == (
        "owner",
        created.definition_changed_at,
    )
    for field, value in (
        ("command", ["echo", "x"]),
        ("macros", {"A": "1"}),
        ("parameters", ["C"]),
        ("entrypoint", None),  # unchanged (None): no change
    ):
        before = await _definer(store, jc_id)
        who = f"user-{field}"
        await store.jobconfig_update(jc_id, {field: value}, changed_by=who)
        assert await _definer(store, jc_id) == (before if field == "entrypoint" else who)
    with pytest.raises(NotFound):
        await store.jobconfig_update(999, {"command": ["x"]}, changed_by="eve")


async def test_macro_writes_define_jobconfigs_and_templates(store: Store) -> None:
    t = await store.template_insert(TemplateSpec(name="t", command=["true"]), owner="owner")
    jc_id = await _jobconfig(store, template_id=t.id, macros={"A": "1"})
    await store.macros_put("jobconfig", jc_id, [("A", "1", False, False)], updated_by="eve")
    assert await _definer(store, jc_id) == "owner"  # the same value
    await store.macros_put("jobconfig", jc_id, [("A", "2", False, False)], updated_by="eve")
    assert await _definer(store, jc_id) == "eve"
    await store.macros_put("jobconfig", jc_id, [("S", "enc", True, False)], updated_by="sam")
    assert await _definer(store, jc_id) == "sam"  # a secure write always counts
    await store.macro_delete("jobconfig", jc_id, "A", changed_by="dan")
    assert await _definer(store, jc_id) == "dan"
    # Template macros define the template; account and user macros define nothing.
    await store.macros_put("template", t.id, [("T", "1", False, False)], updated_by="tim")
    assert (await store.template_get(t.id)).definition_changed_by == "tim"
    await store.macros_put("template", t.id, [("T", "1", False, False)], updated_by="zed")
    assert (await store.template_get(t.id)).definition_changed_by == "tim"
    await store.macros_put("account", 0, [("X", "1", False, False)], updated_by="root")
    assert await _definer(store, jc_id) == "dan"


async def test_a_template_is_defined_by_what_its_children_run(store: Store) -> None:
    t = await store.template_insert(TemplateSpec(name="t", command=["true"]), owner="owner")
    assert t.definition_changed_by == "owner" and t.definition_changed_at == t.created_at
    await store.template_update(t.id, {"description": "d", "command": ["true"]}, changed_by="eve")
    assert (await store.template_get(t.id)).definition_changed_by == "owner"
    await store.template_update(t.id, {"command": ["false"]}, changed_by="eve")
    assert (await store.template_get(t.id)).definition_changed_by == "eve"
    # A clone and its copied jobconfigs are the cloner's definitions.
    await _jobconfig(store, "child", template_id=t.id)
    clone = await store.template_clone(t.id, name="c", owner="carl", jobconfig_prefix="c.")
    assert clone.template.definition_changed_by == "carl"
    assert [j.definition_changed_by for j in clone.jobconfigs] == ["carl"]


async def test_schedule_macros_define_the_jobconfig(store: Store) -> None:
    jc_id = await _jobconfig(store)
    when = datetime.now(UTC) + timedelta(days=1)
    spec = validate(ScheduleSpec(interval_minutes=60), allow_seconds=False)
    s = await store.schedule_insert(jc_id, spec, next_fire_at=when, changed_by="eve")
    assert await _definer(store, jc_id) == "owner"  # no macros
    with_macros = _spec(interval_minutes=60, macros={"M": "1"})
    s = await store.schedule_replace(
        jc_id, s.id, with_macros, next_fire_at=when, expected_version=s.version, changed_by="eve"
    )
    assert await _definer(store, jc_id) == "eve"
    paused = _spec(interval_minutes=60, macros={"M": "1"}, paused=True)
    await store.schedule_replace(jc_id, s.id, paused, next_fire_at=None, changed_by="pat")
    assert await _definer(store, jc_id) == "eve"  # same macros
    other = _spec(interval_minutes=5, name="other", macros={"N": "2"})
    await store.schedule_insert(jc_id, other, next_fire_at=when, changed_by="sid")
    assert await _definer(store, jc_id) == "sid"


async def test_jobs_snapshot_their_definers(store: Store) -> None:
    t = await store.template_insert(TemplateSpec(name="t", command=["true"]), owner="owner")
    jc_id = await _jobconfig(store, template_id=t.id)
    kw = {"macros": {}, "hold": True, "trigger": "api", "actor": "user:x", "reason": None}
    job = await store.job_submit_for_jobconfig(jc_id, submitted_by="owner", **kw)  # type: ignore[arg-type]
    assert job.definers == []  # the owner defined both: nobody else bounds the job
    await store.template_update(t.id, {"command": ["false"]}, changed_by="tina")
    await store.jobconfig_update(jc_id, {"macros": {"A": "1"}}, changed_by="eve")
    job = await store.job_submit_for_jobconfig(
        jc_id,
        submitted_by="eve",
        definers=("zoe", "tina"),
        **kw,  # type: ignore[arg-type]
    )
    assert job.definers == ["tina", "zoe"]  # sorted, once each, the submitter left out
    # A later change does not touch the snapshot.
    await store.jobconfig_update(jc_id, {"macros": {"A": "2"}}, changed_by="max")
    assert (await store.job_get(job.id)).definers == ["tina", "zoe"]
    adhoc = NewJob(
        jobconfig_id=None,
        package_id=None,
        entrypoint=None,
        command=["true"],
        macros={},
        timeout=0,
        success_exit_codes=[0],
        submitted_by="ann",
        definers=("ann", "bo"),
    )
    assert (await store.job_insert(adhoc, actor="user:ann", reason=None)).definers == ["bo"]


async def test_scheduled_firings_snapshot_the_definers(store: Store) -> None:
    t = await store.template_insert(TemplateSpec(name="t", command=["true"]), owner="owner")
    mine = await _jobconfig(store, "mine", template_id=t.id)
    edited = await _jobconfig(store, "edited", template_id=t.id)
    await store.jobconfig_update(edited, {"command": ["echo"]}, changed_by="eve")
    await store.template_update(t.id, {"command": ["false"]}, changed_by="tina")
    when = (datetime.now(UTC) - timedelta(seconds=2)).replace(microsecond=0)
    spec = validate(ScheduleSpec(cron="0 0 0 1 1 ?"), allow_seconds=True)
    for jc_id in (mine, edited):
        await store.schedule_insert(jc_id, spec, next_fire_at=when)
    fired = await store.schedules_fire_due(limit=10, planner=FiringPlanner(timedelta(minutes=1)))
    assert fired.jobs == 2
    jobs = {
        j.jobconfig_id: j for j in (await store.jobs_list(JobFilter(), cursor=None, limit=9)).items
    }
    # Stored as an array built in SQL (NULL where nobody else defined it).
    assert {n for n in jobs[mine].definers or [] if n} == {"tina"}
    assert {n for n in jobs[edited].definers or [] if n} == {"eve", "tina"}
    assert jobs[mine].submitted_by == "owner"


async def test_a_session_token_identity_carries_the_definers(store: Store) -> None:
    owner = await store.user_create(name="owner", role="admin", password_hash=None)
    eve = await store.user_create(name="eve", role="user", password_hash=None)
    await store.user_create(name="root", role="admin", password_hash=None)
    jc_id = await _jobconfig(store)
    kw = {"macros": {}, "hold": False, "trigger": "api", "actor": "user:x", "reason": None}
    job = await store.job_submit_for_jobconfig(
        jc_id,
        submitted_by="owner",
        definers=("eve", "gone"),
        **kw,  # type: ignore[arg-type]
    )
    await store.session_token_create(job_id=job.id, user_name="owner", token_hash="hs")
    found = await store.token_identity("hs")
    assert found is not None and found.user == owner
    assert [(name, u.id if u else None) for name, u in found.definers] == [
        ("eve", eve.id),
        ("gone", None),
    ]
    await store.user_deactivate(eve.id, actor="user:root")
    found = await store.token_identity("hs")
    assert found is not None
    assert [(n, u.active if u else None) for n, u in found.definers] == [
        ("eve", False),
        ("gone", None),
    ]
    personal = await store.token_insert(name="p", token_hash="hp", role="admin", user_id=owner.id)
    assert personal.job_id is None
    found = await store.token_identity("hp")
    assert found is not None and found.definers == ()
