"""A claim riding on submissions (``Store.ride_submits``): a remote worker's long-poll
waiting on an idle server gets the job just submitted in the submit's own transaction.

The submission is never hurt by its rider: it is answered as submitted (QUEUED), a
refused one fails as it would alone, and a rider is asked only with the pools of the
jobs (unknown for a jobconfig's) and never for held jobs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import Engine, text

from jobyard.core.claims import ClaimRequest, RidingClaim
from jobyard.core.errors import NotFound
from jobyard.core.jobs import JobStatus as S
from jobyard.core.models import NewJob
from jobyard.store.protocol import Store
from tests.store.conftest import new_job


class Rider:
    """Offers one claim (for ``pool``, up to ``limit`` jobs) and records what it was asked."""

    def __init__(self, pool: str = "default", limit: int = 2) -> None:
        self.asked: list[frozenset[str] | None] = []
        self.riding: RidingClaim | None = None
        self._request = ClaimRequest(pool, limit, 60, [f"{n:064x}" for n in range(limit)])

    def __call__(self, pools: frozenset[str] | None) -> RidingClaim | None:
        self.asked.append(pools)
        if self.riding is not None:
            return None
        future = asyncio.get_running_loop().create_future()
        self.riding = RidingClaim("host:1:w", self._request, future)
        return self.riding

    async def answer(self) -> Any:
        assert self.riding is not None
        return await asyncio.wait_for(self.riding.answer, 5)


def _events(db: Engine, job_id: int) -> list[str]:
    with db.connect() as conn:
        rows = conn.execute(
            text("SELECT status FROM job_events WHERE job_id = :j ORDER BY id"), {"j": job_id}
        )
        return [row[0] for row in rows]


async def test_a_lone_submission_claims_for_the_rider_in_its_transaction(
    store: Store, db: Engine
) -> None:
    rider = Rider()
    store.ride_submits(rider)
    job = await store.job_insert(new_job(), actor="t", reason=None)
    assert job.status is S.QUEUED  # answered as submitted
    claims = await rider.answer()
    assert [c.job.id for c in claims] == [job.id]
    held = await store.job_get(job.id)
    assert held.status is S.INITIALIZING and held.worker_id == "host:1:w"
    assert held.acquired_at == held.created_at  # one transaction, one clock
    assert _events(db, job.id) == ["SEQUENCED", "QUEUED", "INITIALIZING"]
    assert rider.asked == [frozenset({"default"})]


async def test_the_rider_is_asked_with_the_pools_and_never_for_held_jobs(store: Store) -> None:
    rider = Rider()
    rider.riding = RidingClaim("x", ClaimRequest("gpu", 1, 60, ["h" * 64]), asyncio.Future())
    store.ride_submits(rider)  # a rider that has nothing to offer
    queued = await store.job_insert(new_job(pool="gpu"), actor="t", reason=None)
    await store.job_insert(new_job(hold=True), actor="t", reason=None)
    assert rider.asked == [frozenset({"gpu"})]
    assert (await store.job_get(queued.id)).status is S.QUEUED


async def test_a_claim_of_another_pool_claims_nothing_and_the_job_stays_queued(
    store: Store,
) -> None:
    rider = Rider(pool="other")
    store.ride_submits(rider)
    job = await store.job_insert(new_job(), actor="t", reason=None)
    assert await rider.answer() == []
    assert (await store.job_get(job.id)).status is S.QUEUED


async def test_a_refused_submission_fails_alone_and_its_rider_is_told_nothing_was_written(
    store: Store,
) -> None:
    rider = Rider()
    store.ride_submits(rider)
    bad = NewJob(
        jobconfig_id=None, package_id=999_999, entrypoint=None, command=None, macros={},
        timeout=0, success_exit_codes=[0], submitted_by="alice",
    )  # fmt: skip
    try:
        await store.job_insert(bad, actor="t", reason=None)
    except NotFound as exc:
        assert "package 999999" in exc.message
    else:  # pragma: no cover - the assertion below says what went wrong
        raise AssertionError("a job of an unknown package was accepted")
    assert await rider.answer() is None
    store.ride_submits(None)
    job = await store.job_insert(new_job(), actor="t", reason=None)
    assert (await store.job_get(job.id)).status is S.QUEUED  # no rider any more


async def test_a_batch_of_submissions_claims_up_to_the_riders_limit_in_order(
    store: Store,
) -> None:
    # Submissions arriving in one turn of the loop are written as one batch.
    await store.job_insert(new_job(), actor="t", reason=None)  # a first one, alone
    rider = Rider(limit=2)
    store.ride_submits(rider)
    jobs = await asyncio.gather(
        *(store.job_insert(new_job(), actor="t", reason=None) for _ in range(3))
    )
    assert all(job.status is S.QUEUED for job in jobs)
    claims = await rider.answer()
    first = min(job.id for job in jobs) - 1
    # The oldest queued jobs first: the one submitted before, then the batch's first.
    assert [c.job.id for c in claims] == [first, min(job.id for job in jobs)]
    statuses = [(await store.job_get(job.id)).status for job in sorted(jobs, key=lambda j: j.id)]
    assert statuses == [S.INITIALIZING, S.QUEUED, S.QUEUED]
