"""What a worker gets when it claims jobs, and what it reports back, in batches.

The job path writes as little as it can: a claim moves jobs QUEUED -> INITIALIZING *and*
reads everything needed to run them (package, payload files, every macro level, the
submitting user, the users who defined what runs) *and* stores their session tokens,
all in one transaction. Afterwards a worker process reports RUNNING and end statuses
of many jobs in one transaction (:class:`RunningReport`, :class:`EndReport`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobyard.core.jobs import JobStatus
from jobyard.core.macros import MacroSources
from jobyard.core.models import Job, JobFile, Package
from jobyard.core.users import User


@dataclass(frozen=True, slots=True)
class Claim:
    """One claimed job (INITIALIZING, held by the claiming worker) and its run context."""

    job: Job
    #: The job's package (None: no package, or it was deleted meanwhile).
    package: Package | None
    payload: list[JobFile]
    #: Every macro level, as stored (secure values still encrypted). The user level is
    #: empty when it was withheld (see ``withheld_by``).
    sources: MacroSources
    #: The submitting user as it is now (None: the job has none, or it is gone).
    submitter: User | None
    #: Hash of the session token stored for the job (None: none was stored, because the
    #: job has no active submitting user).
    token_hash: str | None
    #: Definers of the job who are not active admins: because of them the submitter's
    #: private user-level macros are not given to it (empty: nothing withheld).
    withheld_by: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RunningReport:
    """INITIALIZING -> RUNNING of a held job, with what was resolved to run it.

    ``started_at`` is when the program was started (the worker's clock, kept between
    the job's acquisition and the write); ``resolved`` is the macro record to keep on the
    job (None: keep what is stored).
    """

    job_id: int
    pid: int | None
    started_at: datetime
    resolved: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class EndReport:
    """A held job ending FINISHED, ERROR or FAILED."""

    job_id: int
    status: JobStatus
    exit_code: int | None
    reason: str | None
    actor: str


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    """What one report did: ``moved`` False when the job was not (any more) the
    reporter's to move; ``error`` then says why (the message of a Conflict/NotFound)."""

    job_id: int
    moved: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """Claim up to ``limit`` QUEUED jobs of ``pool`` (see ``Store.jobs_report``)."""

    pool: str
    limit: int
    lease_seconds: float
    #: Hashes of minted session tokens, at least ``limit`` of them.
    token_hashes: Sequence[str]
    #: How many slots the claimer has free *now* (None: just ``limit``). A claim written
    #: with others (see jobyard.engine.reporter) takes up to that many, so slots freed
    #: while it waited are filled by the same commit; never more than ``token_hashes``.
    free_now: Callable[[], int] | None = field(default=None, compare=False)
    #: A claim alone on SQLite first looks for queued jobs without the write lock; a
    #: claimer just told that work was queued (first of the idle workers) goes straight
    #: to the write.
    look_first: bool = True
    #: A claim made at once for a job just submitted, the server then most likely idle:
    #: on PostgreSQL it runs on the caller's thread when nothing else is being written,
    #: skipping the two thread hand-offs of a transaction (``SqlBase._write_on_loop``).
    on_loop: bool = False
    #: The claiming worker's labels: a job requiring labels is claimed only by a worker
    #: having every one of them (a job requiring none, by any worker of its pool).
    labels: Mapping[str, str] = field(default_factory=dict)

    def effective_limit(self) -> int:
        """``limit``, or more when more slots are free by now (bounded by the tokens)."""
        limit = self.limit if self.free_now is None else max(self.limit, self.free_now())
        return min(limit, len(self.token_hashes))


@dataclass(slots=True)
class RidingClaim:
    """A claim written in the transaction of the next submissions (``Store.ride_submits``):
    a worker's long-poll waiting on an idle server gets the job just submitted without a
    transaction of its own."""

    worker_id: str
    request: ClaimRequest
    #: Set once that transaction has ended: the jobs claimed (maybe none); None when
    #: the claim was not written (the caller then claims on its own, as usual).
    answer: asyncio.Future[list[Claim] | None]


@dataclass(frozen=True, slots=True)
class ReportAnswer:
    """What one batched write did: an outcome per report, and the jobs it claimed."""

    outcomes: list[ReportOutcome]
    claims: list[Claim] = field(default_factory=list)
