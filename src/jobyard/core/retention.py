"""Retention as data: what a purge pass keeps, and the tally of what it removed.

Purges remove *ended* jobs only (:data:`jobyard.core.jobs.TERMINAL`); the rules here
say which ended jobs, per jobconfig or for ad-hoc jobs, are past their keep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

#: A jobconfig id, or None for ad-hoc jobs (no jobconfig).
JobconfigKey = int | None


@dataclass(frozen=True, slots=True)
class KeepRule:
    """How long and how many ended jobs of one jobconfig (or of ad-hoc jobs) stay.

    ``max_age_days`` 0 keeps them whatever their age; ``max_jobs`` 0 keeps any number.
    """

    jobconfig_id: JobconfigKey
    max_age_days: float
    max_jobs: int

    def ended_before(self, now: datetime) -> datetime | None:
        """Jobs that ended before this time are past their age (None: no age limit)."""
        if self.max_age_days <= 0:
            return None
        return now - timedelta(days=self.max_age_days)


def keep_rule(
    jobconfig_id: JobconfigKey,
    *,
    default_age_days: float,
    default_max_jobs: int,
    age_override: float | None = None,
    jobs_override: int | None = None,
) -> KeepRule:
    """The rule of one jobconfig: its own overrides where set, else the global settings.

    Ad-hoc jobs (``jobconfig_id`` None) have no count limit: they are not a series
    whose newest N mean anything, so only their age counts.
    """
    age = default_age_days if age_override is None else age_override
    count = default_max_jobs if jobs_override is None else jobs_override
    if jobconfig_id is None:
        count = 0
    return KeepRule(jobconfig_id, float(age), int(count))


@dataclass(frozen=True, slots=True)
class JobsPurged:
    """What one purge transaction removed (or, in a dry run, would remove)."""

    job_ids: list[int]
    events: int
    tokens: int
    #: Blob keys of the jobs' payload and output files, and their total size.
    file_keys: list[str]
    file_bytes: int


@dataclass(frozen=True, slots=True)
class JobconfigRemoved:
    """What deleting a jobconfig removed: its jobs, and the packages they used.

    The caller deletes the jobs' blobs, then those packages that nothing else uses.
    """

    jobs: JobsPurged
    package_ids: list[int]


@dataclass(slots=True)
class PurgeReport:
    """Counts of a whole pass (``dry_run``: of what would go; nothing changed)."""

    dry_run: bool = False
    jobs: int = 0
    events: int = 0
    tokens: int = 0
    log_files: int = 0
    files: int = 0
    blobs: int = 0
    packages: int = 0
    bytes: int = 0
    audit_rows: int = 0
    #: Orphan blob files (no row refers to them) removed.
    orphans: int = 0
    errors: list[str] = field(default_factory=list)

    def add_jobs(self, purged: JobsPurged) -> None:
        """Count one batch of jobs (their log files are counted by the caller)."""
        self.jobs += len(purged.job_ids)
        self.events += purged.events
        self.tokens += purged.tokens
        self.files += len(purged.file_keys)
        self.blobs += len(purged.file_keys)
        self.bytes += purged.file_bytes

    def as_dict(self) -> dict[str, object]:
        """Plain fields for JSON answers and tables."""
        return {
            "dry_run": self.dry_run,
            "jobs": self.jobs,
            "events": self.events,
            "tokens": self.tokens,
            "log_files": self.log_files,
            "files": self.files,
            "packages": self.packages,
            "blobs": self.blobs,
            "bytes": self.bytes,
            "audit_rows": self.audit_rows,
            "orphans": self.orphans,
        }
