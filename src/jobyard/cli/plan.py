"""The apply plan, re-exported: planning lives in :mod:`jobyard.service.apply.plan`."""

from __future__ import annotations

from jobyard.service.apply.plan import (
    Action,
    FieldChange,
    PendingPackage,
    PlanItem,
    SchedulePlanItem,
    compute_plan,
    diff_fields,
    diff_schedule,
    format_change,
    normalise,
    plan_jobconfig,
    plan_schedules,
    plan_template,
)

__all__ = [
    "Action",
    "FieldChange",
    "PendingPackage",
    "PlanItem",
    "SchedulePlanItem",
    "compute_plan",
    "diff_fields",
    "diff_schedule",
    "format_change",
    "normalise",
    "plan_jobconfig",
    "plan_schedules",
    "plan_template",
]
