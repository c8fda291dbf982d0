"""The pure rules of least authority: loader names, parameters, run-time caps, the
``adhoc`` policy resource, and how a bounded job token's rights intersect."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobyard.core.access import Policy, check_policy
from jobyard.core.errors import Forbidden, InvalidInput
from jobyard.core.macros import (
    LOADER_MACROS,
    check_no_loader_names,
    check_parameter_names,
    check_run_macro_limits,
    run_macros_size,
    steers_loader,
)
from jobyard.core.users import User
from jobyard.service.access import Intersection, Visibility, allowed, refuse_job_token, visibility
from jobyard.service.auth import definer_principal
from jobyard.service.context import Principal

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ALICE = Principal(name="alice", role="user", user_id=1, token_kind="personal")
EVE = Principal(name="eve", role="user", user_id=2, token_kind="definer")
ROOT_JOB = Principal(
    name="root", role="admin", user_id=3, token_kind="session", job_id=9, bounded_by=(EVE,)
)


def test_loader_names() -> None:
    for name in ("PATH", "LD_PRELOAD", "LD_AUDIT", "DYLD_INSERT_LIBRARIES", "PYTHONPATH",
                 "BASH_ENV", "NODE_OPTIONS", "GLIBC_TUNABLES", "HOME"):  # fmt: skip
        assert steers_loader(name), name
    for name in ("TMPDIR", "DAY", "DB_HOST", "LDAP_URL", "PATHS", "OLD_PATH"):
        assert not steers_loader(name), name
    assert all(n == n.upper() for n in LOADER_MACROS)
    with pytest.raises(InvalidInput, match="LD_PRELOAD, PATH: names that steer") as info:
        check_no_loader_names({"PATH": "x", "DAY": "1", "LD_PRELOAD": "y"}, "jobconfig 7")
    assert info.value.details["macros"] == ["LD_PRELOAD", "PATH"]
    assert "jobconfig 7" in info.value.message
    check_no_loader_names({"DAY": "1", "TMPDIR": "/tmp"})


def test_parameter_names() -> None:
    assert check_parameter_names(["B", "A", "B"]) == ["A", "B"]
    for bad, words in (
        ("1X", "invalid parameter"),
        ("PATH", "steers how programs are found"),
        ("SESSION_ID", "execution macro"),
        ("JOB_PAYLOAD_DIR", "execution macro"),
    ):
        with pytest.raises(InvalidInput, match=words):
            check_parameter_names([bad])
    with pytest.raises(InvalidInput, match="at most 200"):
        check_parameter_names([f"P{i}" for i in range(201)])


def test_run_macro_caps_count_names_and_values_as_utf8() -> None:
    assert run_macros_size({"AB": "é"}) == 4
    check_run_macro_limits({"A": "x" * 9}, max_count=1, max_bytes=10)
    with pytest.raises(InvalidInput, match="2 given, at most 1 allowed"):
        check_run_macro_limits({"A": "", "B": ""}, max_count=1, max_bytes=10)
    with pytest.raises(InvalidInput, match=r"11 bytes .* at most 10 bytes"):
        check_run_macro_limits({"A": "x" * 10}, max_count=1, max_bytes=10)


def test_the_adhoc_resource_takes_only_execute_on_everything() -> None:
    assert check_policy("execute", "adhoc", "*") == ("execute", "adhoc", "*")
    for action, selector in (("view", "*"), ("edit", "*"), ("execute", "3")):
        with pytest.raises(InvalidInput, match="only action 'execute' with selector '\\*'"):
            check_policy(action, "adhoc", selector)


def test_an_inactive_definer_grants_nothing() -> None:
    gone = definer_principal("gone", None)
    owner_of_it = allowed(gone, [], "view", "jobconfigs", 1, "gone")
    assert not gone.active and not owner_of_it
    assert visibility(gone, [], "jobconfigs") == Visibility(
        "gone", frozenset(), frozenset(), active=False
    )
    user = User(1, "adm", None, "admin", False, NOW, NOW)
    assert not definer_principal("adm", user).is_admin  # deactivated: not even an admin
    active = User(2, "ed", None, "user", True, NOW, NOW)
    assert definer_principal("ed", active) == Principal(
        name="ed", role="user", user_id=2, token_kind="definer"
    )


def test_a_bounded_listing_admits_what_every_part_admits() -> None:
    everything = Visibility("root", frozenset(), frozenset(), everything=True)
    eve_part = Visibility("eve", frozenset({5}), frozenset({7}))
    both = Intersection((everything, eve_part))
    assert both.admits(5, "root") and both.admits(6, "x", 7)
    assert not both.admits(6, "root")
    # Jobs: the admin sees every ad-hoc job, eve only hers.
    assert not both.admits_job("someone", None)
    assert not both.admits_submitter("root")
    assert Intersection((everything,)).admits_job("someone", None)


def test_policies_of_a_user_do_not_leak_into_the_intersection() -> None:
    p = Policy(1, 1, "execute", "jobconfigs", "*", NOW)
    assert allowed(ALICE, [p], "execute", "jobconfigs", 1, "x")
    assert not allowed(EVE, [p], "execute", "jobconfigs", 1, "x")  # alice's, not eve's
    assert ROOT_JOB.everyone == (ROOT_JOB, EVE)
    assert ROOT_JOB.is_job and not ROOT_JOB.unbounded_admin


def test_job_tokens_are_refused_administration() -> None:
    refuse_job_token(ALICE, "create users")
    with pytest.raises(Forbidden, match="a job's SESSION_ID cannot create users"):
        refuse_job_token(ROOT_JOB, "create users")
