"""Group commit of a worker process's status reports: many jobs, one transaction.

Slots of a worker process report RUNNING and end statuses independently; each report
waits for its own outcome. Reports made while a write is being prepared or waiting for
the database go out together in the next :meth:`Store.jobs_report` transaction, so
under load a commit carries many jobs, and when idle an end report is written at once
(the flush starts on the next turn of the event loop). RUNNING reports alone wait up to
:data:`RUNNING_WINDOW` for company: a short job's RUNNING and end then share one commit
(``started_at`` is the moment the program started, whenever it is written).

A batch rides out database outages like every worker call (:mod:`jobyard.engine.retry`);
repeating it is harmless because every report is guarded (a repeated RUNNING report is
recognised by worker and pid, a repeated end finds the job ended and changes nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from jobyard.core.claims import EndReport, ReportOutcome, RunningReport
from jobyard.engine.retry import Persistent
from jobyard.store.protocol import Store

#: How long RUNNING reports wait for other reports before they are written on their own.
RUNNING_WINDOW = 0.005


@dataclass(slots=True)
class _Pending:
    worker_id: str
    report: RunningReport | EndReport
    outcome: asyncio.Future[ReportOutcome]


class Reporter:
    """Collects reports and writes each collected batch in one transaction."""

    def __init__(self, store: Store, *, patience: float) -> None:
        self._store = store
        self._patience = patience
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._urgent = asyncio.Event()

    async def report(self, worker_id: str, report: RunningReport | EndReport) -> ReportOutcome:
        """Queue ``report`` and wait until its batch is written; its outcome."""
        loop = asyncio.get_running_loop()
        pending = _Pending(worker_id, report, loop.create_future())
        pending.outcome.add_done_callback(_retrieved)  # a cancelled reporter's error is no leak
        self._pending.append(pending)
        if not isinstance(report, RunningReport):
            self._urgent.set()
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush(), name="jobyard-reporter")
        return await asyncio.shield(pending.outcome)

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # reports made in this turn of the loop join the batch
            while self._pending:
                if not self._urgent.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._urgent.wait(), RUNNING_WINDOW)
                self._urgent.clear()
                batch, self._pending = self._pending, []
                by_worker: dict[str, list[_Pending]] = {}
                for item in batch:
                    by_worker.setdefault(item.worker_id, []).append(item)
                for worker_id, items in by_worker.items():
                    await self._write(worker_id, items)
        finally:
            self._flusher = None

    async def _write(self, worker_id: str, items: list[_Pending]) -> None:
        running = [i for i in items if isinstance(i.report, RunningReport)]
        ended = [i for i in items if isinstance(i.report, EndReport)]
        what = f"report {len(items)} job status(es)"
        try:
            outcomes = await Persistent(what, self._patience).run(
                lambda: self._store.jobs_report(
                    worker_id=worker_id,
                    running=[i.report for i in running if isinstance(i.report, RunningReport)],
                    ended=[i.report for i in ended if isinstance(i.report, EndReport)],
                )
            )
        except Exception as exc:
            for item in items:
                if not item.outcome.done():
                    item.outcome.set_exception(exc)
            return
        for item, outcome in zip([*running, *ended], outcomes, strict=True):
            if not item.outcome.done():
                item.outcome.set_result(outcome)


def _retrieved(future: asyncio.Future[ReportOutcome]) -> None:
    if not future.cancelled():
        future.exception()
