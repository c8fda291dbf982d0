"""The macros mixin: levels, the jobconfig field, secure rules, sources of a job."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from jobyard.core.errors import InvalidInput, NotFound
from jobyard.core.macros import StoredMacro
from jobyard.store.protocol import Store
from tests.store.conftest import make_jobconfig, new_job


def _add_user(db: Engine, name: str) -> int:
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (name, role, active, created_at, updated_at) "
                "VALUES (:n, 'user', :t, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            {"n": name, "t": True},
        )
        return int(conn.execute(text("SELECT id FROM users WHERE name = :n"), {"n": name}).one()[0])


def _add_template(db: Engine, name: str) -> int:
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO templates (name, description, created_at, updated_at) "
                "VALUES (:n, '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            {"n": name},
        )
        row = conn.execute(text("SELECT id FROM templates WHERE name = :n"), {"n": name}).one()
        return int(row[0])


def _set_template(db: Engine, jobconfig_id: int, template_id: int) -> None:
    with db.begin() as conn:
        conn.execute(
            text("UPDATE jobconfigs SET template_id = :t WHERE id = :j"),
            {"t": template_id, "j": jobconfig_id},
        )


def _names(rows: list[StoredMacro]) -> dict[str, tuple[str, bool]]:
    return {m.name: (m.value, m.secure) for m in rows}


async def test_account_level_put_list_delete(store: Store) -> None:
    assert await store.macros_list("account", 0) == []
    rows = await store.macros_put(
        "account", 0, [("B", "2", False, False), ("A", "k1:enc", True, False)], updated_by="root"
    )
    assert [m.name for m in rows] == ["A", "B"]
    assert _names(rows) == {"A": ("k1:enc", True), "B": ("2", False)}
    assert rows[0].updated_by == "root" and rows[0].updated_at is not None
    rows = await store.macros_put("account", 0, [("B", "3", False, False)], updated_by=None)
    assert _names(rows)["B"] == ("3", False)
    await store.macro_delete("account", 0, "B")
    assert _names(await store.macros_list("account", 0)) == {"A": ("k1:enc", True)}
    with pytest.raises(NotFound):
        await store.macro_delete("account", 0, "B")


async def test_secure_cannot_become_plain_but_can_be_replaced(store: Store) -> None:
    await store.macros_put("account", 0, [("S", "k1:one", True, False)], updated_by=None)
    with pytest.raises(InvalidInput, match="delete it and create it again"):
        await store.macros_put("account", 0, [("S", "clear", False, False)], updated_by=None)
    rows = await store.macros_put("account", 0, [("S", "k1:two", True, False)], updated_by=None)
    assert _names(rows) == {"S": ("k1:two", True)}
    # only_if_new: an import of the name without a value keeps the existing value.
    rows = await store.macros_put("account", 0, [("S", "k1:empty", True, True)], updated_by=None)
    assert _names(rows) == {"S": ("k1:two", True)}
    # A failed batch changes nothing (one transaction).
    with pytest.raises(InvalidInput):
        await store.macros_put(
            "account", 0, [("NEW", "x", False, False), ("S", "y", False, False)], updated_by=None
        )
    assert "NEW" not in _names(await store.macros_list("account", 0))


async def test_unknown_objects_and_levels(store: Store) -> None:
    for scope in ("template", "user", "jobconfig"):
        with pytest.raises(NotFound):
            await store.macros_list(scope, 999)
        with pytest.raises(NotFound):
            await store.macros_put(scope, 999, [("A", "1", False, False)], updated_by=None)
    with pytest.raises(InvalidInput):
        await store.macros_list("job", 1)
    with pytest.raises(InvalidInput):
        await store.macros_list("account", 3)


async def test_jobconfig_plain_in_field_secure_in_table(store: Store) -> None:
    jc = await make_jobconfig(store)
    await store.jobconfig_update(jc.id, {"macros": {"P": "field", "X": "plain-first"}})
    rows = await store.macros_put(
        "jobconfig",
        jc.id,
        [("Q", "q", False, False), ("X", "k1:sec", True, False)],
        updated_by=None,
    )
    assert _names(rows) == {"P": ("field", False), "Q": ("q", False), "X": ("k1:sec", True)}
    # Plain values live in the jobconfig's field (what apply/export use); X moved out of it.
    assert (await store.jobconfig_get(jc.id)).macros == {"P": "field", "Q": "q"}
    with pytest.raises(InvalidInput):
        await store.macros_put("jobconfig", jc.id, [("X", "clear", False, False)], updated_by=None)
    await store.macro_delete("jobconfig", jc.id, "P")
    await store.macro_delete("jobconfig", jc.id, "X")
    assert (await store.jobconfig_get(jc.id)).macros == {"Q": "q"}
    assert _names(await store.macros_list("jobconfig", jc.id)) == {"Q": ("q", False)}
    assert await store.macros_delete_of("jobconfig", jc.id) == 0


async def test_sources_of_a_job(store: Store, db: Engine) -> None:
    alice = _add_user(db, "alice")
    bob = _add_user(db, "bob")
    tpl = _add_template(db, "tpl")
    jc = await make_jobconfig(store)
    _set_template(db, jc.id, tpl)
    await store.jobconfig_update(jc.id, {"macros": {"J": "jc"}})
    await store.macros_put("account", 0, [("A", "acc", False, False)], updated_by=None)
    await store.macros_put("template", tpl, [("T", "tpl", False, False)], updated_by=None)
    await store.macros_put("user", alice, [("U", "alice", False, False)], updated_by=None)
    await store.macros_put("user", bob, [("U", "bob", False, False)], updated_by=None)
    await store.macros_put("jobconfig", jc.id, [("S", "k:s", True, False)], updated_by=None)

    src = await store.macro_sources(jobconfig_id=jc.id, user_name="alice")
    assert [m.name for m in src.account] == ["A"]
    assert [m.value for m in src.template] == ["tpl"] and src.template_id == tpl
    assert [m.value for m in src.user] == ["alice"] and src.user_name == "alice"
    assert src.jobconfig_plain == {"J": "jc"}
    assert [m.name for m in src.jobconfig_secure] == ["S"]
    # Default user: the jobconfig's owner (scheduled jobs); none here -> no user level.
    assert (await store.macro_sources(jobconfig_id=jc.id)).user == []
    # An ad-hoc job: account and user levels only.
    adhoc = await store.macro_sources(jobconfig_id=None, user_name="bob")
    assert adhoc.template == [] and adhoc.jobconfig_plain == {} and adhoc.template_id is None
    assert [m.value for m in adhoc.user] == ["bob"]
    assert await store.macro_user_id("bob") == bob
    assert await store.macro_user_id("nobody") is None
    assert await store.macros_delete_of("user", bob) == 1


async def test_resolved_record_and_reencrypt(store: Store) -> None:
    job = await store.job_insert(new_job(), actor="test", reason=None)
    assert job.resolved_macros is None
    await store.job_acquire(worker_id="w", pool="default", limit=1, lease_seconds=60)
    record = {"A": {"level": "job", "secure": False, "value": "1"}}
    init = {"resolved": record, "user_name": None, "token_hash": None}
    assert await store.job_initialize(job.id, worker_id="w", **init) is None
    assert (await store.job_get(job.id)).resolved_macros == record
    with pytest.raises(NotFound):
        await store.job_initialize(job.id + 100, worker_id="w", **init)

    await store.macros_put(
        "account", 0, [("S1", "old:1", True, False), ("P", "plain", False, False)], updated_by=None
    )
    seen: list[str] = []

    def transform(m: StoredMacro) -> str:
        seen.append(m.name)
        return "new:" + m.value

    assert await store.macros_reencrypt(transform) == 1
    assert seen == ["S1"]
    assert _names(await store.macros_list("account", 0)) == {
        "P": ("plain", False),
        "S1": ("new:old:1", True),
    }
