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

import math
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import accumulate

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
_END_VALUES = tuple(s.value for s in END_STATUSES)


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


#: Bits of one bin's count inside a packed histogram (see :class:`Histogram`).
FIELD_BITS = 64
_FIELD_BYTES = FIELD_BITS // 8


@dataclass(slots=True)
class Histogram:
    """Counts per bin, sum and maximum of a set of values (milliseconds).

    The bins are *packed* into one Python integer, bin ``i``'s count in bits
    ``64 i .. 64 i + 63``: merging two histograms is one integer addition (no carry
    can cross a field below 2**64 values), so answering over thousands of rollup rows
    costs an addition per row instead of a loop over its bins. Stored as bytes: the
    index of the lowest non-empty bin (2 bytes), then the fields from there up.
    """

    packed: int = 0
    count: int = 0
    sum_ms: float = 0.0
    max_ms: float = 0.0

    def add(self, ms: float) -> None:
        """Count one value."""
        ms = max(ms, 0.0)
        self.packed += 1 << (FIELD_BITS * bin_of(ms))
        self.count += 1
        self.sum_ms += ms
        if ms > self.max_ms:
            self.max_ms = ms

    def merge(self, other: Histogram) -> None:
        """Add another histogram's values to this one."""
        if not other.count:
            return
        self.packed += other.packed
        self.count += other.count
        self.sum_ms += other.sum_ms
        if other.max_ms > self.max_ms:
            self.max_ms = other.max_ms

    def counts(self) -> array[int]:
        """Count of every bin from 0 up to the highest non-empty one."""
        out = array("Q")
        if self.packed:
            size = (self.packed.bit_length() + FIELD_BITS - 1) // FIELD_BITS * _FIELD_BYTES
            out.frombytes(self.packed.to_bytes(size, "little"))
        return out

    @property
    def bins(self) -> dict[int, int]:
        """The non-empty bins: ``{bin: count}``."""
        return {i: n for i, n in enumerate(self.counts()) if n}

    def percentile(self, p: float) -> float | None:
        """The nearest-rank ``p``-th percentile (0 < p <= 100), within the documented bound."""
        return self.percentiles((p,))[0]

    def percentiles(self, ps: Sequence[float]) -> list[float | None]:
        """Several percentiles at once (the bins are unpacked once)."""
        if self.count == 0:
            return [None] * len(ps)
        cumulative = list(accumulate(self.counts()))
        out: list[float | None] = []
        for p in ps:
            rank = max(1, math.ceil(p / 100.0 * self.count))
            index = bisect_left(cumulative, rank)
            if index >= len(cumulative):
                out.append(self.max_ms)
            else:
                out.append(min(bin_value(index), self.max_ms))
        return out

    def encode(self) -> bytes:
        """The bins as bytes, for a rollup row (empty for no values)."""
        packed = self.packed
        if not packed:
            return b""
        low = ((packed & -packed).bit_length() - 1) // FIELD_BITS
        packed >>= FIELD_BITS * low
        size = (packed.bit_length() + FIELD_BITS - 1) // FIELD_BITS * _FIELD_BYTES
        return low.to_bytes(2, "little") + packed.to_bytes(size, "little")

    @staticmethod
    def decode(data: bytes | None, count: int, sum_ms: float, max_ms: float) -> Histogram:
        """Rebuild a histogram from a rollup row's columns."""
        packed = 0
        if data:
            low = int.from_bytes(data[:2], "little")
            packed = int.from_bytes(data[2:], "little") << (FIELD_BITS * low)
        return Histogram(packed, count, sum_ms, max_ms)


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
        d50, d95, d99 = d.percentiles((50, 95, 99))
        w50, w95 = w.percentiles((50, 95))
        counts = self.counts
        return {
            "total": sum(counts.values()),
            "counts": {s: counts.get(s, 0) for s in _END_VALUES},
            "duration_seconds": {
                "count": d.count,
                "mean": _s(d.sum_ms / d.count) if d.count else None,
                "p50": _s(d50),
                "p95": _s(d95),
                "p99": _s(d99),
                "max": _s(d.max_ms) if d.count else None,
            },
            "queue_wait_seconds": {
                "count": w.count,
                "mean": _s(w.sum_ms / w.count) if w.count else None,
                "p50": _s(w50),
                "p95": _s(w95),
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
class StatsRead:
    """Rollup rows of a range, and when the rollup was last folded (None: never)."""

    rows: list[StatsRow]
    folded_at: datetime | None


@dataclass(frozen=True, slots=True)
class StatsSummary:
    """A range of the rollup summed per jobconfig key and per bucket start."""

    per_jobconfig: dict[int, Summary]
    per_bucket: dict[datetime, Summary]
    folded_at: datetime | None


@dataclass(frozen=True, slots=True)
class JobsNow:
    """Cluster-wide figures of the metrics endpoint, read in one snapshot."""

    submitted: dict[int, int]  # jobconfig key -> jobs ever submitted (purged ones included)
    ended: dict[tuple[int, str], int]  # (jobconfig key, end status) -> jobs ended
    live: dict[str, int]  # live status -> jobs in it now
    queued_by_pool: dict[str, int]  # pool -> QUEUED jobs
    busy_by_pool: dict[str, int]  # pool -> INITIALIZING or RUNNING jobs
