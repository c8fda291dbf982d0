"""Job statistics as mergeable summaries: counts, sums, maxima and log-scale histograms.

A :class:`Summary` describes a set of ended jobs (counts by end status, run durations
and queue waits) in a form that adds up: the summary of two sets is the sum of their
summaries. That is what lets the store keep a rollup per jobconfig and hour (and day,
and all time) and answer any union of those rows without reading a single job.

Percentiles come from fixed log-scale histograms of milliseconds: bin 0 holds values
under 1 ms, bin ``i >= 1`` holds ``[R**(i-1), R**i)`` ms with ``R = 2**(1/8)``. A
percentile is reported as the geometric middle of the bin holding the nearest-rank
value, clamped to the exact maximum, so it is within :data:`RELATIVE_ERROR` (4.5 %)
of the exact nearest-rank value, or within 1 ms below 1 ms.

Definitions (also in docs/api.md):

* **duration**: ``ended_at - started_at`` of a job that started (FINISHED, ERROR, and
  FAILED jobs that got as far as RUNNING);
* **queue wait**: ``acquired_at - queued_at`` of a job a worker acquired: how long its
  turn waited for a free slot of its pool (the sequencing wait of ``max_concurrent``
  is not in it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from jobyard.core.jobs import JobStatus

#: Ratio between the bounds of consecutive histogram bins.
RATIO = 2 ** (1 / 8)
_LOG_RATIO = math.log(RATIO)
#: Largest relative error of a reported percentile (bins of ratio R, middle reported).
RELATIVE_ERROR = math.sqrt(RATIO) - 1 + 1e-9
#: The end statuses, in the order answers list them.
END_STATUSES: tuple[JobStatus, ...] = (
    JobStatus.FINISHED,
    JobStatus.ERROR,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
)


def bin_of(ms: float) -> int:
    """The histogram bin of a value in milliseconds (negative values count as 0)."""
    if ms < 1.0:
        return 0
    return math.floor(math.log(ms) / _LOG_RATIO) + 1


def bin_value(index: int) -> float:
    """The value a bin stands for: the geometric middle of its bounds (0.5 ms for bin 0)."""
    if index <= 0:
        return 0.5
    return float(RATIO ** (index - 0.5))


def bin_upper(index: int) -> float:
    """The (exclusive) upper bound of a bin, in milliseconds."""
    return 1.0 if index <= 0 else float(RATIO**index)


@dataclass(slots=True)
class Histogram:
    """Counts per bin, sum and maximum of a set of values (milliseconds)."""

    bins: dict[int, int] = field(default_factory=dict)
    count: int = 0
    sum_ms: float = 0.0
    max_ms: float = 0.0

    def add(self, ms: float) -> None:
        """Count one value."""
        ms = max(ms, 0.0)
        index = bin_of(ms)
        self.bins[index] = self.bins.get(index, 0) + 1
        self.count += 1
        self.sum_ms += ms
        self.max_ms = max(self.max_ms, ms)

    def merge(self, other: Histogram) -> None:
        """Add another histogram's values to this one."""
        if not other.count:
            return
        bins = self.bins
        for index, n in other.bins.items():
            bins[index] = bins.get(index, 0) + n
        self.count += other.count
        self.sum_ms += other.sum_ms
        self.max_ms = max(self.max_ms, other.max_ms)

    def percentile(self, p: float) -> float | None:
        """The nearest-rank ``p``-th percentile (0 < p <= 100), within the documented bound."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(p / 100.0 * self.count))
        seen = 0
        for index in sorted(self.bins):
            seen += self.bins[index]
            if seen >= rank:
                return min(bin_value(index), self.max_ms)
        return self.max_ms

    def encode(self) -> str:
        """The bins as compact JSON (``{"bin": count}``), for a rollup row."""
        return json.dumps({str(k): v for k, v in sorted(self.bins.items())}, separators=(",", ":"))

    @staticmethod
    def decode(text: str | None, count: int, sum_ms: float, max_ms: float) -> Histogram:
        """Rebuild a histogram from a rollup row's columns."""
        bins = {int(k): int(v) for k, v in json.loads(text).items()} if text else {}
        return Histogram(bins, int(count), float(sum_ms), float(max_ms))


@dataclass(slots=True)
class Summary:
    """Mergeable statistics of a set of ended jobs."""

    counts: dict[str, int] = field(default_factory=dict)
    duration: Histogram = field(default_factory=Histogram)
    wait: Histogram = field(default_factory=Histogram)

    @property
    def total(self) -> int:
        """How many jobs ended."""
        return sum(self.counts.values())

    def add_job(
        self,
        status: str,
        queued_at: datetime | None,
        acquired_at: datetime | None,
        started_at: datetime | None,
        ended_at: datetime,
    ) -> None:
        """Count one ended job."""
        self.counts[status] = self.counts.get(status, 0) + 1
        if started_at is not None:
            self.duration.add((ended_at - started_at).total_seconds() * 1000.0)
        if queued_at is not None and acquired_at is not None:
            self.wait.add((acquired_at - queued_at).total_seconds() * 1000.0)

    def merge(self, other: Summary) -> None:
        """Add another summary to this one."""
        for status, n in other.counts.items():
            self.counts[status] = self.counts.get(status, 0) + n
        self.duration.merge(other.duration)
        self.wait.merge(other.wait)

    def as_dict(self) -> dict[str, object]:
        """The answer's shape: counts by end status, duration and queue-wait figures (s)."""
        d, w = self.duration, self.wait
        return {
            "total": self.total,
            "counts": {s.value: self.counts.get(s.value, 0) for s in END_STATUSES},
            "duration_seconds": {
                "count": d.count,
                "mean": _s(d.sum_ms / d.count) if d.count else None,
                "p50": _s(d.percentile(50)),
                "p95": _s(d.percentile(95)),
                "p99": _s(d.percentile(99)),
                "max": _s(d.max_ms) if d.count else None,
            },
            "queue_wait_seconds": {
                "count": w.count,
                "mean": _s(w.sum_ms / w.count) if w.count else None,
                "p50": _s(w.percentile(50)),
                "p95": _s(w.percentile(95)),
                "max": _s(w.max_ms) if w.count else None,
            },
        }


def _s(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000.0, 6)


def merged(summaries: Iterable[Summary]) -> Summary:
    """One summary of many."""
    out = Summary()
    for one in summaries:
        out.merge(one)
    return out


def counts_json(counts: Mapping[str, int]) -> dict[str, int]:
    """Counts by end status with every end status present (zeros included)."""
    return {s.value: int(counts.get(s.value, 0)) for s in END_STATUSES}


@dataclass(frozen=True, slots=True)
class FoldResult:
    """What one fold transaction did."""

    folded: int  # ended jobs added to the rollup
    pending: int  # jobs passed before they ended (folded later)
    folded_through: int  # the watermark after it
    more: bool  # a full batch: call again


@dataclass(frozen=True, slots=True)
class StatsRow:
    """One rollup row: a jobconfig (0: ad-hoc jobs) and bucket start, with its summary."""

    jobconfig_key: int
    bucket_start: datetime
    summary: Summary


@dataclass(frozen=True, slots=True)
class JobsNow:
    """Cluster-wide figures of the metrics endpoint, read in one snapshot."""

    submitted: dict[int, int]  # jobconfig key -> jobs ever submitted (purged ones included)
    ended: dict[tuple[int, str], int]  # (jobconfig key, end status) -> jobs ended
    live: dict[str, int]  # live status -> jobs in it now
    queued_by_pool: dict[str, int]  # pool -> QUEUED jobs
    busy_by_pool: dict[str, int]  # pool -> INITIALIZING or RUNNING jobs
