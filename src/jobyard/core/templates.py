"""Templates: the shared parent of jobconfigs (package, entry point or command, macros).

A jobconfig that names a template inherits what to run from it unless it sets its own:
the package is the jobconfig's when it has one, else the template's; the entry point or
command is the jobconfig's when it names either (or has a package of its own), else the
template's. :func:`effective_target` is that rule; the store applies the same rule in
SQL when scheduled firings snapshot their jobconfigs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from jobyard.core.models import JobConfig, Notice


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    """The writable fields of a template."""

    name: str
    package_id: int | None = None
    entrypoint: str | None = None
    command: list[str] | None = None
    description: str = ""
    #: Retry policy its jobconfigs take when they set none of their own (``retries`` 0);
    #: see :mod:`jobyard.core.retries`.
    retries: int = 0
    retry_delay_seconds: float = 30.0
    retry_backoff: float = 2.0
    retry_on: list[str] = field(default_factory=lambda: ["FAILED"])
    #: Worker labels the jobs of its jobconfigs require when they require none of their own.
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Template:
    """A stored template (fields in ``templates`` column order)."""

    id: int
    name: str
    package_id: int | None
    entrypoint: str | None
    command: list[str] | None
    description: str
    owner: str | None
    created_at: datetime
    updated_at: datetime
    #: Who last changed what its jobconfigs run (:data:`DEFINITION_FIELDS`, its plain
    #: macros), and when; their authority bounds the SESSION_ID of those jobs.
    definition_changed_by: str | None = None
    definition_changed_at: datetime | None = None
    #: Retry policy (see :class:`TemplateSpec`); ``retry_since``: when ``retries`` last
    #: went from 0 to more (only jobs ended since then are retried under it).
    retries: int = 0
    retry_delay_seconds: float = 30.0
    retry_backoff: float = 2.0
    retry_on: list[str] = field(default_factory=lambda: ["FAILED"])
    retry_since: datetime | None = None
    #: Worker labels (see :class:`TemplateSpec`).
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.retry_on is None:  # NULL: the default policy's statuses
            object.__setattr__(self, "retry_on", ["FAILED"])
        if self.labels is None:  # NULL: no labels required
            object.__setattr__(self, "labels", {})


#: The fields of a template that decide what its jobconfigs run.
DEFINITION_FIELDS: tuple[str, ...] = ("package_id", "entrypoint", "command")


@dataclass(frozen=True, slots=True)
class CloneResult:
    """What cloning a template made."""

    template: Template
    jobconfigs: list[JobConfig]
    #: ``"template"`` or a copied jobconfig's name -> its secure macros that were not copied.
    secure_macros_skipped: dict[str, list[str]]
    #: Pools of the copies that no live worker serves (see ``service/pools.py``).
    warnings: list[Notice] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RunTarget:
    """What a job runs: a package and/or an entry point or command."""

    package_id: int | None
    entrypoint: str | None
    command: list[str] | None


def effective_target(own: RunTarget, template: RunTarget | None) -> RunTarget:
    """The jobconfig's own target, completed from its template (see the module docstring)."""
    if template is None:
        return own
    package_id = own.package_id if own.package_id is not None else template.package_id
    if own.entrypoint is not None or own.command is not None or own.package_id is not None:
        return RunTarget(package_id, own.entrypoint, own.command)
    return RunTarget(package_id, template.entrypoint, template.command)
