"""The engine port the worker routes use: claims and reports of remote workers.

Implemented by :class:`jobyard.engine.remote_desk.RemoteDesk` (one per server process);
a protocol here so the service layer imports nothing of ``jobyard.engine``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from jobyard.core.claims import EndReport, ReportOutcome, RunningReport


class WorkerDesk(Protocol):
    """Claims (long-polled) and batched reports of remote workers."""

    async def acquire(
        self,
        *,
        worker_id: str,
        pool: str,
        labels: Mapping[str, str],
        free: int,
        wait_seconds: float,
        gone: Callable[[], Awaitable[bool]],
        reports: Sequence[RunningReport | EndReport] = (),
        present: Callable[[], bool] | None = None,
    ) -> tuple[list[dict[str, Any]], list[ReportOutcome]]:
        """Claim up to ``free`` jobs of ``pool`` (of those requiring labels, the ones
        ``labels`` satisfies), waiting up to ``wait_seconds`` for one; their assignments
        as JSON objects (``jobyard.worker.wire``), and the outcomes of ``reports``
        (written first, in the claim's transaction; with reports it does not wait).
        ``present`` tells at once whether the caller is still connected (then a
        submission may claim for it in its own transaction while it waits)."""
        ...

    def running_report(
        self, job_id: int, *, pid: int | None, started_at: datetime, record: str | None
    ) -> RunningReport:
        """The RUNNING report of a held job (``record``: its sealed macro record)."""
        ...

    async def running(
        self,
        worker_id: str,
        job_id: int,
        *,
        pid: int | None,
        started_at: datetime,
        record: str | None,
    ) -> ReportOutcome:
        """INITIALIZING -> RUNNING of a held job (``record``: its sealed macro record)."""
        ...

    async def end(self, worker_id: str, report: EndReport) -> ReportOutcome:
        """Record the end of a held job."""
        ...
