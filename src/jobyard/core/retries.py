"""Retry policies: which ended jobs get a new job, how many times, and when.

A jobconfig's policy is ``retries`` (how many new jobs may repeat one original),
``retry_delay_seconds`` and ``retry_backoff`` (the n-th retry waits
``delay * backoff ** (n-1)`` after the job it repeats ended) and ``retry_on`` (the end
statuses that call for a retry). Only ERROR and FAILED can: FINISHED needs no retry and a
CANCELLED job was stopped on purpose before it ran. Timeouts and lost workers end FAILED,
so ``retry_on: [FAILED]`` (the default) covers them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jobyard.core.errors import InvalidInput
from jobyard.core.jobs import JobStatus

#: End statuses a policy may name in ``retry_on``.
RETRYABLE: tuple[str, ...] = (JobStatus.ERROR.value, JobStatus.FAILED.value)

#: Bounds that keep a policy sane (and its back-off inside a float).
MAX_RETRIES = 100
MAX_DELAY_SECONDS = 31_536_000.0  # one year
MAX_BACKOFF = 100.0


def retry_wait(delay_seconds: float, backoff: float, attempt: int) -> float:
    """Seconds the ``attempt``-th retry (1-based) waits after its predecessor ended.

    Capped at :data:`MAX_DELAY_SECONDS` so a long chain never overflows.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, not {attempt}")
    wait = delay_seconds * backoff ** min(attempt - 1, 64)
    return min(wait, MAX_DELAY_SECONDS)


def retry_due_at(
    ended_at: datetime, delay_seconds: float, backoff: float, attempt: int
) -> datetime:
    """When the ``attempt``-th retry of a job that ended at ``ended_at`` is due."""
    return ended_at + timedelta(seconds=retry_wait(delay_seconds, backoff, attempt))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_policy(values: dict[str, Any]) -> None:
    """Refuse (``InvalidInput``, 422) a policy field that is out of range, saying what fits.

    Checks only the fields present in ``values`` (a PATCH gives some of them).
    """
    if "retries" in values:
        value = values["retries"]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
            raise InvalidInput(
                f"retries must be an integer from 0 to {MAX_RETRIES}", {"retries": value}
            )
    if "retry_delay_seconds" in values:
        value = values["retry_delay_seconds"]
        if not _number(value) or not 0 <= value <= MAX_DELAY_SECONDS:
            raise InvalidInput(
                f"retry_delay_seconds must be a number from 0 to {MAX_DELAY_SECONDS:g}",
                {"retry_delay_seconds": value},
            )
    if "retry_backoff" in values:
        value = values["retry_backoff"]
        if not _number(value) or not 1 <= value <= MAX_BACKOFF:
            raise InvalidInput(
                f"retry_backoff must be a number from 1 to {MAX_BACKOFF:g}",
                {"retry_backoff": value},
            )
    if "retry_on" in values:
        value = values["retry_on"]
        if (
            not isinstance(value, list | tuple)
            or not value
            or any(v not in RETRYABLE for v in value)
        ):
            raise InvalidInput(
                f"retry_on must be a non-empty list of end statuses among {list(RETRYABLE)}",
                {"retry_on": value},
            )
        # The default is stored as NULL: reading a jobconfig (every run of it does)
        # then decodes no JSON for a jobconfig that keeps the default policy.
        statuses = sorted(set(value))
        values["retry_on"] = None if statuses == [JobStatus.FAILED.value] else statuses


@dataclass(frozen=True, slots=True)
class RetryLinks:
    """How one job sits in a retry chain (read only when a job is shown)."""

    #: The ended job this one repeats (None: not a retry).
    retry_of: int | None = None
    #: 1 for the first retry, 2 for the second...; 0 for a job that is not a retry.
    attempt: int = 0
    #: The retry that repeats this job, once submitted (None: none, or not yet).
    retried_by: int | None = None
