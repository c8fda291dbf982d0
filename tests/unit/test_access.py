"""The policy engine of :mod:`jobyard.service.access` (pure functions, and the cache)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from jobyard.core.access import ACTIONS, AuditEntry, AuditFilter, Policy, check_policy
from jobyard.core.errors import Forbidden, InvalidInput, NotFound
from jobyard.service import access, auditlog, policies
from jobyard.service.access import allowed, visibility
from jobyard.service.context import Context, Principal

ALICE = Principal(name="alice", role="user", user_id=1, token_kind="personal")
BOB = Principal(name="bob", role="user", user_id=2, token_kind="personal")
ROOT = Principal(name="root", role="admin", user_id=3, token_kind="access")
LEGACY = Principal(name="old", role="user", user_id=None, token_kind="admin")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def grant(action: str, selector: str, resource: str = "jobconfigs", user_id: int = 1) -> Policy:
    return Policy(len(selector) + len(action), user_id, action, resource, selector, NOW)


def may(
    principal: Principal,
    policies: list[Policy],
    action: str,
    *,
    obj_id: int = 10,
    owner: str | None = "carol",
    template_id: int | None = None,
    resource: str = "jobconfigs",
) -> bool:
    return allowed(principal, policies, action, resource, obj_id, owner, template_id)


def test_admins_may_do_everything_without_policies() -> None:
    for action in ACTIONS:
        assert may(ROOT, [], action)
        assert may(ROOT, [], action, resource="templates", owner=None)


def test_owners_may_do_everything_to_their_own_objects() -> None:
    for action in ACTIONS:
        assert may(ALICE, [], action, owner="alice")
        assert not may(BOB, [], action, owner="alice")
    assert not may(ALICE, [], "view", owner=None)


def test_without_a_policy_nothing_is_allowed() -> None:
    for action in ACTIONS:
        assert not may(ALICE, [], action)
    assert not may(LEGACY, [grant("view", "*")], "view")


def test_a_policy_by_id_matches_only_that_object_and_resource() -> None:
    policies = [grant("edit", "10")]
    assert may(ALICE, policies, "edit", obj_id=10)
    assert not may(ALICE, policies, "edit", obj_id=11)
    assert not may(ALICE, policies, "edit", obj_id=10, resource="templates")


def test_a_star_policy_matches_every_object_of_its_resource() -> None:
    policies = [grant("execute", "*")]
    assert may(ALICE, policies, "execute", obj_id=1)
    assert may(ALICE, policies, "execute", obj_id=99, template_id=4)
    assert not may(ALICE, policies, "execute", resource="templates")


def test_a_template_policy_matches_the_jobconfigs_of_that_template() -> None:
    policies = [grant("view", "template:4")]
    assert may(ALICE, policies, "view", template_id=4)
    assert not may(ALICE, policies, "view", template_id=5)
    assert not may(ALICE, policies, "view", template_id=None)
    # It is not a grant on the template itself (nor on jobconfig 4).
    assert not may(ALICE, policies, "view", obj_id=4, resource="templates")
    assert not may(ALICE, policies, "view", obj_id=4)


@pytest.mark.parametrize("granted", ["edit", "delete", "execute"])
def test_every_action_implies_view_and_nothing_else(granted: str) -> None:
    policies = [grant(granted, "10")]
    assert may(ALICE, policies, granted)
    assert may(ALICE, policies, "view")
    for other in set(ACTIONS) - {granted, "view"}:
        assert not may(ALICE, policies, other), (granted, other)


def test_view_implies_nothing_else() -> None:
    policies = [grant("view", "*")]
    assert may(ALICE, policies, "view")
    for other in ("edit", "delete", "execute"):
        assert not may(ALICE, policies, other)


def test_policies_of_other_users_do_not_count() -> None:
    bobs = [grant("edit", "*", user_id=BOB.user_id or 0)]
    assert may(BOB, bobs, "edit")
    assert not may(ALICE, bobs, "edit")
    assert not may(ALICE, bobs, "view")


def test_visibility_filters() -> None:
    assert visibility(ROOT, [], "jobconfigs") is None
    assert visibility(ALICE, [grant("execute", "*")], "jobconfigs") is None
    assert visibility(ALICE, [grant("execute", "*")], "templates") is not None
    policies = [
        grant("view", "7"),
        grant("delete", "template:3"),
        grant("view", "8", resource="templates"),
        grant("view", "9", user_id=2),
    ]
    seen = visibility(ALICE, policies, "jobconfigs")
    assert seen is not None
    assert (seen.owner, seen.ids, seen.template_ids) == ("alice", {7}, {3})
    assert seen.admits(1, "alice") and seen.admits(7, "carol") and seen.admits(2, None, 3)
    assert not seen.admits(8, "carol") and not seen.admits(9, None, 4)
    templates = visibility(ALICE, policies, "templates")
    assert templates is not None and templates.ids == {8} and not templates.template_ids


def test_check_policy_says_what_is_allowed() -> None:
    assert check_policy("view", "jobconfigs", "template:3") == ("view", "jobconfigs", "template:3")
    with pytest.raises(InvalidInput, match="view, edit, delete, execute"):
        check_policy("run", "jobconfigs", "*")
    with pytest.raises(InvalidInput, match="jobconfigs, templates"):
        check_policy("view", "jobs", "*")
    with pytest.raises(InvalidInput, match="template:<id>"):
        check_policy("view", "jobconfigs", "nope")
    with pytest.raises(InvalidInput, match=r"an id, '\*'$"):
        check_policy("view", "templates", "template:1")


# -- with a fake store -------------------------------------------------------------------


@dataclass
class Obj:
    id: int
    owner: str | None
    template_id: int | None = None


class FakeStore:
    def __init__(self, policies: list[Policy]) -> None:
        self.policies = policies
        self.reads = 0
        self.audit: list[dict[str, Any]] = []
        self.fail = False

    async def policies_for_user(self, user_id: int) -> list[Policy]:
        self.reads += 1
        return [p for p in self.policies if p.user_id == user_id]

    async def jobconfig_get(self, jobconfig_id: int) -> Obj:
        if jobconfig_id == 10:
            return Obj(10, "carol", 2)
        raise NotFound(f"jobconfig {jobconfig_id} does not exist")

    async def audit_insert(self, **row: Any) -> None:
        if self.fail:
            raise RuntimeError("database is gone")
        self.audit.append(row)

    async def audit_list(self, flt: AuditFilter, *, cursor: str | None, limit: int) -> Any:
        return [flt, cursor, limit]


def ctx_of(store: FakeStore) -> Context:
    """A context of its own, hence a policy cache of its own."""
    return Context(settings=None, store=store, blobs=None, bus=None, retention=None)  # type: ignore[arg-type]


async def test_require_answers_404_when_invisible_and_403_when_only_visible() -> None:
    store = FakeStore([grant("view", "10"), grant("execute", "template:2")])
    ctx = ctx_of(store)
    await access.require(ctx, ALICE, "view", "jobconfigs", Obj(10, "carol"))
    await access.require(ctx, ALICE, "execute", "jobconfigs", Obj(11, "carol", 2))
    await access.require(ctx, ALICE, "delete", "jobconfigs", Obj(12, "alice"))
    await access.require(ctx, ROOT, "delete", "templates", Obj(12, None))
    with pytest.raises(Forbidden, match="may view jobconfig 10 but not edit"):
        await access.require(ctx, ALICE, "edit", "jobconfigs", Obj(10, "carol"))
    with pytest.raises(NotFound) as missing:
        await access.require(ctx, ALICE, "edit", "jobconfigs", Obj(13, "carol"))
    assert missing.value.message == "jobconfig 13 does not exist"
    assert missing.value.details == {"jobconfig_id": 13}
    with pytest.raises(NotFound, match="template 10 does not exist"):
        await access.require(ctx, ALICE, "view", "templates", Obj(10, "carol"))
    assert store.reads == 1  # cached for the user


@dataclass
class FakeJob:
    id: int
    jobconfig_id: int | None
    submitted_by: str | None


async def test_a_job_follows_its_jobconfig_and_its_submitter() -> None:
    ctx = ctx_of(FakeStore([grant("view", "template:2")]))
    job = FakeJob(5, 10, "carol")
    await access.require_job(ctx, ALICE, "view", job)  # type: ignore[arg-type]
    await access.require_job(ctx, ROOT, "execute", job)  # type: ignore[arg-type]
    await access.require_job(ctx, BOB, "execute", FakeJob(6, 10, "bob"))  # type: ignore[arg-type]
    with pytest.raises(Forbidden, match="may view job 5 but not execute"):
        await access.require_job(ctx, ALICE, "execute", job)  # type: ignore[arg-type]
    for principal, target in [
        (BOB, job),
        (ALICE, FakeJob(7, None, "carol")),  # ad-hoc: its submitter's
        (ALICE, FakeJob(8, 99, "carol")),  # its jobconfig is gone
    ]:
        with pytest.raises(NotFound) as missing:
            await access.require_job(ctx, principal, "view", target)  # type: ignore[arg-type]
        assert missing.value.message == f"job {target.id} does not exist"


async def test_policy_cache_is_dropped_on_change() -> None:
    store = FakeStore([])
    ctx = ctx_of(store)
    assert not await access.can(ctx, ALICE, "view", "jobconfigs", Obj(10, None))
    store.policies.append(grant("view", "10"))
    assert not await access.can(ctx, ALICE, "view", "jobconfigs", Obj(10, None))  # cached
    access.forget_policies(ctx, ALICE.user_id)
    assert await access.can(ctx, ALICE, "view", "jobconfigs", Obj(10, None))
    assert await access.policies_of(ctx, ROOT) == ()
    assert await access.visible_jobconfig_filter(ctx, ROOT) is None
    flt = await access.visible_jobconfig_filter(ctx, ALICE)
    assert flt is not None and flt.ids == {10}
    assert await access.visible_template_filter(ctx, ALICE) is not None


async def test_record_scrubs_secrets_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore([])
    ctx = ctx_of(store)
    details = {"macro": "DB_PASSWORD", "value": "hunter2", "nested": {"Token": "t"}}
    await auditlog.record(ctx, ALICE, "macro.set", "jobconfig", 5, details, "10.1.2.3")
    await auditlog.record(ctx, "scheduler", "job.submit", "job", None)
    (first, second) = store.audit
    assert first == {
        "actor": "user:alice",
        "action": "macro.set",
        "object_type": "jobconfig",
        "object_id": "5",
        "details": {"macro": "DB_PASSWORD", "value": "***", "nested": {"Token": "***"}},
        "remote_addr": "10.1.2.3",
    }
    assert "hunter2" not in repr(store.audit)
    assert (second["actor"], second["object_id"], second["details"]) == ("scheduler", None, None)
    store.fail = True
    await auditlog.record(ctx, None, "job.cancel", "job", 1)
    assert "could not record audit entry job.cancel" in caplog.text


async def test_audit_listing_is_for_admins_and_filters_are_normalized() -> None:
    ctx = ctx_of(FakeStore([]))
    with pytest.raises(Forbidden) as refused:
        await auditlog.audit_list(ctx, ALICE, AuditFilter(), cursor=None, limit=10)
    assert refused.value.details == {"required_role": "admin"}
    flt = auditlog.audit_filter(actor="alice", action="", since=datetime(2026, 1, 1))
    assert flt.actor == "user:alice" and flt.action is None and flt.since == NOW
    assert auditlog.audit_filter(actor="scheduler").actor == "scheduler"
    assert auditlog.audit_filter(actor="user:bob").actor == "user:bob"
    assert await auditlog.audit_list(ctx, ROOT, flt, cursor="c", limit=10) == [flt, "c", 10]


async def test_policy_management_is_for_admins_only() -> None:
    ctx = ctx_of(FakeStore([]))
    with pytest.raises(Forbidden):
        await policies.list_policies(ctx, ALICE, 1)
    with pytest.raises(Forbidden):
        await policies.grant(ctx, ALICE, 1, action="view", resource="jobconfigs", selector="*")
    with pytest.raises(Forbidden):
        await policies.revoke(ctx, ALICE, 1, 1)


def test_audit_entry_record_shape() -> None:
    entry = AuditEntry(1, NOW, "system", "a", "t", None, None, None)
    assert entry.object_id is None


def test_cli_parsers_of_the_audit_command() -> None:
    import typer

    from jobyard.cli.access import parse_object, parse_since

    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert parse_since(None) is None
    assert parse_since("30m", now=now) == "2026-01-02T11:30:00+00:00"
    assert parse_since("2d", now=now) == "2025-12-31T12:00:00+00:00"
    assert parse_since("1w", now=now) == "2025-12-26T12:00:00+00:00"
    assert parse_since("2026-01-01T00:00:00Z") == "2026-01-01T00:00:00+00:00"
    with pytest.raises(typer.BadParameter):
        parse_since("yesterday")
    assert parse_object(None) == (None, None)
    assert parse_object("jobconfig") == ("jobconfig", None)
    assert parse_object("jobconfig:12") == ("jobconfig", "12")
    for bad in (":12", "jobconfig:"):
        with pytest.raises(typer.BadParameter):
            parse_object(bad)
