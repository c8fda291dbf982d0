"""A large history of ended jobs, generated inside the database (benchmarks only).

One ``INSERT … SELECT`` per batch over a number series (``generate_series`` on
PostgreSQL, a recursive CTE on SQLite) writes ended jobs ``i = lo .. hi`` whose columns
are SQL expressions of ``i``: a million rows load in seconds, not in a million round
trips. :func:`ended_job_columns` gives every ``jobs`` column; a benchmark overrides the
ones it shapes (run times, exit codes...). Seven jobs in ten end FINISHED, one each ERROR,
FAILED and CANCELLED; CANCELLED ones never reached a worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import machine, table
from sqlalchemy import Engine, func, select, text

from jobyard.core.models import JobConfigSpec
from jobyard.store.protocol import Store
from jobyard.store.schema import jobs

#: End status of job ``i``.
STATUS = (
    "CASE i % 10 WHEN 0 THEN 'ERROR' WHEN 1 THEN 'FAILED' WHEN 2 THEN 'CANCELLED' "
    "ELSE 'FINISHED' END"
)
#: Whether job ``i`` went through a worker (every end status but CANCELLED).
RAN = "(i % 10 <> 2)"


@dataclass(frozen=True)
class Sql:
    """Dialect-dependent SQL snippets over the series variable ``i``."""

    pg: bool

    def ts(self, offset: str | int) -> str:
        """The timestamp ``:t0 + i + offset`` seconds (``:t0``: an epoch second)."""
        if self.pg:
            return f"to_timestamp(:t0 + i + {offset})"
        return f"strftime('%Y-%m-%d %H:%M:%S', :t0 + i + {offset}, 'unixepoch') || '.000000'"

    def json(self, value: str) -> str:
        """A JSON literal."""
        return f"CAST('{value}' AS JSON)" if self.pg else f"'{value}'"

    def when_ran(self, value: str) -> str:
        """``value`` for jobs that ran, else NULL."""
        return f"CASE WHEN {RAN} THEN {value} ELSE NULL END"

    @property
    def div10(self) -> str:
        """``i / 10`` as an integer."""
        return "div(i, 10)" if self.pg else "(i / 10)"


def ended_job_columns(sql: Sql, jobconfigs: int, **overrides: str) -> dict[str, str]:
    """An SQL expression of ``i`` for every ``jobs`` column but ``id``.

    ``:jc0`` is the first of ``jobconfigs`` jobconfig ids (ten jobs in a row share one),
    ``:t0`` the epoch second of ``i = 0``, ``:seq0`` the sequencing number before the
    batch. ``overrides`` replace columns by name.
    """
    columns = {
        "jobconfig_id": f":jc0 + ({sql.div10} % {jobconfigs})",
        "package_id": "NULL",
        "entrypoint": "NULL",
        "command": sql.json('["true"]'),
        "macros": sql.json("{}"),
        "timeout": "0",
        "success_exit_codes": sql.json("[0]"),
        "pool": "'default'",
        "priority": "0",
        "trigger": "'api'",
        "submitted_by": "'admin'",
        "rerun_of": "NULL",
        "status": STATUS,
        "status_reason": (
            "CASE i % 10 WHEN 0 THEN 'exit code 1' WHEN 1 THEN 'aborted: by admin' "
            "WHEN 2 THEN 'cancelled by admin' ELSE NULL END"
        ),
        "exit_code": "CASE i % 10 WHEN 0 THEN 1 WHEN 1 THEN NULL WHEN 2 THEN NULL ELSE 0 END",
        "seq": ":seq0 + i + 1",
        "worker_id": sql.when_ran("'bench-host:1:worker'"),
        "lease_expires_at": "NULL",
        "abort_requested_at": "NULL",
        "pid": sql.when_ran("1000 + i % 30000"),
        "created_at": sql.ts(0),
        "sequenced_at": sql.ts(0),
        "queued_at": sql.ts(0),
        "acquired_at": sql.when_ran(sql.ts(0)),
        "started_at": sql.when_ran(sql.ts(1)),
        "ended_at": f"CASE WHEN {RAN} THEN {sql.ts(2)} ELSE {sql.ts(0)} END",
        "schedule_id": "NULL",
        "scheduled_for": "NULL",
        "template_id": "NULL",
        "resolved_macros": sql.when_ran(sql.json("{}")),
        "definers": sql.json("[]"),
    }
    unknown = set(overrides) - set(columns)
    if unknown:
        raise ValueError(f"no jobs columns {sorted(unknown)}")
    columns.update(overrides)
    wanted = sorted(c.name for c in jobs.c if c.name != "id")
    if sorted(columns) != wanted:  # the schema changed: update the columns above
        raise RuntimeError(f"jobs columns {wanted} != generated {sorted(columns)}")
    return columns


def insert_ended_jobs(
    engine: Engine,
    exprs: dict[str, str],
    *,
    first: int,
    count: int,
    batch: int,
    params: dict[str, Any],
) -> None:
    """Insert jobs ``i = first .. first + count - 1``, ``batch`` per statement."""
    pg = engine.dialect.name == "postgresql"
    wanted = [c.name for c in jobs.c if c.name != "id"]
    columns = ", ".join(wanted)
    values = ", ".join(exprs[c] for c in wanted)
    if pg:
        series = "generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint))"
        sql = f"INSERT INTO jobs ({columns}) SELECT {values} FROM {series} AS i"
    else:
        sql = (
            f"INSERT INTO jobs ({columns}) WITH RECURSIVE n(i) AS "
            "(SELECT :lo UNION ALL SELECT i + 1 FROM n WHERE i < :hi) "
            f"SELECT {values} FROM n"
        )
    for lo in range(first, first + count, batch):
        hi = min(lo + batch, first + count) - 1
        with engine.begin() as conn:
            seq0 = conn.execute(select(func.coalesce(func.max(jobs.c.seq), 0))).scalar_one()
            conn.execute(text(sql), {**params, "lo": lo, "hi": hi, "seq0": seq0})
            if pg:
                conn.execute(text("SELECT setval('jobs_seq_seq', (SELECT max(seq) FROM jobs))"))


@contextlib.contextmanager
def fresh_database(engine_name: str, prefix: str) -> Iterator[tuple[str, Path, bool]]:
    """``(url, home, is_sqlite)``: a fresh database of ``engine_name`` and a server home.

    On SQLite the database is the home's own ``jobyard.db``; PostgreSQL is a throwaway
    cluster (``tests/support/pg.py``), stopped afterwards.
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        home = Path(tmp)
        if engine_name == "sqlite":
            yield f"sqlite:///{home / 'jobyard.db'}", home, True
            return
        from tests.support.pg import start_cluster

        cluster = start_cluster()
        try:
            yield cluster.url(cluster.create_database()), home, False
        finally:
            cluster.stop()


async def make_jobconfigs(store: Store, prefix: str, count: int) -> list[int]:
    """Ids of ``count`` new unlimited jobconfigs named ``<prefix>-00``, ``<prefix>-01``..."""
    return [
        (
            await store.jobconfig_insert(
                JobConfigSpec(name=f"{prefix}-{k:02d}", command=["true"], max_concurrent=0)
            )
        ).id
        for k in range(count)
    ]


def run_over_engines(
    script: str,
    doc: str,
    default_queries: int,
    bench_engine: Callable[[str, int, int], Awaitable[list[list[object]]]],
    title: str,
    header: list[str],
    unit: str,
    jobconfigs: int,
) -> None:
    """The command line shared by the big-history benchmarks: ``--rows``, ``--engines``,
    ``--queries``; one table per engine, ``title`` formatted with ``engine`` and ``rows``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--queries", type=int, default=default_queries)
    args = parser.parse_args()
    print(
        f"{script}: {args.rows:,} ended jobs, {jobconfigs} jobconfigs, "
        f"{args.queries} requests per {unit}; {machine()}",
        flush=True,
    )
    for engine_name in args.engines.split(","):
        found = asyncio.run(bench_engine(engine_name.strip(), args.rows, args.queries))
        print(table(title.format(engine=engine_name, rows=f"{args.rows:,}"), header, found))
