"""Throughput and failures over time as an inline SVG bar chart (no chart library).

The geometry is computed here; the template draws it with presentation attributes and
CSS classes only (no inline style: the Content-Security-Policy forbids it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jobyard.service.stats import BucketStats

WIDTH = 720
HEIGHT = 160
#: Statuses counted as failures in the chart.
FAILURE_STATUSES = ("ERROR", "FAILED")


@dataclass(frozen=True, slots=True)
class Bar:
    """One bucket: ended jobs (``total``) and how many of them failed."""

    start: datetime
    total: int
    failed: int
    x: float
    width: float
    total_height: float
    failed_height: float


@dataclass(frozen=True, slots=True)
class Chart:
    """Bars scaled to the largest bucket."""

    bars: list[Bar]
    peak: int
    width: int = WIDTH
    height: int = HEIGHT


def bars(buckets: list[BucketStats]) -> Chart:
    """The chart of ``buckets`` (an empty range gives no bars)."""
    peak = max((b.summary.total for b in buckets), default=0)
    slot = WIDTH / max(1, len(buckets))
    drawn = []
    for i, bucket in enumerate(buckets):
        total = bucket.summary.total
        failed = sum(bucket.summary.counts.get(s, 0) for s in FAILURE_STATUSES)
        scale = (HEIGHT - 4) / peak if peak else 0.0
        drawn.append(
            Bar(
                start=bucket.start,
                total=total,
                failed=failed,
                x=round(i * slot + 1, 2),
                width=round(max(1.0, slot - 2), 2),
                total_height=round(total * scale, 2),
                failed_height=round(failed * scale, 2),
            )
        )
    return Chart(bars=drawn, peak=peak)
