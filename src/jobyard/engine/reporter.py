"""Group commit of a worker process: its slots' reports and claims, one transaction.

Slots of a worker process report RUNNING and end statuses independently, and the pool
claims jobs for free slots; each waits for its own answer. What is queued while a write
is being prepared or waits for the database goes out together in the next
:meth:`Store.jobs_report` transaction, so under load one commit ends some jobs, starts
others and claims new ones.

* An end report or a claim is written on the next turns of the event loop. An end
  waits a few turns for the claim its freed slot is about to make (the runner frees
  the slot before reporting), so the two share a commit.
* RUNNING reports alone wait up to :data:`RUNNING_WINDOW` for company: a short job's
  RUNNING and end then share one commit (``started_at`` is the moment the program
  started, whenever it is written).

A batch rides out database outages like every worker call (:mod:`jobyard.engine.retry`);
repeating it is harmless because every report is guarded (a repeated RUNNING report is
recognised by worker and pid, a repeated end finds the job ended and changes nothing).
A claim is not repeated: it fails at once with the outage (the pool backs off), and the
reports of its batch are written again without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobyard.core.claims import (
    Claim,
    ClaimRequest,
    EndReport,
    ReportAnswer,
    ReportOutcome,
    RunningReport,
)
from jobyard.core.errors import DatabaseUnavailable
from jobyard.engine.retry import Persistent
from jobyard.store.protocol import Store

#: How long RUNNING reports wait for other reports before they are written on their own.
RUNNING_WINDOW = 0.005
#: Turns of the event loop an end report waits for the claim of the slot it frees.
_CLAIM_TURNS = 3

_Item = RunningReport | EndReport | ClaimRequest


@dataclass(slots=True)
class _Pending:
    worker_id: str
    item: _Item
    answer: asyncio.Future[Any]


class Reporter:
    """Collects reports and claims; writes each collected batch in one transaction."""

    def __init__(
        self,
        store: Store,
        *,
        patience: float,
        orphaned: Callable[[list[Claim]], None] | None = None,
    ) -> None:
        """``orphaned`` gets the jobs of a claim whose caller stopped waiting for them
        (they are claimed: the caller's owner must still run or hand them over)."""
        self._store = store
        self._patience = patience
        self._orphaned = orphaned
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._urgent = asyncio.Event()

    async def report(self, worker_id: str, report: RunningReport | EndReport) -> ReportOutcome:
        """Queue ``report`` and wait until its batch is written; its outcome."""
        outcome: ReportOutcome = await self._queue(worker_id, report)
        return outcome

    async def claim(self, worker_id: str, request: ClaimRequest) -> list[Claim]:
        """Claim jobs with the next batch; ``DatabaseUnavailable`` is not retried here."""
        claims: list[Claim] = await self._queue(worker_id, request)
        return claims

    def queue(self, worker_id: str, report: RunningReport | EndReport) -> asyncio.Future[Any]:
        """Queue ``report`` now (not at the caller's next turn) and return its outcome
        to come: reports queued right before a :meth:`claim`, with no ``await``
        between, are written in the claim's transaction, before it."""
        return self._enqueue(worker_id, report)

    def _enqueue(self, worker_id: str, item: _Item) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        pending = _Pending(worker_id, item, loop.create_future())
        pending.answer.add_done_callback(_retrieved)  # a cancelled waiter's error is no leak
        self._pending.append(pending)
        if not isinstance(item, RunningReport):
            self._urgent.set()
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush(), name="jobyard-reporter")
        return pending.answer

    async def _queue(self, worker_id: str, item: _Item) -> Any:
        return await asyncio.shield(self._enqueue(worker_id, item))

    def _waits_for_claim(self) -> bool:
        kinds = {type(p.item) for p in self._pending}
        return EndReport in kinds and ClaimRequest not in kinds

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # what is queued in this turn of the loop joins
            while self._pending:
                if not self._urgent.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._urgent.wait(), RUNNING_WINDOW)
                for _ in range(_CLAIM_TURNS):
                    if not self._waits_for_claim():
                        break
                    await asyncio.sleep(0)
                self._urgent.clear()
                batch, self._pending = self._pending, []
                by_worker: dict[str, list[_Pending]] = {}
                for pending in batch:
                    by_worker.setdefault(pending.worker_id, []).append(pending)
                for worker_id, items in by_worker.items():
                    await self._write(worker_id, items)
        finally:
            self._flusher = None

    async def _write(self, worker_id: str, items: list[_Pending]) -> None:
        running = [p for p in items if isinstance(p.item, RunningReport)]
        ended = [p for p in items if isinstance(p.item, EndReport)]
        claims = [p for p in items if isinstance(p.item, ClaimRequest)]
        reports = [*running, *ended]
        # One claimer's free slots can be counted once only: with several claims in a
        # batch (several pools' workers), each takes what it asked for.
        limits = [
            (p.item.effective_limit() if len(claims) == 1 else p.item.limit)
            for p in claims
            if isinstance(p.item, ClaimRequest)
        ]
        request = _merged(
            [
                dataclasses.replace(p.item, limit=limit)
                for p, limit in zip(claims, limits, strict=True)
                if isinstance(p.item, ClaimRequest)
            ]
        )

        def write(claim: ClaimRequest | None) -> Any:
            return self._store.jobs_report(
                worker_id=worker_id,
                running=[p.item for p in running if isinstance(p.item, RunningReport)],
                ended=[p.item for p in ended if isinstance(p.item, EndReport)],
                claim=claim,
            )

        answer: ReportAnswer | None = None
        if request is not None:
            try:
                answer = await write(request)
            except DatabaseUnavailable as exc:
                _fail(claims, exc)
                claims = []
            except Exception as exc:
                _fail(items, exc)
                return
        if answer is None:
            if not reports:
                return
            try:
                what = f"report {len(reports)} job status(es)"
                answer = await Persistent(what, self._patience).run(lambda: write(None))
            except Exception as exc:
                _fail(reports, exc)
                return
        if answer is None:  # pragma: no cover - every branch above answered or returned
            return
        for pending, outcome in zip(reports, answer.outcomes, strict=True):
            _settle(pending, outcome)
        given = 0
        for pending, limit in zip(claims, limits, strict=False):
            if isinstance(pending.item, ClaimRequest):
                share = answer.claims[given : given + limit]
                given += len(share)
                if pending.answer.done() and share and self._orphaned is not None:
                    self._orphaned(share)
                _settle(pending, share)


def _merged(requests: list[ClaimRequest]) -> ClaimRequest | None:
    """One claim for several requests (of one worker: one pool, one set of labels)."""
    if not requests:
        return None
    if len(requests) == 1:
        return requests[0]
    return ClaimRequest(
        pool=requests[0].pool,
        limit=sum(r.limit for r in requests),
        lease_seconds=requests[0].lease_seconds,
        token_hashes=[h for r in requests for h in r.token_hashes[: r.limit]],
        labels=requests[0].labels,
    )


def _settle(pending: _Pending, value: Any) -> None:
    if not pending.answer.done():
        pending.answer.set_result(value)


def _fail(items: list[_Pending], error: BaseException) -> None:
    for pending in items:
        if not pending.answer.done():
            pending.answer.set_exception(error)


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
