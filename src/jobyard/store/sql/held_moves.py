"""Moves of many held jobs at once: a worker's batch of RUNNING and end reports.

A worker process's reports arrive in batches (:mod:`jobyard.engine.reporter`); written
one ``UPDATE`` per job, a batch of eight ends costs eight statements to send, parse and
run. :func:`move_held_many` writes every move of one kind (same target status, same
columns) in one statement on PostgreSQL::

    UPDATE jobs SET status = 'FINISHED', ended_at = u.c0, ...
    FROM unnest(:ids, :c0, ...) AS u(job_id, c0, ...)
    WHERE jobs.id = u.job_id AND (jobs.status IN (sources)) IS TRUE
      AND jobs.worker_id = :worker RETURNING jobs.id, jobs.jobconfig_id

with the guard of the single-job move (status sources and holder), so a job that is not
held any more is not moved, as before. SQLite runs the single-job statement per job (a
statement there is a call into the library, not a round trip).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Dialect

from jobyard.core.jobs import TRANSITIONS, JobStatus, sources_of
from jobyard.store.schema import jobs
from jobyard.store.sql.base import Tx, status_in
from jobyard.store.sql.prepared import array_param, bind_processor, run_raw
from jobyard.store.sql.transitions import held_move_row

_Key = tuple[JobStatus, tuple[str, ...], JobStatus | None, int]
#: Built statements: (to, columns, through, dialect id) -> (SQL, bind processors).
_FORMS: dict[_Key, tuple[str, tuple[Any, ...]]] = {}


def _form(
    to: JobStatus, columns: tuple[str, ...], through: JobStatus | None, dialect: Dialect
) -> tuple[str, tuple[Any, ...]]:
    key = (to, columns, through, id(dialect))
    found = _FORMS.get(key)
    if found is not None:
        return found
    first = to if through is None else through
    if through is not None and to not in TRANSITIONS[through]:
        raise ValueError(f"no move from {through} into {to}")
    quote = dialect.identifier_preparer
    aliases = [f"c{i}" for i in range(len(columns))]
    sets = ", ".join(
        f"{quote.quote(col)} = u.{alias}" for col, alias in zip(columns, aliases, strict=True)
    )
    casts = ["%b::BIGINT[]"] + [array_param(jobs.c[col].type, dialect) for col in columns]
    guard = status_in(sources_of(first)).compile(dialect=dialect)
    sql = (
        f"UPDATE jobs SET status = '{to.value}'{', ' if sets else ''}{sets} "
        f"FROM unnest({', '.join(casts)}) AS u(job_id{''.join(', ' + a for a in aliases)}) "
        f"WHERE jobs.id = u.job_id AND ({guard}) IS TRUE AND jobs.worker_id = %s "
        "RETURNING jobs.id, jobs.jobconfig_id"
    )
    processors = tuple(bind_processor(jobs.c[col].type, dialect) for col in columns)
    _FORMS[key] = (sql, processors)
    return sql, processors


def move_held_many(
    tx: Tx,
    worker_id: str,
    to: JobStatus,
    rows: Sequence[tuple[int, dict[str, Any]]],
    through: JobStatus | None = None,
) -> dict[int, int | None]:
    """Move each job of ``rows`` (``(job_id, column values)``, the same columns in every
    row) held by ``worker_id`` into ``to`` (passing ``through`` on the way, when given),
    guarded like :func:`jobyard.store.sql.transitions.move_held`; no event is recorded
    (the caller records them). ``{job_id: jobconfig_id}`` of the jobs that moved.
    """
    if not rows:
        return {}
    if not tx.pg or len(rows) == 1:
        moved: dict[int, int | None] = {}
        for job_id, sets in rows:
            done, jobconfig_id = held_move_row(tx, job_id, worker_id, to, sets, through)
            if done:
                moved[job_id] = jobconfig_id
        return moved
    columns = tuple(sorted(rows[0][1]))
    for _job_id, sets in rows:
        if tuple(sorted(sets)) != columns:
            raise ValueError("every row of a batched move sets the same columns")
    # In id order: the join visits (and locks) the rows in the order of the arrays.
    ordered = sorted(rows, key=lambda row: row[0])
    sql, processors = _form(to, columns, through, tx.conn.dialect)
    arrays: list[list[Any]] = [[job_id for job_id, _sets in ordered]]
    for col, processor in zip(columns, processors, strict=True):
        values = [sets[col] for _job_id, sets in ordered]
        if processor is not None:
            values = [None if v is None else processor(v) for v in values]
        arrays.append(values)
    cursor = run_raw(tx.conn, sql, (*arrays, worker_id))
    try:
        found = cursor.fetchall()
    finally:
        cursor.close()
    return {int(row[0]): row[1] for row in found}


__all__ = ["move_held_many"]
