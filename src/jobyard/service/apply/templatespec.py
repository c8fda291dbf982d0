"""Templates in apply files: their schema, parsed form, plan and export form.

An apply file may list ``templates`` before its jobconfigs::

    templates:
      - name: acme              # unique key
        package: etl            # or package_id: 12
        entrypoint: main        # or command: [...]
        description: "..."
        labels: {gpu: "1"}      # worker labels its jobconfigs' jobs require (if they set none)
        retries: 1              # retry policy of its jobconfigs that set none (retries 0)
    jobconfigs:
      - name: acme-orders
        template: acme          # a template of the file or of the server (or template_id)

A template of the file is the whole truth about it, like a jobconfig: a field left out
takes its default. ``jobyard apply`` writes templates before jobconfigs. Pure code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from jobyard.core.labels import checked_labels
from jobyard.core.validation import NAME_RE
from jobyard.service.apply.nodes import Problem, line_at

#: The writable fields of a template, in the order files show them, with defaults.
TEMPLATE_FIELDS: tuple[str, ...] = (
    "name",
    "description",
    "package_id",
    "entrypoint",
    "command",
    "labels",
    "retries",
    "retry_delay_seconds",
    "retry_backoff",
    "retry_on",
)
#: The retry policy's defaults: an export leaves out the fields at their default.
RETRY_FIELDS: tuple[str, ...] = ("retries", "retry_delay_seconds", "retry_backoff", "retry_on")
_RETRY_DEFAULTS: dict[str, Any] = {
    "retries": 0,
    "retry_delay_seconds": 30.0,
    "retry_backoff": 2.0,
    "retry_on": ["FAILED"],
}
TEMPLATE_DEFAULTS: dict[str, Any] = {
    "description": "",
    "package_id": None,
    "entrypoint": None,
    "command": None,
    "labels": {},
    **_RETRY_DEFAULTS,
}


def _name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            f"invalid name {value!r}: use 1-128 ASCII letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def _statuses(value: list[str]) -> list[str]:
    """Each status once, sorted: the order the server keeps (so plans compare equal)."""
    return sorted(set(value))


class TemplateModel(BaseModel):
    """One item of ``templates``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: Annotated[str, AfterValidator(_name)]
    package: str | None = Field(default=None, min_length=1)
    package_id: int | None = Field(default=None, ge=1)
    entrypoint: str | None = Field(default=None, min_length=1)
    command: list[str] | None = Field(default=None, min_length=1)
    description: str | None = None
    #: Worker labels the jobs of its jobconfigs require when they require none.
    labels: Annotated[dict[str, str | int | bool], AfterValidator(checked_labels)] | None = None
    retries: int | None = Field(default=None, ge=0, le=100)
    retry_delay_seconds: float | None = Field(default=None, ge=0, le=31_536_000)
    retry_backoff: float | None = Field(default=None, ge=1, le=100)
    retry_on: Annotated[list[Literal["ERROR", "FAILED"]], AfterValidator(_statuses)] | None = Field(
        default=None, min_length=1
    )

    @model_validator(mode="after")
    def _one_of_each(self) -> TemplateModel:
        if self.package is not None and self.package_id is not None:
            raise ValueError("give either `package` or `package_id`, not both")
        if self.entrypoint is not None and self.command is not None:
            raise ValueError("give either `entrypoint` or `command`, not both")
        if self.entrypoint is not None and self.package is None and self.package_id is None:
            raise ValueError("`entrypoint` needs a package (`package` or `package_id`)")
        return self

    def spec(self) -> dict[str, Any]:
        """The writable fields, defaults filled in (``package`` is resolved later)."""
        values = self.model_dump(exclude_none=True, exclude={"package"})
        return {f: values.get(f, TEMPLATE_DEFAULTS.get(f)) for f in TEMPLATE_FIELDS}


@dataclass(frozen=True, slots=True)
class TemplateDecl:
    """A template of the file, defaults filled in; ``package`` still to be resolved."""

    name: str
    spec: dict[str, Any]
    package: str | None = None
    line: int | None = None


def templates_of(
    models: Iterable[TemplateModel] | None,
    root: yaml.Node | None,
    packages: set[str],
    problems: list[Problem],
) -> list[TemplateDecl]:
    """The file's templates; duplicate names and undeclared packages go to ``problems``."""
    decls: list[TemplateDecl] = []
    seen: dict[str, int | None] = {}
    for index, t in enumerate(models or []):
        line = line_at(root, ("templates", index))
        where = f"templates[{index}]"
        if t.name in seen:
            message = f"duplicate template name {t.name!r} (first at line {seen[t.name]})"
            problems.append(Problem(message, line, where))
        seen[t.name] = line
        if t.package is not None and t.package not in packages:
            known = ", ".join(sorted(packages)) or "none declared"
            package_line = line_at(root, ("templates", index, "package"))
            message = f"unknown package {t.package!r} (packages: {known})"
            problems.append(Problem(message, package_line, where))
        decls.append(TemplateDecl(t.name, t.spec(), t.package, line))
    return decls


@dataclass(frozen=True, slots=True)
class PendingTemplate:
    """A template not on the server yet (``--dry-run``): its id is known only once created."""

    name: str

    def __str__(self) -> str:
        return f"<new template {self.name}>"


def export_templates(templates: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The apply-file form of templates as the API returns them (packages by id)."""
    items: list[dict[str, Any]] = []
    for t in templates:
        item: dict[str, Any] = {}
        for f in TEMPLATE_FIELDS:
            value = t.get(f)
            if value is None or (f in ("description", "labels") and not value):
                continue
            if f in _RETRY_DEFAULTS and value == _RETRY_DEFAULTS[f]:
                continue  # the default policy: a file without the field means the same
            item[f] = value
        items.append(item)
    return items
