"""The storage seam of job statistics: the rollup's fold and reads, the metrics' reads.

Part of :class:`jobyard.store.protocol.Store` (which inherits it). None of these is
called on the job path: the fold runs in the maintenance leader's loop, the reads when
someone asks (``GET /api/v1/jobstats``, a ``/metrics`` scrape).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from jobyard.core.stats import FoldResult, JobsNow, StatsRead, StatsSummary


class StatsStore(Protocol):
    """The ``jobstats`` rollup (see :mod:`jobyard.store.sql.stats`)."""

    async def jobstats_fold(self, *, lag_seconds: float, batch: int = 5000) -> FoldResult:
        """Fold up to ``batch`` newly ended jobs into the rollup (one transaction).

        Jobs created less than ``lag_seconds`` ago are left for a later pass. Two
        folds at once (two leaders for a moment) never count a job twice.
        """
        ...

    async def jobstats_read(
        self,
        *,
        grain: str,
        since: datetime | None,
        until: datetime | None,
        jobconfig_keys: list[int] | None,
    ) -> StatsRead:
        """Rollup rows of ``grain`` (``h``, ``d``, ``t``) with ``since <= start < until``,
        and when the rollup was last folded (one read transaction).

        ``jobconfig_keys`` restricts the jobconfigs (0: ad-hoc jobs); None: all of them.
        """
        ...

    async def jobstats_summarize(
        self,
        *,
        grain: str,
        since: datetime | None,
        until: datetime | None,
        jobconfig_keys: list[int] | None,
    ) -> StatsSummary:
        """The rows :meth:`jobstats_read` would answer, summed per jobconfig key and per
        bucket start (what ``GET /api/v1/jobstats`` needs, without an object per row)."""
        ...

    async def jobstats_watermark(self) -> tuple[int, datetime | None]:
        """``(folded_through, folded_at)``: the last job id passed and when."""
        ...

    async def jobs_now(self) -> JobsNow:
        """Jobs submitted and ended per jobconfig (ever), live ones by status and pool."""
        ...
