"""The job status model as data: the single source of truth for statuses and transitions.

Every status write in the stores is guarded by :func:`sources_of`; tests check each guard
against :data:`TRANSITIONS`, so changing the model here changes it everywhere.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job stands in its life (SPEC §2)."""

    WAITING = "WAITING"
    SEQUENCED = "SEQUENCED"
    QUEUED = "QUEUED"
    CANCELLED = "CANCELLED"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    ERROR = "ERROR"
    FAILED = "FAILED"


#: Statuses a job may be created in.
INITIAL: frozenset[JobStatus] = frozenset({JobStatus.WAITING, JobStatus.SEQUENCED})

#: The allowed moves, and no others.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.WAITING: frozenset({JobStatus.SEQUENCED, JobStatus.CANCELLED}),
    JobStatus.SEQUENCED: frozenset({JobStatus.QUEUED, JobStatus.CANCELLED}),
    JobStatus.QUEUED: frozenset({JobStatus.INITIALIZING, JobStatus.CANCELLED}),
    JobStatus.INITIALIZING: frozenset({JobStatus.RUNNING, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({JobStatus.FINISHED, JobStatus.ERROR, JobStatus.FAILED}),
    JobStatus.CANCELLED: frozenset(),
    JobStatus.FINISHED: frozenset(),
    JobStatus.ERROR: frozenset(),
    JobStatus.FAILED: frozenset(),
}

#: Ended statuses never change.
TERMINAL: frozenset[JobStatus] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)

#: Statuses that occupy one of a jobconfig's ``max_concurrent`` places.
ACTIVE: frozenset[JobStatus] = frozenset(
    {JobStatus.QUEUED, JobStatus.INITIALIZING, JobStatus.RUNNING}
)

#: Statuses a user may *cancel* from (before a worker acquired the job).
CANCELLABLE: frozenset[JobStatus] = frozenset(
    s for s, nxt in TRANSITIONS.items() if JobStatus.CANCELLED in nxt
)

#: Statuses a user may *abort* from (a worker holds the job).
ABORTABLE: frozenset[JobStatus] = frozenset({JobStatus.INITIALIZING, JobStatus.RUNNING})

#: Statuses in which a worker holds the job under a lease.
HELD: frozenset[JobStatus] = ABORTABLE


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """Return every status from which ``target`` may be reached: the guard of an UPDATE."""
    return frozenset(s for s, nxt in TRANSITIONS.items() if target in nxt)


def can_move(source: JobStatus, target: JobStatus) -> bool:
    """Tell whether ``source -> target`` is an allowed transition."""
    return target in TRANSITIONS[source]


def is_terminal(status: JobStatus) -> bool:
    """Tell whether ``status`` is an end status that never changes."""
    return status in TERMINAL
