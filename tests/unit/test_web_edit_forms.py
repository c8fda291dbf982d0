"""The console's jobconfig forms: what the typed text means, and what a settings save sends."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from jobyard.core.errors import InvalidInput
from jobyard.core.models import JobConfig
from jobyard.web.jobconfig_forms import (
    blank_values,
    error_field,
    parse,
    settings_changes,
    values_from,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _jobconfig(**fields: Any) -> JobConfig:
    base: dict[str, Any] = {
        "id": 7,
        "name": "nightly",
        "package_id": 3,
        "entrypoint": "main",
        "command": None,
        "macros": {},
        "max_concurrent": 1,
        "timeout": 0,
        "success_exit_codes": [0],
        "enabled": True,
        "description": "",
        "pool": "default",
        "created_at": NOW,
        "updated_at": NOW,
        "parameters": ["B", "A"],
        "retention_max_age_days": 7.5,
        "retention_max_jobs": None,
    }
    return JobConfig(**{**base, **fields})


def test_a_settings_form_saved_unchanged_sends_nothing() -> None:
    """Saving the form as shown changes no field, so nobody becomes the definer."""
    jc = _jobconfig()
    assert settings_changes(jc, parse(values_from(jc))) == {}


def test_only_what_changed_is_sent() -> None:
    jc = _jobconfig()
    values = {**values_from(jc), "max_concurrent": "4", "retention_max_jobs": "10"}
    values["parameters"] = "A B"  # the same names, in another order: unchanged
    assert settings_changes(jc, parse(values)) == {"max_concurrent": 4, "retention_max_jobs": 10}
    values = {**values_from(jc), "enabled": "", "retention_max_age_days": ""}
    assert settings_changes(jc, parse(values)) == {"enabled": False, "retention_max_age_days": None}


def test_choosing_a_package_replaces_a_command_and_no_choice_keeps_it() -> None:
    jc = _jobconfig(package_id=None, entrypoint=None, command=["/bin/true"])
    values = values_from(jc)
    assert values["package_id"] == ""
    assert settings_changes(jc, parse(values)) == {}
    values["package_id"], values["entrypoint"] = "9", "run"
    assert settings_changes(jc, parse(values)) == {
        "package_id": 9,
        "entrypoint": "run",
        "command": None,
    }


@pytest.mark.parametrize(
    ("field", "typed", "says"),
    [
        ("name", " ", "name is required"),
        ("timeout", "-1", "timeout (minutes) must be a whole number from 0 to 5256000"),
        ("max_concurrent", "100001", "from 0 to 100000"),
        ("success_exit_codes", "", "at least one"),
        ("success_exit_codes", "0 256", "from 0 to 255"),
        ("retention_max_age_days", "nan", "keep jobs for (days)"),
        ("retention_max_age_days", "inf", "keep jobs for (days)"),
        ("retention_max_jobs", "1.5", "jobs kept"),
        ("package_id", "0", "choose a package"),
        ("description", "x" * 10_001, "at most 10000 characters"),
    ],
)
def test_what_the_api_body_refuses_is_refused_naming_the_field(
    field: str, typed: str, says: str
) -> None:
    values = {**blank_values(), "name": "ok", field: typed}
    with pytest.raises(InvalidInput) as caught:
        parse(values)
    assert says in caught.value.message
    assert error_field(caught.value) == field


def test_the_use_cases_field_names_map_to_the_forms() -> None:
    retention = InvalidInput("x", {"field": "retention.max_jobs"})
    assert error_field(retention) == "retention_max_jobs"
    assert error_field(InvalidInput("x", {"field": "command"})) == "package_id"
    assert error_field(InvalidInput("x", {"fields": ["pool"]})) == "pool"
    assert error_field(InvalidInput("x", {"field": "macros"})) is None
