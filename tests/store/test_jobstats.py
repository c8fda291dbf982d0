"""The statistics rollup against a brute-force computation over a generated history.

Counts must match exactly; percentiles within the documented bound
(:data:`jobyard.core.stats.RELATIVE_ERROR`, or 1 ms under 1 ms); maxima exactly.
Both engines (the store suite's fixtures).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, insert, select, update

from jobyard.core.jobs import JobStatus
from jobyard.core.stats import RELATIVE_ERROR, Summary, merged
from jobyard.store.protocol import Store
from jobyard.store.schema import jobs, jobstats_pending
from jobyard.store.sql.stats import bucket_of
from tests.store.conftest import make_jobconfig

ENDS = ("FINISHED", "ERROR", "FAILED", "CANCELLED")
LIVE = ("WAITING", "SEQUENCED", "QUEUED", "RUNNING")
BASE = datetime(2026, 11, 1, tzinfo=UTC)


def _job_row(rng: random.Random, jc: int | None, status: str, created: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {
        "jobconfig_id": jc,
        "macros": {},
        "timeout": 0,
        "success_exit_codes": [0],
        "pool": "default",
        "priority": 0,
        "trigger": "api",
        "status": status,
        "created_at": created,
        "queued_at": None,
        "acquired_at": None,
        "started_at": None,
        "ended_at": None,
    }
    if status in ("WAITING", "SEQUENCED"):
        return row
    queued = created + timedelta(milliseconds=rng.randint(0, 2000))
    row["queued_at"] = queued
    if status == "QUEUED":
        return row
    if status == "CANCELLED":
        row["ended_at"] = queued + timedelta(milliseconds=rng.randint(0, 5000))
        return row
    acquired = queued + timedelta(microseconds=int(rng.lognormvariate(8, 2.5)))
    started = acquired + timedelta(milliseconds=rng.randint(1, 50))
    row.update(acquired_at=acquired, started_at=started)
    if status == "RUNNING":
        return row
    row["ended_at"] = started + timedelta(microseconds=int(rng.lognormvariate(12, 3)))
    return row


def _history(db: Engine, jcs: list[int | None], n: int, seed: int) -> None:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        status = rng.choice(ENDS * 4 + LIVE)
        created = BASE + timedelta(seconds=i * 97 + rng.randint(0, 90))
        rows.append(_job_row(rng, rng.choice(jcs), status, created))
    with db.begin() as conn:
        conn.execute(insert(jobs), rows)


def _brute(db: Engine, grain: str) -> dict[tuple[int, datetime], list[Any]]:
    """Ended jobs of the jobs table, grouped like the rollup."""
    groups: dict[tuple[int, datetime], list[Any]] = defaultdict(list)
    with db.connect() as conn:
        for r in conn.execute(select(jobs).where(jobs.c.ended_at.is_not(None))):
            groups[(r.jobconfig_id or 0, bucket_of(r.ended_at, grain))].append(r)
    return groups


def _nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def _close(estimate: float | None, exact: float) -> bool:
    return estimate is not None and abs(estimate - exact) <= RELATIVE_ERROR * exact + 1.0


def _check(summary: Summary, rows: list[Any]) -> None:
    counts = {s: sum(1 for r in rows if r.status == s) for s in ENDS}
    assert {s: summary.counts.get(s, 0) for s in ENDS} == counts
    durations = [(r.ended_at - r.started_at).total_seconds() * 1000 for r in rows if r.started_at]
    waits = [
        (r.acquired_at - r.queued_at).total_seconds() * 1000
        for r in rows
        if r.acquired_at and r.queued_at
    ]
    assert summary.duration.count == len(durations)
    assert summary.wait.count == len(waits)
    if durations:
        assert summary.duration.max_ms == max(durations)
        assert math.isclose(summary.duration.sum_ms, sum(durations), rel_tol=1e-9)
        for p in (50, 95, 99):
            exact = _nearest_rank(durations, p)
            assert _close(summary.duration.percentile(p), exact), (p, exact)
    if waits:
        for p in (50, 95):
            exact = _nearest_rank(waits, p)
            assert _close(summary.wait.percentile(p), exact), (p, exact)


async def _fold_all(store: Store, batch: int) -> None:
    for _ in range(1000):
        if not (await store.jobstats_fold(lag_seconds=0, batch=batch)).more:
            return
    raise AssertionError("the fold never caught up")


async def _check_all(store: Store, db: Engine) -> None:
    for grain in ("h", "d", "t"):
        brute = _brute(db, grain)
        rows = (
            await store.jobstats_read(grain=grain, since=None, until=None, jobconfig_keys=None)
        ).rows
        got = {(r.jobconfig_key, r.bucket_start): r.summary for r in rows}
        assert set(got) == set(brute), grain
        for key, summary in got.items():
            _check(summary, brute[key])
        # the sums per jobconfig and per bucket that GET /jobstats reads
        summed = await store.jobstats_summarize(
            grain=grain, since=None, until=None, jobconfig_keys=None
        )
        by_key: dict[int, list[Any]] = defaultdict(list)
        by_start: dict[datetime, list[Any]] = defaultdict(list)
        for (key, start), members in brute.items():
            by_key[key] += members
            by_start[start] += members
        assert set(summed.per_jobconfig) == set(by_key)
        assert set(summed.per_bucket) == set(by_start)
        for key, summary in summed.per_jobconfig.items():
            _check(summary, by_key[key])
        for start, summary in summed.per_bucket.items():
            _check(summary, by_start[start])
    # the union of every row answers like the whole history
    everything = (
        await store.jobstats_read(grain="d", since=None, until=None, jobconfig_keys=None)
    ).rows
    with db.connect() as conn:
        all_ended = list(conn.execute(select(jobs).where(jobs.c.ended_at.is_not(None))))
    _check(merged(r.summary for r in everything), all_ended)


async def test_rollup_matches_brute_force(store: Store, db: Engine) -> None:
    a = await make_jobconfig(store, "a")
    b = await make_jobconfig(store, "b")
    _history(db, [a.id, b.id, None], 1500, seed=7)
    await _fold_all(store, batch=97)  # many small batches: the watermark walks
    await _check_all(store, db)

    # Jobs that were live when passed are folded once they end, exactly once.
    with db.begin() as conn:
        pending = conn.execute(select(func.count()).select_from(jobstats_pending)).scalar_one()
        assert pending > 0
        live = conn.execute(select(jobs.c.id, jobs.c.created_at).where(jobs.c.status.in_(LIVE)))
        for job_id, created in list(live):
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(status=JobStatus.FAILED.value, ended_at=created + timedelta(hours=3))
            )
    await _fold_all(store, batch=50)
    await _fold_all(store, batch=50)
    await _check_all(store, db)
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(jobstats_pending)).scalar_one() == 0


async def test_filters_by_jobconfig_and_range(store: Store, db: Engine) -> None:
    a = await make_jobconfig(store, "a")
    b = await make_jobconfig(store, "b")
    _history(db, [a.id, b.id], 400, seed=3)
    await _fold_all(store, batch=1000)
    since, until = BASE + timedelta(hours=2), BASE + timedelta(hours=6)
    rows = (
        await store.jobstats_read(grain="h", since=since, until=until, jobconfig_keys=[a.id])
    ).rows
    assert rows and all(r.jobconfig_key == a.id for r in rows)
    assert all(since <= r.bucket_start < until for r in rows)
    brute = _brute(db, "h")
    expected = {k for k in brute if k[0] == a.id and since <= k[1] < until}
    assert {(r.jobconfig_key, r.bucket_start) for r in rows} == expected
    none = await store.jobstats_read(grain="h", since=None, until=None, jobconfig_keys=[])
    assert none.rows == []
    assert none.folded_at is not None


async def test_purge_keeps_statistics(store: Store, db: Engine) -> None:
    """Deleting ended jobs, folded or not, leaves the statistics as they were."""
    a = await make_jobconfig(store, "a")
    _history(db, [a.id], 300, seed=11)
    await _fold_all(store, batch=100)
    _history(db, [a.id], 200, seed=12)  # not folded yet
    with db.connect() as conn:
        brute = list(conn.execute(select(jobs).where(jobs.c.ended_at.is_not(None))))
        ended_ids = [r.id for r in brute]
    purged = await store.jobs_purge(ended_ids)
    assert sorted(purged.job_ids) == sorted(ended_ids)
    await _fold_all(store, batch=100)
    rows = (await store.jobstats_read(grain="t", since=None, until=None, jobconfig_keys=None)).rows
    _check(merged(r.summary for r in rows), brute)


async def test_lag_leaves_recent_jobs_for_later(store: Store, db: Engine) -> None:
    a = await make_jobconfig(store, "a")
    rng = random.Random(5)
    now = datetime.now(UTC)
    with db.begin() as conn:
        conn.execute(insert(jobs), [_job_row(rng, a.id, "FINISHED", now) for _ in range(5)])
    result = await store.jobstats_fold(lag_seconds=60)
    assert result.folded == 0
    empty = await store.jobstats_read(grain="t", since=None, until=None, jobconfig_keys=None)
    assert empty.rows == []
    now_figures = await store.jobs_now()  # the unfolded tail is counted all the same
    assert now_figures.submitted == {a.id: 5}
    assert now_figures.ended == {(a.id, "FINISHED"): 5}
    await _fold_all(store, batch=10)
    again = await store.jobs_now()
    assert again.submitted == {a.id: 5}
    assert again.ended == {(a.id, "FINISHED"): 5}


async def test_ranges_for_callers_who_see_everything(store: Store, db: Engine) -> None:
    """Bounded ranges over every jobconfig (all-jobconfigs rows, day rows for whole days,
    hour rows at the edges) answer like the jobs ended in the range."""
    a = await make_jobconfig(store, "a")
    b = await make_jobconfig(store, "b")
    # ~3 days of history, one job every ~3 minutes
    rng = random.Random(21)
    rows = []
    for i in range(1500):
        status = rng.choice(ENDS * 4 + LIVE)
        created = BASE + timedelta(seconds=i * 170 + rng.randint(0, 90))
        rows.append(_job_row(rng, rng.choice([a.id, b.id, None]), status, created))
    with db.begin() as conn:
        conn.execute(insert(jobs), rows)
    await _fold_all(store, batch=400)
    with db.connect() as conn:
        ended = list(conn.execute(select(jobs).where(jobs.c.ended_at.is_not(None))))
    ranges = [
        (BASE + timedelta(hours=5), BASE + timedelta(hours=61), "h"),  # two edges + 2 days
        (BASE + timedelta(hours=3), BASE + timedelta(hours=20), "h"),  # within a day
        (BASE, BASE + timedelta(days=2), "h"),  # whole days only
        (BASE + timedelta(hours=23), BASE + timedelta(hours=49), "h"),  # 1 h + 1 day + 1 h
        (BASE, BASE + timedelta(days=4), "d"),
    ]
    for since, until, grain in ranges:
        summed = await store.jobstats_summarize(
            grain=grain, since=since, until=until, jobconfig_keys=None
        )
        inside = [r for r in ended if since <= r.ended_at < until]
        by_key: dict[int, list[Any]] = defaultdict(list)
        by_start: dict[datetime, list[Any]] = defaultdict(list)
        for r in inside:
            by_key[r.jobconfig_id or 0].append(r)
            by_start[bucket_of(r.ended_at, grain)].append(r)
        assert set(summed.per_jobconfig) == set(by_key), (since, until)
        assert set(summed.per_bucket) == set(by_start), (since, until)
        for key, summary in summed.per_jobconfig.items():
            _check(summary, by_key[key])
        for start, summary in summed.per_bucket.items():
            _check(summary, by_start[start])
        # the same through the per-jobconfig path (as for a caller who sees only some)
        listed = await store.jobstats_summarize(
            grain=grain, since=since, until=until, jobconfig_keys=[0, a.id, b.id]
        )
        assert set(listed.per_jobconfig) == set(by_key)
        for key, summary in listed.per_jobconfig.items():
            _check(summary, by_key[key])
