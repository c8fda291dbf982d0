"""The worker process's group commit (engine/reporter.py) over a real store, both engines."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from jobyard.core.claims import ClaimRequest, EndReport, ReportAnswer, RunningReport
from jobyard.core.jobs import JobStatus
from jobyard.engine.reporter import RUNNING_WINDOW, Reporter
from jobyard.store.protocol import Store
from tests.store.conftest import new_job

WORKER = "host:1:w"


class CountingStore:
    """The real store, counting the batched writes that go through it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.batches: list[tuple[int, int, int]] = []

    async def jobs_report(
        self,
        *,
        worker_id: str,
        running: Sequence[RunningReport] = (),
        ended: Sequence[EndReport] = (),
        claim: ClaimRequest | None = None,
    ) -> ReportAnswer:
        self.batches.append((len(running), len(ended), 0 if claim is None else claim.limit))
        return await self.store.jobs_report(
            worker_id=worker_id, running=running, ended=ended, claim=claim
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def _request(limit: int, free: int | None = None) -> ClaimRequest:
    hashes = [f"t{i:063d}" for i in range(8)]
    return ClaimRequest(
        pool="default",
        limit=limit,
        lease_seconds=60,
        token_hashes=hashes,
        free_now=None if free is None else (lambda: free),
    )


async def test_a_claim_takes_the_slots_freed_while_it_waited(store: Store) -> None:
    for _ in range(5):
        await store.job_insert(new_job(), actor="t", reason=None)
    reporter = Reporter(store, patience=1)

    claims = await reporter.claim(WORKER, _request(1, free=3))

    assert len(claims) == 3, "asked for 1 slot, 3 were free when the claim was written"
    capped = await reporter.claim(WORKER, _request(1, free=20))
    assert len(capped) == 2, "never more than the queue holds (and the tokens minted)"


async def test_running_and_end_of_a_short_job_share_one_commit(store: Store) -> None:
    counting = CountingStore(store)
    await store.job_insert(new_job(), actor="t", reason=None)
    reporter = Reporter(counting, patience=1)
    [claim] = await reporter.claim(WORKER, _request(1))
    job_id = claim.job.id

    running = asyncio.ensure_future(
        reporter.report(WORKER, RunningReport(job_id, 99, datetime.now(UTC)))
    )
    await asyncio.sleep(RUNNING_WINDOW / 5)  # the program ran a moment
    end = await reporter.report(
        WORKER, EndReport(job_id, JobStatus.FINISHED, 0, None, f"worker:{WORKER}")
    )

    assert end.moved and (await running).moved
    assert counting.batches[-1] == (1, 1, 0), counting.batches
    assert len(counting.batches) == 2  # the claim, then RUNNING + end together
    events = [e.status for e in await store.job_events(job_id)]
    assert events[-2:] == [JobStatus.RUNNING, JobStatus.FINISHED]


async def test_a_lone_running_report_is_written_within_the_window(store: Store) -> None:
    await store.job_insert(new_job(), actor="t", reason=None)
    reporter = Reporter(store, patience=1)
    [claim] = await reporter.claim(WORKER, _request(1))
    loop = asyncio.get_running_loop()
    started = loop.time()

    outcome = await reporter.report(WORKER, RunningReport(claim.job.id, 5, datetime.now(UTC)))

    assert outcome.moved
    assert loop.time() - started < RUNNING_WINDOW + 1.0
    assert (await store.job_get(claim.job.id)).status is JobStatus.RUNNING
