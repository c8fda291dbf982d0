"""Prometheus metrics, read from the database at scrape time (cluster-wide).

Nothing here runs on the job path: a scrape reads the statistics rollup (all-time
rows: one per jobconfig), the jobs not folded into it yet (a primary-key range),
live jobs by status and pool, the workers' slots and the earliest due schedule. Every
replica answers the same cluster-wide job figures; scrape one replica (or aggregate
with ``max``), while ``jobyard_http_*`` is each replica's own traffic.

Who may read: admins (not a job's SESSION_ID) and the ``metrics.token`` bearer.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Iterator
from datetime import timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from jobyard.core.errors import Forbidden
from jobyard.core.stats import Histogram, bin_value
from jobyard.core.timeutil import utcnow
from jobyard.service.context import Context, Principal

#: ``token_kind`` of the principal the metrics token authenticates as (``/metrics`` only).
METRICS_TOKEN_KIND = "metrics"
#: Upper bounds (seconds) of the duration and queue-wait histograms.
DURATION_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
ADHOC_LABEL = "(ad-hoc)"


def metrics_principal() -> Principal:
    """The caller a valid ``metrics.token`` stands for: it may read ``/metrics`` only."""
    return Principal(name="metrics", role="metrics", token_kind=METRICS_TOKEN_KIND)


def is_metrics_token(configured: str, authorization: str | None) -> bool:
    """Whether an ``Authorization`` header carries the metrics token (constant time)."""
    if not configured or authorization is None:
        return False
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), configured.encode())


def require_reader(principal: Principal) -> None:
    """403 unless the caller is an admin (not a job token) or the metrics token."""
    if principal.token_kind == METRICS_TOKEN_KIND:
        return
    if principal.is_admin and not principal.is_job:
        return
    raise Forbidden(
        "/metrics needs an admin's token or the metrics token (setting metrics.token, "
        "JOBYARD_METRICS__TOKEN)",
        {"route": "/metrics"},
    )


class _Families(Collector):
    """A collector handing out metric families built beforehand (one scrape's)."""

    def __init__(self, families: list[object]) -> None:
        self._families = families

    def collect(self) -> Iterator[object]:  # type: ignore[override]
        """The families, as built."""
        yield from self._families


def _histogram_buckets(h: Histogram, bounds: Iterable[float]) -> list[tuple[str, float]]:
    """Cumulative Prometheus buckets from a rollup histogram (each bin at its middle)."""
    ordered = sorted(h.bins.items())
    out: list[tuple[str, float]] = []
    seen = 0
    i = 0
    for bound in bounds:
        while i < len(ordered) and bin_value(ordered[i][0]) / 1000.0 <= bound:
            seen += ordered[i][1]
            i += 1
        out.append((repr(float(bound)), float(seen)))
    out.append(("+Inf", float(h.count)))
    return out


async def scrape(
    ctx: Context, principal: Principal, *, extra: Iterable[CollectorRegistry]
) -> bytes:
    """The exposition text of every jobyard metric (and of ``extra`` registries)."""
    require_reader(principal)
    store = ctx.store
    names = {}
    cursor: str | None = None
    while True:
        page = await store.jobconfigs_list(cursor=cursor, limit=500)
        names.update({jc.id: jc.name for jc in page.items})
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    def label(key: int) -> str:
        if key == 0:
            return ADHOC_LABEL
        return names.get(key, f"#{key}")

    now_figures = await store.jobs_now()
    totals = await store.jobstats_read(grain="t", since=None, until=None, jobconfig_keys=None)
    folded_at = totals.folded_at
    workers = await store.workers_list()
    next_due = await store.schedules_next_due()
    now = utcnow()

    submitted = CounterMetricFamily(
        "jobyard_jobs_submitted",
        "Jobs submitted, by jobconfig (cluster-wide).",
        labels=["jobconfig"],
    )
    for key, n in sorted(now_figures.submitted.items()):
        submitted.add_metric([label(key)], n)
    ended = CounterMetricFamily(
        "jobyard_jobs_ended",
        "Jobs ended, by jobconfig and end status (cluster-wide).",
        labels=["jobconfig", "status"],
    )
    for (key, status), n in sorted(now_figures.ended.items()):
        ended.add_metric([label(key), status], n)
    durations = HistogramMetricFamily(
        "jobyard_job_duration_seconds",
        "Run time of ended jobs (started to ended), by jobconfig; folded jobs only.",
        labels=["jobconfig"],
    )
    waits = HistogramMetricFamily(
        "jobyard_job_queue_wait_seconds",
        "Time from QUEUED to acquired by a worker, by jobconfig; folded jobs only.",
        labels=["jobconfig"],
    )
    for row in totals.rows:
        name = label(row.jobconfig_key)
        d, w = row.summary.duration, row.summary.wait
        durations.add_metric([name], _histogram_buckets(d, DURATION_BUCKETS), d.sum_ms / 1000.0)
        waits.add_metric([name], _histogram_buckets(w, WAIT_BUCKETS), w.sum_ms / 1000.0)
    live = GaugeMetricFamily("jobyard_jobs", "Jobs in each live status now.", labels=["status"])
    for status, n in now_figures.live.items():
        live.add_metric([status], n)
    depth = GaugeMetricFamily("jobyard_queue_depth", "QUEUED jobs by pool.", labels=["pool"])
    busy = GaugeMetricFamily(
        "jobyard_slots_busy",
        "Slots holding a job (INITIALIZING or RUNNING), by pool.",
        labels=["pool"],
    )
    total = GaugeMetricFamily(
        "jobyard_slots_total",
        "Slots of workers alive (recent heartbeat), by pool.",
        labels=["pool"],
    )
    fresh = now - timedelta(
        seconds=max(ctx.settings.lease_seconds, 3 * ctx.settings.heartbeat_seconds)
    )
    slots: dict[str, int] = {}
    for worker in workers:
        if worker.heartbeat_at >= fresh and not worker.draining:
            slots[worker.pool] = slots.get(worker.pool, 0) + worker.slots
    pools = sorted(set(slots) | set(now_figures.queued_by_pool) | set(now_figures.busy_by_pool))
    for pool in pools:
        depth.add_metric([pool], now_figures.queued_by_pool.get(pool, 0))
        busy.add_metric([pool], now_figures.busy_by_pool.get(pool, 0))
        total.add_metric([pool], slots.get(pool, 0))
    lateness = GaugeMetricFamily(
        "jobyard_scheduler_lateness_seconds",
        "How late the most overdue schedule firing is (0: none is due).",
    )
    lateness.add_metric([], max(0.0, (now - next_due).total_seconds()) if next_due else 0.0)
    fold_age = GaugeMetricFamily(
        "jobyard_stats_fold_age_seconds",
        "Seconds since the statistics rollup was last folded (histograms lag by this much).",
    )
    fold_age.add_metric([], (now - folded_at).total_seconds() if folded_at else -1.0)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        _Families(
            [submitted, ended, durations, waits, live, depth, busy, total, lateness, fold_age]
        )
    )
    return generate_latest(registry) + b"".join(generate_latest(r) for r in extra)
