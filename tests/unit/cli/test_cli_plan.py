"""The apply plan: desired jobconfigs against current ones, as pure data."""

from __future__ import annotations

from typing import Any

from jobyard.cli.plan import (
    Action,
    FieldChange,
    PendingPackage,
    compute_plan,
    format_change,
    plan_jobconfig,
)
from jobyard.cli.yamlspec import spec_defaults


def desired(**fields: Any) -> dict[str, Any]:
    return {**spec_defaults(), "name": "a", **fields}


def current(**fields: Any) -> dict[str, Any]:
    return {**desired(**fields), "id": 7, "created_at": "x", "updated_at": "y"}


def test_absent_is_created_showing_non_default_fields() -> None:
    item = plan_jobconfig(desired(timeout=5, command=["x"]), None)
    assert item.action is Action.CREATE
    assert item.jobconfig_id is None
    assert item.changes == (
        FieldChange("command", None, ["x"]),
        FieldChange("timeout", None, 5),
    )


def test_equal_is_unchanged() -> None:
    item = plan_jobconfig(desired(command=["x"]), current(command=["x"]))
    assert item.action is Action.UNCHANGED
    assert item.changes == ()
    assert item.jobconfig_id == 7


def test_differences_are_listed_old_to_new() -> None:
    item = plan_jobconfig(
        desired(timeout=45, macros={"A": "2"}), current(timeout=30, macros={"A": "1"})
    )
    assert item.action is Action.UPDATE
    assert item.changes == (
        FieldChange("macros", {"A": "1"}, {"A": "2"}),
        FieldChange("timeout", 30, 45),
    )
    assert format_change(item.changes[1]) == "timeout: 30 → 45"
    assert format_change(item.changes[0]) == "macros: {A: 1} → {A: 2}"


def test_equivalent_values_are_not_changes() -> None:
    here = desired(success_exit_codes=[3, 0, 0], description="")
    there = current(success_exit_codes=[0, 3], description=None)
    assert plan_jobconfig(here, there).action is Action.UNCHANGED


def test_fields_the_server_leaves_out_count_as_defaults() -> None:
    there = {"id": 1, "name": "a"}
    assert plan_jobconfig(desired(), there).action is Action.UNCHANGED
    assert plan_jobconfig(desired(pool="big"), there).changes == (
        FieldChange("pool", "default", "big"),
    )


def test_a_pending_package_is_always_a_change() -> None:
    pending = PendingPackage("etl", "ab" * 32)
    item = plan_jobconfig(
        desired(package_id=pending, entrypoint="m"), current(package_id=3, entrypoint="m")
    )
    assert item.action is Action.UPDATE
    assert format_change(item.changes[0]) == f"package_id: 3 → <new package etl {'ab' * 6}>"


def test_compute_plan_keeps_file_order() -> None:
    plan = compute_plan(
        [desired(name="b"), desired(name="a", timeout=1), desired(name="c")],
        {"a": current(name="a"), "c": current(name="c")},
    )
    assert [(p.name, p.action) for p in plan] == [
        ("b", Action.CREATE),
        ("a", Action.UPDATE),
        ("c", Action.UNCHANGED),
    ]


def test_action_words() -> None:
    assert [a.done for a in Action] == ["created", "updated", "unchanged", "failed", "deleted"]
    assert format_change(FieldChange("description", "", "x y")) == "description: '' → 'x y'"
    assert format_change(FieldChange("enabled", None, False), created=True) == "enabled: false"


def test_parameters_compare_as_a_set() -> None:
    assert plan_jobconfig(
        desired(parameters=["B", "A"]), current(parameters=["A", "B"])
    ).action is (Action.UNCHANGED)
    item = plan_jobconfig(desired(parameters=["A"]), current(parameters=["A", "B"]))
    assert item.action is Action.UPDATE
    assert item.changes == (FieldChange("parameters", ["A", "B"], ["A"]),)
