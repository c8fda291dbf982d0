"""Lease expiry, with a clock that stops while nobody could sweep.

A worker renews its jobs' leases through the database; when the database is unreachable
nobody can renew, and nobody can sweep either. Once it is back, the first sweep must not
fail jobs merely because their workers could not renew during the outage. So the sweep
keeps its own clock: the time of the last sweep (by any server) is kept in the
``leaders`` table, and when the next sweep finds a pause much longer than the sweep
interval — database unreachable, every server down, no leader — it first pushes every
held lease back by the length of that pause. Leases then expire after as much time in
which their worker *could* have renewed as they had left when the pause began.

The time of the last sweep lives in the ``leaders`` row ``lease-clock`` (its
``expires_at`` column holds that time), so no schema change was needed; one sweeping
transaction reads and writes it under the row lock (PostgreSQL) or the write lock
(SQLite), so two servers sweeping at once cannot both push leases back for one pause.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from jobyard.core.jobs import HELD, JobStatus
from jobyard.core.models import Job
from jobyard.store.schema import UtcDateTime, jobs, leaders
from jobyard.store.sql.base import Tx, status_in
from jobyard.store.sql.transitions import SYSTEM, Pick, lock_jobconfigs, move, promote

log = logging.getLogger("jobyard.store")

#: Name of the ``leaders`` row whose ``expires_at`` is the time of the last sweep.
LEASE_CLOCK = "lease-clock"
#: A pause counts once the time since the last sweep exceeds this many sweep intervals.
#: Below it: scheduling jitter, or a maintenance leader that died and was replaced (its
#: leadership lapses after two intervals, the next sweep follows within one more) while
#: the database and the other servers were up, so workers could renew: no lease is
#: rewritten, and the jobs of a worker that died meanwhile end within their lease. Safe
#: while a lease outlasts such a pause plus a renewal period (defaults: 15 s against
#: 3.5 x 2 s + 3 s): a shorter outage cannot expire a lease renewed on time.
PAUSE_FACTOR = 3.5

_CLOCK_READ = select(leaders.c.expires_at).where(leaders.c.name == LEASE_CLOCK)
_CLOCK_WRITE = (
    update(leaders)
    .where(leaders.c.name == LEASE_CLOCK)
    .values(expires_at=bindparam("at", type_=UtcDateTime()))
)
_HELD_LEASES = select(jobs.c.id, jobs.c.lease_expires_at).where(
    status_in(HELD), jobs.c.lease_expires_at.is_not(None)
)
_PUSH_BACK = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("job_id"),
        # Unchanged since read: a lease its worker renewed meanwhile keeps the renewal.
        jobs.c.lease_expires_at == bindparam("old", type_=UtcDateTime()),
        status_in(HELD),
    )
    .values(lease_expires_at=bindparam("new", type_=UtcDateTime()))
)
_EXPIRED = select(jobs.c.id, jobs.c.jobconfig_id).where(
    status_in(HELD), jobs.c.lease_expires_at < bindparam("now", type_=UtcDateTime())
)


def tick_lease_clock(tx: Tx, now: datetime, sweep_interval: float) -> float:
    """Record a sweep at ``now``; after a pause, push held leases back by its length.

    Returns the pause in seconds (0.0 when the sweeps kept their pace).
    """
    select_clock = _CLOCK_READ.with_for_update() if tx.pg else _CLOCK_READ
    last: datetime | None = tx.conn.execute(select_clock).scalar()
    if last is None:
        _create_clock(tx, now)
        return 0.0
    tx.conn.execute(_CLOCK_WRITE, {"at": now})
    pause = (now - last).total_seconds()
    if pause <= sweep_interval * PAUSE_FACTOR:
        return 0.0
    shift = timedelta(seconds=pause)
    rows = tx.conn.execute(_HELD_LEASES).all()
    if rows:
        tx.conn.execute(
            _PUSH_BACK,
            [{"job_id": job_id, "old": lease, "new": lease + shift} for job_id, lease in rows],
        )
    log.warning(
        "no lease sweep for %.1f s (database unreachable, or no server running): the "
        "leases of %d held job(s) were pushed back by that time",
        pause,
        len(rows),
    )
    return pause


def _create_clock(tx: Tx, now: datetime) -> None:
    """First sweep ever: start the clock (a racing first sweep may have done it)."""
    insert = pg_insert if tx.pg else sqlite_insert
    stmt = insert(leaders).values(name=LEASE_CLOCK, holder="sweep", expires_at=now)
    tx.conn.execute(stmt.on_conflict_do_nothing(index_elements=[leaders.c.name]))


def fail_expired_leases(
    tx: Tx, now: datetime, reason: str, sweep_interval: float | None
) -> tuple[list[Job], float]:
    """FAILED for every held job whose lease expired (+ promotion); and the pause seen.

    With ``sweep_interval`` the lease clock runs first (:func:`tick_lease_clock`), in
    the same transaction, so a pause is always accounted for before anything expires.
    """
    pause = tick_lease_clock(tx, now, sweep_interval) if sweep_interval is not None else 0.0
    rows = tx.conn.execute(_EXPIRED, {"now": now}).all()
    if not rows:
        return [], pause
    lock_jobconfigs(tx, (jobconfig_id for _, jobconfig_id in rows))
    failed = move(
        tx,
        to=JobStatus.FAILED,
        pick=Pick.EXPIRED,
        params={"ids": [job_id for job_id, _ in rows], "expired_before": now},
        sets={"ended_at": tx.now, "status_reason": reason},
        actor=SYSTEM,
        reason=reason,
        order=_by_id,
    )
    for jobconfig_id in sorted({j.jobconfig_id for j in failed if j.jobconfig_id is not None}):
        promote(tx, jobconfig_id)
    return failed, pause


def _by_id(job: Job) -> int:
    return job.id
