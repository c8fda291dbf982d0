"""Access policies and audit entries (records and validation, no I/O).

A policy grants one user one ``action`` on the ``resource`` objects its ``selector``
matches: an object id, ``*`` (every object of the resource), or ``template:<id>``
(jobconfigs only: every jobconfig whose template is ``<id>``).

The ``adhoc`` resource has no objects: ``{"action": "execute", "resource": "adhoc",
"selector": "*"}`` is the one grant it takes, and lets a non-admin submit ad-hoc jobs
(a command or package of their own choosing, outside any jobconfig).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobyard.core.errors import InvalidInput

ACTIONS: tuple[str, ...] = ("view", "edit", "delete", "execute")
RESOURCES: tuple[str, ...] = ("jobconfigs", "templates", "adhoc")
#: The resource of ad-hoc jobs (``POST /api/v1/jobs``): only ``execute`` on ``*``.
ADHOC = "adhoc"
ALL = "*"
TEMPLATE_PREFIX = "template:"
#: Largest id a selector may name (the ids are 63-bit integers).
MAX_ID = 2**63 - 1
#: Largest page of ``audit_list``.
AUDIT_MAX_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Policy:
    """One grant: ``user_id`` may ``action`` the ``resource`` objects matching ``selector``."""

    id: int
    user_id: int
    action: str
    resource: str
    selector: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who did what to which object, when and from where (``details``: never a secret)."""

    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str | None
    details: dict[str, Any] | None
    remote_addr: str | None


@dataclass(frozen=True, slots=True)
class AuditNote:
    """An audit entry to write in the same transaction as the change it records, about
    the object that change creates (its id is known only there)."""

    actor: str
    action: str
    object_type: str
    details: dict[str, Any] | None
    remote_addr: str | None


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What ``audit_list`` keeps: every given field must match (``action``: a prefix)."""

    actor: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    since: datetime | None = None  # at >= since
    until: datetime | None = None  # at < until


def _id(text: str) -> int | None:
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


def check_policy(action: str, resource: str, selector: str) -> tuple[str, str, str]:
    """The policy fields, validated; ``InvalidInput`` saying what is allowed."""
    if action not in ACTIONS:
        raise InvalidInput(
            f"action {action!r} is not one of: {', '.join(ACTIONS)}",
            {"action": action, "allowed": list(ACTIONS)},
        )
    if resource not in RESOURCES:
        raise InvalidInput(
            f"resource {resource!r} is not one of: {', '.join(RESOURCES)}",
            {"resource": resource, "allowed": list(RESOURCES)},
        )
    if resource == ADHOC:
        if action != "execute" or selector != ALL:
            raise InvalidInput(
                f"the {ADHOC} resource takes only action 'execute' with selector '*' "
                f"(it has no objects to view, edit or delete); got {action!r} on {selector!r}",
                {"action": action, "resource": resource, "selector": selector},
            )
        return action, resource, selector
    if selector == ALL or _id(selector) is not None:
        return action, resource, selector
    if (
        resource == "jobconfigs"
        and selector.startswith(TEMPLATE_PREFIX)
        and _id(selector[len(TEMPLATE_PREFIX) :]) is not None
    ):
        return action, resource, selector
    allowed = "an id, '*'" + (" or 'template:<id>'" if resource == "jobconfigs" else "")
    raise InvalidInput(
        f"selector {selector!r} for {resource} must be {allowed}",
        {"selector": selector, "allowed": allowed},
    )
