"""The storage seam of the worker's hot path: batched claims and reports.

Part of :class:`jobyard.store.protocol.Store` (which inherits it); kept apart so the
job path's contract reads in one place. See :mod:`jobyard.core.claims`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from jobyard.core.claims import Claim, ClaimRequest, EndReport, ReportAnswer, RunningReport


class ClaimStore(Protocol):
    """Claims and reports of worker processes, each ONE transaction for a batch of jobs."""

    async def job_claim(
        self,
        *,
        worker_id: str,
        pool: str,
        limit: int,
        lease_seconds: float,
        token_hashes: Sequence[str],
    ) -> list[Claim]:
        """Claim up to ``limit`` QUEUED jobs of ``pool`` (priority desc, seq asc) under a
        lease, with their run context, storing their session tokens (the n-th claimed job
        with an active submitter gets ``token_hashes[n]``; at least ``limit`` given)."""
        ...

    async def jobs_report(
        self,
        *,
        worker_id: str,
        running: Sequence[RunningReport] = (),
        ended: Sequence[EndReport] = (),
        claim: ClaimRequest | None = None,
    ) -> ReportAnswer:
        """Record RUNNING, then end statuses of held jobs (+ promotion); one outcome each;
        then, with ``claim``, claim jobs as :meth:`job_claim` does — one transaction.

        A report that does not apply any more answers ``moved=False`` without failing
        the others; a RUNNING report already applied (same worker, same pid) is moved.
        """
        ...
