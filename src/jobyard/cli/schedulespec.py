"""Schedules of apply documents, re-exported from :mod:`jobyard.service.apply.schedulespec`."""

from __future__ import annotations

from jobyard.service.apply.schedulespec import ScheduleDecl, export_schedule, instant

__all__ = ["ScheduleDecl", "export_schedule", "instant"]
