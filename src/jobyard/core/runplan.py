"""What a job runs from its package: the chosen entry point and the effective timeout.

The worker enforces the timeout it gets from here, and the API shows the same value
(``GET /api/v1/jobs/{id}`` answers ``effective_timeout``), so both must come from one
function. Pure: imports nothing of jobyard beyond :mod:`jobyard.core`.

The rule, first match wins (minutes; 0 means no timeout):

1. the job's own ``timeout`` when above 0 — for a jobconfig's job that is the
   jobconfig's ``timeout`` as it was at submission (``source="jobconfig"``), for an
   ad-hoc job the one it was submitted with (``source="job"``);
2. the ``timeout`` of the manifest entry point the job runs, when above 0
   (``source="entrypoint"``);
3. none (``source="none"``): the job may run for ever.

Templates carry no timeout: a jobconfig that takes its entry point from its template
gets that entry point's manifest timeout through rule 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from jobyard.core.models import Job, Package

TimeoutSource = Literal["job", "jobconfig", "entrypoint", "none"]


@dataclass(frozen=True, slots=True)
class EffectiveTimeout:
    """The timeout a job runs under, and which setting decided it."""

    minutes: int  # 0 = none
    source: TimeoutSource
    #: The manifest entry point whose ``timeout`` applies (``source="entrypoint"`` only).
    entrypoint: str | None = None


def chosen_entrypoint(job: Job, package: Package | None) -> str | None:
    """The name of the manifest entry point a job runs, or None when it runs none.

    The job's own ``entrypoint`` when it names one; otherwise, for a job with neither
    entry point nor command, the package's only entry point (a package with several
    needs the job to choose). The name may be missing from the package: the caller
    that runs the job says so.
    """
    if package is None:
        return None
    if job.entrypoint is not None:
        return job.entrypoint
    if job.command is None and len(package.entrypoints) == 1:
        return next(iter(package.entrypoints))
    return None


def effective_timeout(job: Job, package: Package | None) -> EffectiveTimeout:
    """The timeout ``job`` runs under (see the module docstring for the rule)."""
    if job.timeout > 0:
        return EffectiveTimeout(job.timeout, "jobconfig" if job.jobconfig_id else "job")
    name = chosen_entrypoint(job, package)
    if package is not None and name is not None:
        entry = package.entrypoints.get(name) or {}
        minutes = int(entry.get("timeout") or 0)
        if minutes > 0:
            return EffectiveTimeout(minutes, "entrypoint", name)
    return EffectiveTimeout(0, "none")
