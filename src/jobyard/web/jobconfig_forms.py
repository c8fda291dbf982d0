"""The fields of the console's jobconfig forms: what the user typed, and the spec it means.

A form is kept as the text the user typed (:func:`values_of`), so that a refused form
comes back as it was sent. :func:`parse` turns that text into the fields of a
:class:`jobyard.core.models.JobConfigSpec`, refusing (422, naming the field) what the
API's request body refuses before its use case runs: the bounds of ``JobConfigIn`` in
:mod:`jobyard.api.dto`. Everything else is checked by the use case itself.
"""

from __future__ import annotations

import math
import re
from typing import Any

from starlette.datastructures import FormData

from jobyard.core.errors import InvalidInput, JobyardError
from jobyard.core.labels import format_labels, parse_labels
from jobyard.core.models import JobConfig
from jobyard.web.uploads import text_field

#: The text fields of the forms (``enabled`` is a checkbox: "on" or absent).
TEXT_FIELDS: tuple[str, ...] = (
    "name",
    "description",
    "package_id",
    "entrypoint",
    "parameters",
    "max_concurrent",
    "timeout",
    "success_exit_codes",
    "pool",
    "labels",
    "retention_max_age_days",
    "retention_max_jobs",
)
#: The API's bounds (``JobConfigIn``), so the form refuses exactly what the API refuses.
SHORT_TEXT = 255
LONG_TEXT = 10_000
MAX_CONCURRENT = 100_000
MAX_TIMEOUT_MINUTES = 5_256_000
MAX_EXIT_CODES = 256
MAX_RETENTION_DAYS = 1_000_000
MAX_RETENTION_JOBS = 1_000_000_000
MAX_ID = 2**63 - 1
#: The use cases' names of fields (``InvalidInput.details["field"]``) -> the form's.
FIELD_OF_ERROR = {
    "retention.max_age_days": "retention_max_age_days",
    "retention.max_jobs": "retention_max_jobs",
    "command": "package_id",
    "template_id": "package_id",
}
_SEPARATORS = re.compile(r"[\s,]+")


def blank_values() -> dict[str, str]:
    """A new jobconfig's form: the API's defaults."""
    values = dict.fromkeys(TEXT_FIELDS, "")
    values.update(max_concurrent="1", timeout="0", success_exit_codes="0", pool="default")
    values["enabled"] = "on"
    return values


def values_of(form: FormData) -> dict[str, str]:
    """What the user typed, field by field (missing fields are empty)."""
    values = {name: text_field(form, name) for name in TEXT_FIELDS}
    values["enabled"] = "on" if text_field(form, "enabled") else ""
    return values


def values_from(jc: JobConfig) -> dict[str, str]:
    """A stored jobconfig as the settings form shows it."""
    age = jc.retention_max_age_days
    return {
        "name": jc.name,
        "description": jc.description,
        "package_id": "" if jc.package_id is None else str(jc.package_id),
        "entrypoint": jc.entrypoint or "",
        "parameters": ", ".join(jc.parameters),
        "max_concurrent": str(jc.max_concurrent),
        "timeout": str(jc.timeout),
        "success_exit_codes": ", ".join(str(c) for c in jc.success_exit_codes),
        "pool": jc.pool,
        "labels": format_labels(jc.labels, "\n"),
        "enabled": "on" if jc.enabled else "",
        "retention_max_age_days": "" if age is None else f"{age:g}",
        "retention_max_jobs": "" if jc.retention_max_jobs is None else str(jc.retention_max_jobs),
    }


def error_field(exc: JobyardError) -> str | None:
    """The form field an error is about, when it names one."""
    field = exc.details.get("field")
    if not isinstance(field, str):
        fields = exc.details.get("fields")
        field = fields[0] if isinstance(fields, list) and fields else None
    if not isinstance(field, str):
        return None
    field = FIELD_OF_ERROR.get(field, field)
    return field if field in TEXT_FIELDS or field == "enabled" else None


def _text(values: dict[str, str], field: str, label: str, limit: int, *, required: bool) -> str:
    value = values.get(field, "").strip()
    if required and not value:
        raise InvalidInput(f"{label} is required", {"field": field})
    if len(value) > limit:
        raise InvalidInput(
            f"{label} may hold at most {limit} characters, got {len(value)}", {"field": field}
        )
    return value


def _whole(values: dict[str, str], field: str, label: str, high: int) -> int | None:
    text = values.get(field, "").strip()
    if text == "":
        return None
    if not text.isdigit() or int(text) > high:
        raise InvalidInput(
            f"{label} must be a whole number from 0 to {high}, got {text[:40]!r}",
            {"field": field},
        )
    return int(text)


def _required_whole(values: dict[str, str], field: str, label: str, high: int) -> int:
    number = _whole(values, field, label, high)
    if number is None:
        raise InvalidInput(
            f"{label} is required (a whole number from 0 to {high})", {"field": field}
        )
    return number


def _days(values: dict[str, str]) -> float | None:
    field = "retention_max_age_days"
    text = values.get(field, "").strip()
    if text == "":
        return None
    try:
        days = float(text)
    except ValueError:
        days = math.nan
    if not 0 <= days <= MAX_RETENTION_DAYS:
        raise InvalidInput(
            f"keep jobs for (days) must be a number from 0 to {MAX_RETENTION_DAYS}, "
            f"or empty for the global setting; got {text[:40]!r}",
            {"field": field},
        )
    return days


def _exit_codes(values: dict[str, str]) -> list[int]:
    field = "success_exit_codes"
    words = [w for w in _SEPARATORS.split(values.get(field, "")) if w]
    if not words:
        raise InvalidInput(
            "success exit codes: give at least one (0 is the usual one)", {"field": field}
        )
    if len(words) > MAX_EXIT_CODES:
        raise InvalidInput(
            f"success exit codes: at most {MAX_EXIT_CODES}, got {len(words)}", {"field": field}
        )
    codes: list[int] = []
    for word in words:
        if not word.isdigit() or int(word) > 255:
            raise InvalidInput(
                f"success exit codes are whole numbers from 0 to 255, got {word[:40]!r}",
                {"field": field},
            )
        codes.append(int(word))
    return codes


def _parameters(values: dict[str, str]) -> list[str]:
    field = "parameters"
    names = [w for w in _SEPARATORS.split(values.get(field, "")) if w]
    for name in names:
        if len(name) > 128:
            raise InvalidInput(
                f"parameter names have at most 128 characters: {name[:40]!r}…", {"field": field}
            )
    return names


def _labels(values: dict[str, str]) -> dict[str, str]:
    """``k=v`` per line (commas work too): the required worker labels."""
    try:
        return parse_labels(values.get("labels", ""))
    except InvalidInput as exc:
        raise InvalidInput(
            f"required worker labels: {exc.message} (one key=value per line)",
            {"field": "labels"},
        ) from None


def parse(values: dict[str, str]) -> dict[str, Any]:
    """The spec fields the form's text means (422 naming the field for what the API's
    body would refuse). ``package_id`` is None when no package is chosen; an empty
    entry point is None."""
    package_id = _whole(values, "package_id", "package", MAX_ID)
    if package_id == 0:
        raise InvalidInput("choose a package from the list", {"field": "package_id"})
    return {
        "name": _text(values, "name", "name", SHORT_TEXT, required=True),
        "description": _text(values, "description", "description", LONG_TEXT, required=False),
        "package_id": package_id,
        "entrypoint": _text(values, "entrypoint", "entry point", SHORT_TEXT, required=False)
        or None,
        "parameters": _parameters(values),
        "max_concurrent": _required_whole(
            values, "max_concurrent", "max concurrency", MAX_CONCURRENT
        ),
        "timeout": _required_whole(values, "timeout", "timeout (minutes)", MAX_TIMEOUT_MINUTES),
        "success_exit_codes": _exit_codes(values),
        "pool": _text(values, "pool", "pool", SHORT_TEXT, required=True),
        "labels": _labels(values),
        "enabled": values.get("enabled") == "on",
        "retention_max_age_days": _days(values),
        "retention_max_jobs": _whole(values, "retention_max_jobs", "jobs kept", MAX_RETENTION_JOBS),
    }


def settings_changes(current: JobConfig, parsed: dict[str, Any]) -> dict[str, Any]:
    """The PATCH of a settings form: only the fields that differ from ``current``.

    What it runs changes only when a package is chosen and it (or the entry point)
    differs; choosing a package for a jobconfig that ran a command drops the command.
    Leaving unchanged fields out matters: whoever changes what a jobconfig runs becomes
    its definer.
    """
    changes: dict[str, Any] = {}
    for key in (
        "name",
        "description",
        "max_concurrent",
        "timeout",
        "success_exit_codes",
        "pool",
        "labels",
        "enabled",
        "retention_max_age_days",
        "retention_max_jobs",
    ):
        if parsed[key] != getattr(current, key):
            changes[key] = parsed[key]
    if sorted(set(parsed["parameters"])) != sorted(current.parameters):
        changes["parameters"] = parsed["parameters"]
    package_id = parsed["package_id"]
    if package_id is not None and (
        package_id != current.package_id or parsed["entrypoint"] != current.entrypoint
    ):
        changes["package_id"] = package_id
        changes["entrypoint"] = parsed["entrypoint"]
        if current.command is not None:
            changes["command"] = None
    return changes
