"""Does a big history slow the hot paths? Listing and acquisition at 10k vs 1M ended jobs.

For each engine (embedded SQLite, and PostgreSQL on a throwaway cluster):

1. a fresh database at the head revision, 20 jobconfigs;
2. ended jobs are bulk-inserted straight into ``jobs`` (one ``INSERT ... SELECT`` over a
   generated series per batch: FINISHED 70 %, ERROR / FAILED / CANCELLED 10 % each,
   spread over the 20 jobconfigs, with plausible timestamps), and the ``job_events`` of
   a fraction of them (``--events-every``);
3. at ``--small`` rows and again at ``--rows`` rows it measures, through the real
   ``Store``:

   * **listing**: ``Store.jobs_list`` of 50 jobs filtered by a random jobconfig and end
     status (``--queries`` times; target p95 <= 20 ms), plus two variants (two statuses;
     status alone), and the same listing through ``GET /api/v1/jobs`` of a
     ``jobyard up`` (no workers) on the same database;
   * **submission**: ``Store.job_insert`` of 1,000 ad-hoc jobs (they become QUEUED);
   * **acquisition**: ``Store.job_acquire`` of those 1,000 QUEUED jobs, 10 per call
     (target: no slower with 1M history rows than with 10k); both three times over.

PostgreSQL statistics are refreshed with ``ANALYZE`` after each bulk load (what
autovacuum does in production); SQLite gets no ``ANALYZE`` (jobyard never runs one).
The throwaway cluster runs with ``fsync=off``: write latencies there are optimistic.

    .venv/bin/python benchmarks/bench_history.py [--rows 1000000] [--small 10000]
        [--engines sqlite,postgresql] [--queries 300] [--no-http]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from _common import jobyard_up, machine, percentile, summary_ms, table, verdict
from _history import Sql, ended_job_columns, fresh_database, insert_ended_jobs, make_jobconfigs
from sqlalchemy import Engine, func, select, text, update

from jobyard.core.jobs import JobStatus
from jobyard.core.models import JobFilter, NewJob
from jobyard.store.factory import open_store, upgrade_database
from jobyard.store.protocol import Store
from jobyard.store.schema import jobs
from jobyard.store.sql.base import encode_cursor, make_sync_engine, normalize_url

TARGET_LIST_P95_MS = 20.0
JOBCONFIGS = 20
BATCH = 250_000
END_STATUSES = ("FINISHED", "ERROR", "FAILED", "CANCELLED")
QUEUED_JOBS = 1_000
ACQUIRE_BATCH = 10
ACQUIRE_ROUNDS = 3


# -- bulk history -------------------------------------------------------------------------


def _insert_history(engine: Engine, *, first: int, count: int, jc0: int, t0: int) -> None:
    """Insert ended jobs ``i = first .. first + count - 1`` (one statement per batch)."""
    sql = Sql(engine.dialect.name == "postgresql")
    insert_ended_jobs(
        engine,
        ended_job_columns(sql, JOBCONFIGS),
        first=first,
        count=count,
        batch=BATCH,
        params={"jc0": jc0, "t0": t0},
    )


def _insert_events(engine: Engine, *, min_id: int, every: int) -> int:
    """The ``job_events`` of every ``every``-th ended job with ``id >= min_id``."""
    if every <= 0:
        return 0
    ran = "status <> 'CANCELLED'"
    pick = f"id >= :min_id AND id % {every} = 0"
    steps = [
        ("'SEQUENCED'", "created_at", "'user:admin'", "'submitted (api)'", "TRUE"),
        ("'QUEUED'", "queued_at", "'system'", "NULL", "TRUE"),
        ("'INITIALIZING'", "acquired_at", "'worker:bench'", "NULL", ran),
        ("'RUNNING'", "started_at", "'worker:bench'", "NULL", ran),
        ("status", "ended_at", "'worker:bench'", "status_reason", "TRUE"),
    ]
    total = 0
    with engine.begin() as conn:
        for status, at, actor, reason, cond in steps:
            cond = cond if engine.dialect.name == "postgresql" else cond.replace("TRUE", "1")
            result = conn.execute(
                text(
                    "INSERT INTO job_events (job_id, status, at, actor, reason) "
                    f"SELECT id, {status}, {at}, {actor}, {reason} FROM jobs "
                    f"WHERE {pick} AND {cond} AND status IN "
                    "('FINISHED', 'ERROR', 'FAILED', 'CANCELLED') ORDER BY id"
                ),
                {"min_id": min_id},
            )
            total += result.rowcount
    return total


def _analyze(engine: Engine) -> None:
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE jobs"))
            conn.execute(text("ANALYZE job_events"))


def _size(engine: Engine, sqlite_path: Path | None) -> str:
    if sqlite_path is not None:
        total = sum(p.stat().st_size for p in sqlite_path.parent.glob(sqlite_path.name + "*"))
        return f"{total / 2**20:.0f} MiB (file)"
    with engine.connect() as conn:
        size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
    return f"{size / 2**20:.0f} MiB (database)"


# -- measurements ---------------------------------------------------------------------------


async def _timed(n: int, call: Callable[[int], Any]) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await call(i)
        out.append(time.perf_counter() - t0)
    return out


@dataclass
class Stage:
    """Figures measured at one history size."""

    rows: int
    events: int
    size: str
    load_s: float
    timings: dict[str, list[float]] = field(default_factory=dict)


async def _measure(
    store: Store,
    jc_ids: list[int],
    queries: int,
    rng: random.Random,
    http: tuple[str, dict[str, str]] | None,
    history_ids: tuple[int, int],
) -> dict[str, list[float]]:
    picks = [(rng.choice(jc_ids), rng.choice(END_STATUSES)) for _ in range(queries)]
    # Cursors into the middle half of the history (a page "far back in time").
    low, high = history_ids
    quarter = (high - low) // 4
    rng_ids = [rng.randint(low + quarter, high - quarter) for _ in picks]
    found: dict[str, list[float]] = {}

    async def one_status(i: int) -> None:
        jc, status = picks[i]
        page = await store.jobs_list(
            JobFilter(jobconfig_id=jc, statuses=(JobStatus(status),)), cursor=None, limit=50
        )
        assert len(page.items) == 50, (jc, status, len(page.items))

    async def two_statuses(i: int) -> None:
        flt = JobFilter(jobconfig_id=picks[i][0], statuses=(JobStatus.ERROR, JobStatus.FAILED))
        assert len((await store.jobs_list(flt, cursor=None, limit=50)).items) == 50

    async def deep_page(i: int) -> None:
        # A page far back in time: the cursor points at a random id of the history.
        jc, status = picks[i]
        cursor = encode_cursor(rng_ids[i])
        flt = JobFilter(jobconfig_id=jc, statuses=(JobStatus(status),))
        assert (await store.jobs_list(flt, cursor=cursor, limit=50)).items

    async def status_only(i: int) -> None:
        flt = JobFilter(statuses=(JobStatus(picks[i][1]),))
        assert len((await store.jobs_list(flt, cursor=None, limit=50)).items) == 50

    await _timed(20, one_status)  # warm caches
    found["list: jobconfig + status (Store)"] = await _timed(queries, one_status)
    found["list: jobconfig + 2 statuses (Store)"] = await _timed(queries, two_statuses)
    found["list: status only (Store)"] = await _timed(queries, status_only)
    found["list: jobconfig + status, deep page (Store)"] = await _timed(queries, deep_page)
    if http is not None:
        url, headers = http
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:

            async def via_api(i: int) -> None:
                jc, status = picks[i]
                r = await client.get(
                    "/api/v1/jobs", params={"jobconfig_id": jc, "status": status, "limit": 50}
                )
                assert r.status_code == 200 and len(r.json()["items"]) == 50, r.text

            await _timed(20, via_api)
            found["list: jobconfig + status (HTTP API)"] = await _timed(queries, via_api)

    new = NewJob(
        jobconfig_id=None,
        package_id=None,
        entrypoint=None,
        command=["true"],
        macros={},
        timeout=0,
        success_exit_codes=[0],
    )

    async def submit(_i: int) -> None:
        job = await store.job_insert(new, actor="user:bench", reason=None)
        assert job.status is JobStatus.QUEUED

    async def acquire(_i: int) -> None:
        got = await store.job_acquire(
            worker_id="bench", pool="default", limit=ACQUIRE_BATCH, lease_seconds=600
        )
        assert len(got) == ACQUIRE_BATCH, len(got)

    # Rounds of (queue QUEUED_JOBS, acquire them all), pooled: one burst of noise from
    # a neighbour on a shared machine then weighs on a third of the samples only.
    submits: list[float] = []
    acquires: list[float] = []
    for _round in range(ACQUIRE_ROUNDS):
        submits += await _timed(QUEUED_JOBS, submit)
        acquires += await _timed(QUEUED_JOBS // ACQUIRE_BATCH, acquire)
    found["submit: job_insert (Store)"] = submits
    found[f"acquire: job_acquire x{ACQUIRE_BATCH} (Store)"] = acquires
    return found


def _end_acquired(engine: Engine) -> None:
    """The measured jobs join the history (a bulk shortcut, not the store's path)."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            update(jobs)
            .where(jobs.c.status == "INITIALIZING")
            .values(status="FINISHED", exit_code=0, started_at=now, ended_at=now)
        )


# -- engines ----------------------------------------------------------------------------------


async def bench_engine(
    engine_name: str, rows: int, small: int, queries: int, events_every: int, http: bool
) -> list[Stage]:
    """Both stages on one engine."""
    rng = random.Random(1130)
    stages: list[Stage] = []
    with fresh_database(engine_name, "jy-bench-history-") as (url, home, is_sqlite):
        await asyncio.to_thread(upgrade_database, url)
        store = await open_store(url, migrate=False)
        engine = make_sync_engine(normalize_url(url))
        try:
            jc_ids = await make_jobconfigs(store, "history", JOBCONFIGS)
            inserted = events = 0
            t0 = int(time.time()) - rows * 3 - 3600
            for target in (small, rows):
                started = time.perf_counter()
                with engine.connect() as conn:
                    min_id = (conn.execute(select(func.max(jobs.c.id))).scalar() or 0) + 1
                await asyncio.to_thread(
                    _insert_history,
                    engine,
                    first=inserted,
                    count=target - inserted,
                    jc0=jc_ids[0],
                    t0=t0,
                )
                events += await asyncio.to_thread(
                    _insert_events, engine, min_id=min_id, every=events_every
                )
                await asyncio.to_thread(_analyze, engine)
                with engine.connect() as conn:
                    id_range = conn.execute(select(func.min(jobs.c.id), func.max(jobs.c.id))).one()
                load_s = time.perf_counter() - started
                inserted = target
                db_file = home / "jobyard.db" if is_sqlite else None
                stage = Stage(target, events, _size(engine, db_file), load_s)
                if http:
                    env = {} if is_sqlite else {"JOBYARD_DATABASE_URL": url}
                    with jobyard_up(workers=0, home=home, env=env) as server:
                        stage.timings = await _measure(
                            store, jc_ids, queries, rng, (server.url, server.headers), id_range
                        )
                else:
                    stage.timings = await _measure(store, jc_ids, queries, rng, None, id_range)
                await asyncio.to_thread(_end_acquired, engine)
                stages.append(stage)
                print(
                    f"  {engine_name}: {target:,} history rows loaded in {load_s:.1f} s, "
                    f"{stage.size}; measured",
                    flush=True,
                )
        finally:
            await store.close()
            engine.dispose()
    return stages


def _report(engine_name: str, stages: list[Stage]) -> None:
    header = ["measure", *(f"{s.rows:,} rows: p50 / p95 ms" for s in stages), "ratio p50"]
    rows = []
    for name in stages[0].timings:
        cells = []
        for stage in stages:
            s = summary_ms(stage.timings[name], ps=(50, 95))
            cells.append(f"{s['p50']} / {s['p95']}")
        first, last = (percentile(st.timings[name], 50) for st in (stages[0], stages[-1]))
        rows.append([name, *cells, f"{last / first:.2f}x"])
    loads = ", ".join(
        f"{s.rows:,} rows + {s.events:,} events: {s.size}, loaded in {s.load_s:.1f} s"
        for s in stages
    )
    print(table(f"History, {engine_name} ({loads})", header, rows))
    big = stages[-1]
    p95 = percentile(big.timings["list: jobconfig + status (Store)"], 95) * 1000
    print(
        f"\n{engine_name}: listing p95 at {big.rows:,} rows = {p95:.2f} ms; target <= "
        f"{TARGET_LIST_P95_MS:g} ms: {verdict(p95 <= TARGET_LIST_P95_MS)}"
    )
    key = f"acquire: job_acquire x{ACQUIRE_BATCH} (Store)"
    small_p50, big_p50 = (percentile(s.timings[key], 50) * 1000 for s in (stages[0], big))
    small_p95, big_p95 = (percentile(s.timings[key], 95) * 1000 for s in (stages[0], big))
    # "No slower" with some room for timer noise on a shared 2-core machine.
    ok = big_p50 <= small_p50 * 1.25 + 0.2
    print(
        f"{engine_name}: acquisition p50 {small_p50:.2f} ms -> {big_p50:.2f} ms "
        f"(p95 {small_p95:.2f} -> {big_p95:.2f}); target no slower: {verdict(ok)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="big history size")
    parser.add_argument("--small", type=int, default=10_000, help="small history size")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--events-every", type=int, default=10, help="0 = no job_events")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP API listing")
    args = parser.parse_args()
    if args.small >= args.rows:
        parser.error("--small must be below --rows")
    print(
        f"bench_history: {args.small:,} then {args.rows:,} ended jobs, {JOBCONFIGS} "
        f"jobconfigs, events for 1 job in {args.events_every}; {machine()}",
        flush=True,
    )
    for engine_name in args.engines.split(","):
        stages = asyncio.run(
            bench_engine(
                engine_name.strip(),
                args.rows,
                args.small,
                args.queries,
                args.events_every,
                not args.no_http,
            )
        )
        _report(engine_name.strip(), stages)


if __name__ == "__main__":
    main()
