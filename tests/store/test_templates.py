"""Templates: CRUD, delete rules, clone, and jobs inheriting what to run (both engines)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert, select

from jobyard.core.errors import Conflict, InvalidInput, NotFound
from jobyard.core.models import JobConfigSpec, JobFilter
from jobyard.core.schedules import FiringPlanner, ScheduleSpec, validate
from jobyard.core.templates import RunTarget, effective_target
from jobyard.store.protocol import Store
from jobyard.store.schema import macros
from tests.store.conftest import make_template


async def _package(store: Store, entrypoints: tuple[str, ...] = ("main", "other")) -> int:
    pkg, _ = await store.package_insert(
        sha256="b" * 64,
        filename="p.zip",
        size=1,
        kind="zip",
        entrypoints={e: {"command": ["x"]} for e in entrypoints},
    )
    return pkg.id


async def test_crud_names_and_listing(store: Store) -> None:
    pkg = await _package(store)
    t = await make_template(store, "acme", command=None, package_id=pkg, entrypoint="main")
    assert (t.name, t.package_id, t.entrypoint, t.command, t.owner) == (
        "acme", pkg, "main", None, "alice",
    )  # fmt: skip
    assert t.description == "" and t.created_at.tzinfo is UTC
    assert await store.template_get(t.id) == t
    assert await store.template_get_by_name("acme") == t
    with pytest.raises(Conflict, match="'acme'"):
        await make_template(store, "acme")
    with pytest.raises(NotFound, match="package 99"):
        await make_template(store, "x", package_id=99)
    with pytest.raises(NotFound):
        await store.template_get(999)
    with pytest.raises(NotFound):
        await store.template_get_by_name("nope")
    b = await make_template(store, "beta")
    changed = await store.template_update(b.id, {"description": "d", "command": ["ls"]})
    assert (changed.description, changed.command) == ("d", ["ls"])
    assert changed.updated_at >= b.updated_at
    with pytest.raises(Conflict, match="'acme'"):
        await store.template_update(b.id, {"name": "acme"})
    with pytest.raises(InvalidInput, match="bogus"):
        await store.template_update(b.id, {"bogus": 1})
    with pytest.raises(NotFound):
        await store.template_update(999, {"description": "x"})
    page = await store.templates_list(cursor=None, limit=1)
    assert [x.name for x in page.items] == ["acme"] and page.next_cursor
    rest = await store.templates_list(cursor=page.next_cursor, limit=10)
    assert [x.name for x in rest.items] == ["beta"] and rest.next_cursor is None
    assert await store.package_get_by_sha256("b" * 64) is not None
    assert await store.package_get_by_sha256("c" * 64) is None


async def test_jobconfigs_name_existing_templates_and_block_their_delete(
    store: Store, db: Engine
) -> None:
    t = await make_template(store)
    with pytest.raises(NotFound, match="template 999"):
        await store.jobconfig_insert(JobConfigSpec(name="jc", template_id=999))
    jc = await store.jobconfig_insert(JobConfigSpec(name="jc", template_id=t.id))
    assert jc.template_id == t.id
    with pytest.raises(NotFound, match="template 998"):
        await store.jobconfig_update(jc.id, {"template_id": 998})
    assert [j.id for j in await store.template_jobconfigs(t.id)] == [jc.id]
    with pytest.raises(NotFound):
        await store.template_jobconfigs(999)
    with pytest.raises(Conflict, match="used by 1 jobconfig"):
        await store.template_delete(t.id)
    await store.jobconfig_update(jc.id, {"template_id": None})
    with db.begin() as conn:
        conn.execute(insert(macros).values(
            scope="template", scope_id=t.id, name="K", value="v", secure=False,
            updated_at=datetime.now(UTC),
        ))  # fmt: skip
    await store.template_delete(t.id)
    with pytest.raises(NotFound):
        await store.template_get(t.id)
    with pytest.raises(NotFound):
        await store.template_delete(t.id)
    with db.begin() as conn:
        assert conn.execute(select(macros)).all() == []


def test_the_inheritance_rule() -> None:
    tpl = RunTarget(7, "main", None)
    assert effective_target(RunTarget(None, None, None), tpl) == tpl
    assert effective_target(RunTarget(None, "other", None), tpl) == RunTarget(7, "other", None)
    assert effective_target(RunTarget(None, None, ["ls"]), tpl) == RunTarget(7, None, ["ls"])
    assert effective_target(RunTarget(8, None, None), tpl) == RunTarget(8, None, None)
    assert effective_target(RunTarget(None, None, ["ls"]), None) == RunTarget(None, None, ["ls"])


async def test_jobs_snapshot_the_template_target(store: Store) -> None:
    pkg = await _package(store)
    t = await make_template(store, command=None, package_id=pkg, entrypoint="main")
    plain = await store.jobconfig_insert(JobConfigSpec(name="plain", template_id=t.id))
    own = await store.jobconfig_insert(
        JobConfigSpec(name="own", template_id=t.id, entrypoint="other")
    )
    alone = await store.jobconfig_insert(JobConfigSpec(name="alone", command=["true"]))
    kw = {"macros": {}, "hold": False, "trigger": "api", "submitted_by": "bob", "actor": "a"}
    job = await store.job_submit_for_jobconfig(plain.id, reason=None, **kw)  # type: ignore[arg-type]
    assert (job.package_id, job.entrypoint, job.command, job.template_id) == (
        pkg, "main", None, t.id,
    )  # fmt: skip
    assert (await store.job_get(job.id)).template_id == t.id
    job = await store.job_submit_for_jobconfig(own.id, reason=None, **kw)  # type: ignore[arg-type]
    assert (job.package_id, job.entrypoint, job.template_id) == (pkg, "other", t.id)
    job = await store.job_submit_for_jobconfig(alone.id, reason=None, **kw)  # type: ignore[arg-type]
    assert (job.package_id, job.command, job.template_id) == (None, ["true"], None)


async def test_scheduled_firings_snapshot_the_template_target(store: Store) -> None:
    t = await make_template(store, command=["echo", "from-template"])
    inherits = await store.jobconfig_insert(
        JobConfigSpec(name="inherits", template_id=t.id), owner="alice"
    )
    own = await store.jobconfig_insert(
        JobConfigSpec(name="own", template_id=t.id, command=["echo", "own"]), owner="alice"
    )
    alone = await store.jobconfig_insert(JobConfigSpec(name="alone", command=["true"]))
    when = (datetime.now(UTC) - timedelta(seconds=2)).replace(microsecond=0)
    spec = validate(ScheduleSpec(cron="0 0 0 1 1 ?"), allow_seconds=True)
    for jc in (inherits, own, alone):
        await store.schedule_insert(jc.id, spec, next_fire_at=when)
    fired = await store.schedules_fire_due(limit=10, planner=FiringPlanner(timedelta(minutes=1)))
    assert fired.jobs == 3
    page = await store.jobs_list(JobFilter(), cursor=None, limit=10)
    by_config = {j.jobconfig_id: j for j in page.items}
    assert (by_config[inherits.id].command, by_config[inherits.id].template_id) == (
        ["echo", "from-template"], t.id,
    )  # fmt: skip
    assert (by_config[own.id].command, by_config[own.id].template_id) == (["echo", "own"], t.id)
    assert (by_config[alone.id].command, by_config[alone.id].template_id) == (["true"], None)


async def test_clone_with_and_without_jobconfigs(store: Store, db: Engine) -> None:
    t = await make_template(store, "acme", description="d")
    jc = await store.jobconfig_insert(
        JobConfigSpec(name="etl", template_id=t.id, max_concurrent=3, macros={"A": "1"})
    )
    with db.begin() as conn:
        now = datetime.now(UTC)
        conn.execute(insert(macros), [
            {"scope": "template", "scope_id": t.id, "name": "P", "value": "v", "secure": False,
             "updated_at": now},
            {"scope": "template", "scope_id": t.id, "name": "S", "value": "xx", "secure": True,
             "updated_at": now},
            {"scope": "jobconfig", "scope_id": jc.id, "name": "J", "value": "w", "secure": False,
             "updated_at": now},
        ])  # fmt: skip
    only = await store.template_clone(t.id, name="copy", owner="bob")
    assert (only.template.name, only.template.description, only.template.command) == (
        "copy", "d", ["echo", "template"],
    )  # fmt: skip
    assert only.template.owner == "bob" and only.jobconfigs == []
    assert only.secure_macros_skipped == {"template": ["S"]}
    full = await store.template_clone(t.id, name="globex", owner="bob", jobconfig_prefix="g-")
    (copy,) = full.jobconfigs
    assert (copy.name, copy.template_id, copy.max_concurrent, copy.macros, copy.owner) == (
        "g-etl", full.template.id, 3, {"A": "1"}, "bob",
    )  # fmt: skip
    with db.begin() as conn:
        rows = conn.execute(
            select(macros.c.scope, macros.c.scope_id, macros.c.name, macros.c.value)
        ).all()
    copied = {(r.scope, r.scope_id, r.name, r.value) for r in rows}
    assert ("template", full.template.id, "P", "v") in copied
    assert ("jobconfig", copy.id, "J", "w") in copied
    assert not any(r.name == "S" and r.scope_id != t.id for r in rows)
    with pytest.raises(Conflict, match="'g-etl'"):
        await store.template_clone(t.id, name="third", owner=None, jobconfig_prefix="g-")
    with pytest.raises(NotFound):
        await store.template_get_by_name("third")  # all or nothing
    with pytest.raises(Conflict):
        await store.template_clone(t.id, name="copy", owner=None)
    with pytest.raises(NotFound):
        await store.template_clone(999, name="zzz", owner=None)
