"""The storage seam of the worker's hot path: batched claims and reports.

Part of :class:`jobyard.store.protocol.Store` (which inherits it); kept apart so the
job path's contract reads in one place. See :mod:`jobyard.core.claims`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from jobyard.core.claims import ClaimRequest, EndReport, ReportAnswer, RidingClaim, RunningReport

#: Asked before each batch of submissions is written, with the pools of its jobs (None:
#: not all known), for a claim to write in the same transaction (None: no claim).
SubmitRider = Callable[[frozenset[str] | None], RidingClaim | None]


class ClaimStore(Protocol):
    """Claims and reports of worker processes, each ONE transaction for a batch of jobs."""

    async def jobs_report(
        self,
        *,
        worker_id: str,
        running: Sequence[RunningReport] = (),
        ended: Sequence[EndReport] = (),
        claim: ClaimRequest | None = None,
    ) -> ReportAnswer:
        """Record RUNNING, then end statuses of held jobs (+ promotion); one outcome each;
        then, with ``claim``, claim up to ``claim.limit`` QUEUED jobs of its pool
        (priority desc, seq asc) under a lease, with their run context, storing their
        session tokens (the n-th claimed job with an active submitter gets
        ``claim.token_hashes[n]``) — one transaction.

        A report that does not apply any more answers ``moved=False`` without failing
        the others; a RUNNING report already applied (same worker, same pid) is moved.
        """
        ...

    def ride_submits(self, rider: SubmitRider | None) -> None:
        """Ask ``rider`` before writing each batch of submissions for a claim to write
        in the same transaction, after the jobs (their promotions included): the
        riding claim's ``answer`` gets the jobs it claimed, or None if it was not
        written (the batch failed, or was written submission by submission). A
        submission never fails for its rider: when the transaction fails, it is
        written again without it. None: stop asking."""
        ...
