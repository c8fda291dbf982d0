"""``GET /api/v1/jobstats`` over 1,000,000 ended jobs: the rollup's fold and its answers.

For each engine (embedded SQLite, and PostgreSQL on a throwaway cluster):

1. a fresh database at the head revision, 20 jobconfigs;
2. ``--rows`` ended jobs bulk-inserted straight into ``jobs`` (one ``INSERT ... SELECT``
   over a generated series per batch; one job a second, so 1M jobs span ~11.6 days;
   FINISHED 70 %, ERROR / FAILED / CANCELLED 10 % each; run times 1 s to 10 min,
   queue waits 0-2 s);
3. the whole history is folded into the rollup through ``Store.jobstats_fold`` (what
   the maintenance leader does after an upgrade over an existing history), timed;
4. ``GET /api/v1/jobstats`` of a ``jobyard up`` (no workers, retention off: its
   defaults would purge most of the history meanwhile) on that database, as the
   admin (every jobconfig), ``--queries`` times per query shape; target p95 <= 50 ms;
   then ``GET /metrics`` as many times; then the same ``jobstats`` requests through the
   whole ASGI app inside this process (no socket, no second process to schedule).

The throwaway PostgreSQL cluster runs with ``fsync=off``.

    .venv/bin/python benchmarks/bench_jobstats.py [--rows 1000000]
        [--engines sqlite,postgresql] [--queries 200]
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
from _common import jobyard_up, percentile, summary_ms, verdict
from _history import (
    RAN,
    Sql,
    ended_job_columns,
    fresh_database,
    insert_ended_jobs,
    make_jobconfigs,
    run_over_engines,
)
from sqlalchemy import Engine, func, select, text

from jobyard.api.app import create_app
from jobyard.runtime import Runtime
from jobyard.settings import Settings
from jobyard.store.factory import open_store, upgrade_database
from jobyard.store.schema import jobstats
from jobyard.store.sql.base import make_sync_engine, normalize_url

TARGET_P95_MS = 50.0
JOBCONFIGS = 20
BATCH = 250_000


def _insert_history(engine: Engine, *, count: int, jc0: int, t0: int) -> None:
    """Insert ``count`` ended jobs whose run times spread over 1-600 s."""
    sql = Sql(engine.dialect.name == "postgresql")
    run_s = "(1 + (i * 7919) % 600)"
    exprs = ended_job_columns(
        sql,
        JOBCONFIGS,
        status_reason="NULL",
        exit_code="CASE i % 10 WHEN 0 THEN 1 WHEN 3 THEN 0 ELSE NULL END",
        acquired_at=sql.when_ran(sql.ts("i % 3")),
        started_at=sql.when_ran(sql.ts("3")),
        ended_at=f"CASE WHEN {RAN} THEN {sql.ts('3 + ' + run_s)} ELSE {sql.ts('1')} END",
    )
    insert_ended_jobs(
        engine, exprs, first=0, count=count, batch=BATCH, params={"jc0": jc0, "t0": t0}
    )
    if sql.pg:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE jobs"))


def _queries(jc0: int, end: datetime) -> dict[str, dict[str, str]]:
    """Query shapes: name -> query parameters."""
    iso = end.isoformat()
    return {
        "hour, last 24 h (default), all jobconfigs": {"until": iso},
        "day, last 30 days (default), all jobconfigs": {"bucket": "day", "until": iso},
        "hour, 7 days, one jobconfig": {
            "jobconfig_id": str(jc0),
            "since": (end - timedelta(days=7)).isoformat(),
            "until": iso,
        },
        "hour, 12 days (whole history), all jobconfigs": {
            "since": (end - timedelta(days=12)).isoformat(),
            "until": iso,
        },
    }


async def bench_engine(engine_name: str, rows: int, queries: int) -> list[list[object]]:
    """Load, fold, query on one engine; the table rows of its report."""
    out: list[list[object]] = []
    with fresh_database(engine_name, "jy-bench-jobstats-") as (url, home, is_sqlite):
        await asyncio.to_thread(upgrade_database, url)
        store = await open_store(url, migrate=False)
        engine = make_sync_engine(normalize_url(url))
        try:
            jc_ids = await make_jobconfigs(store, "stats", JOBCONFIGS)
            t0 = int(time.time()) - rows - 3600
            started = time.perf_counter()
            await asyncio.to_thread(_insert_history, engine, count=rows, jc0=jc_ids[0], t0=t0)
            load_s = time.perf_counter() - started
            print(f"  {engine_name}: {rows:,} jobs loaded in {load_s:.1f} s", flush=True)

            started = time.perf_counter()
            folded = 0
            while True:
                result = await store.jobstats_fold(lag_seconds=0, batch=5000)
                folded += result.folded
                if not result.more:
                    break
            fold_s = time.perf_counter() - started
            with engine.connect() as conn:
                rollup = conn.execute(select(func.count()).select_from(jobstats)).scalar_one()
            print(
                f"  {engine_name}: folded {folded:,} jobs in {fold_s:.1f} s "
                f"({folded / fold_s:,.0f} jobs/s) into {rollup:,} rollup rows",
                flush=True,
            )
            out.append(["fold (whole history, batches of 5,000)", f"{fold_s:.1f} s", "", ""])

            end = datetime.fromtimestamp(t0 + rows + 3600, UTC)
            # Retention off: with its defaults (10,000 jobs kept per jobconfig) the server
            # would spend the run purging 800,000 of these jobs (statistics unchanged).
            env = {"JOBYARD_RETENTION__ENABLED": "false"}
            if not is_sqlite:
                env["JOBYARD_DATABASE_URL"] = url
            with jobyard_up(workers=0, home=home, env=env) as server:
                async with httpx.AsyncClient(
                    base_url=server.url, headers=server.headers, timeout=60
                ) as client:
                    for name, params in _queries(jc_ids[0], end).items():
                        await client.get("/api/v1/jobstats", params=params)  # warm-up
                        timings = []
                        total = 0
                        for _ in range(queries):
                            t = time.perf_counter()
                            r = await client.get("/api/v1/jobstats", params=params)
                            timings.append(time.perf_counter() - t)
                            if r.status_code != 200:
                                raise RuntimeError(f"{name}: {r.status_code} {r.text}")
                            total = r.json()["overall"]["total"]
                        s = summary_ms(timings, ps=(50, 95))
                        p95 = percentile(timings, 95) * 1000
                        out.append(
                            [
                                name,
                                f"{s['p50']} / {s['p95']}",
                                f"{total:,}",
                                verdict(p95 <= TARGET_P95_MS),
                            ]
                        )
                    timings = []
                    for _ in range(queries):
                        t = time.perf_counter()
                        r = await client.get("/metrics")
                        timings.append(time.perf_counter() - t)
                        if r.status_code != 200:
                            raise RuntimeError(f"/metrics: {r.status_code} {r.text}")
                    s = summary_ms(timings, ps=(50, 95))
                    out.append(["GET /metrics (a scrape)", f"{s['p50']} / {s['p95']}", "", ""])
            # The same requests through the whole ASGI app in this process (no socket, no
            # second process): what the server itself spends, less the host's scheduling.
            settings = Settings(
                home=home,
                workers=0,
                database_url="" if is_sqlite else url,
                retention={"enabled": False},
            )
            app = create_app(Runtime(settings))
            async with app.router.lifespan_context(app):
                token = (home / "admin.token").read_text().strip()
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url="http://in-process",
                    headers={"Authorization": f"Bearer {token}"},
                ) as client:
                    for name, params in _queries(jc_ids[0], end).items():
                        await client.get("/api/v1/jobstats", params=params)  # warm-up
                        timings = []
                        for _ in range(queries):
                            t = time.perf_counter()
                            r = await client.get("/api/v1/jobstats", params=params)
                            timings.append(time.perf_counter() - t)
                            if r.status_code != 200:
                                raise RuntimeError(f"{name}: {r.status_code} {r.text}")
                        s = summary_ms(timings, ps=(50, 95))
                        p95 = percentile(timings, 95) * 1000
                        out.append(
                            [
                                f"in-process ASGI: {name}",
                                f"{s['p50']} / {s['p95']}",
                                "",
                                verdict(p95 <= TARGET_P95_MS),
                            ]
                        )
        finally:
            await store.close()
            engine.dispose()
    return out


def main() -> None:
    run_over_engines(
        "bench_jobstats",
        __doc__,
        200,
        bench_engine,
        "GET /api/v1/jobstats, {engine}, {rows} jobs",
        ["query", "p50 / p95 ms", "jobs counted", f"p95 <= {TARGET_P95_MS:g} ms"],
        "query",
        JOBCONFIGS,
    )


if __name__ == "__main__":
    main()
