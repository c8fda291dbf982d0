"""Maintenance: end jobs of lost workers, submit due retries, catch up on sequencing,
recover after a crash, fold ended jobs into the statistics rollup.

One server at a time does the sweep (leader election through the store), so several
replicas on one PostgreSQL never fight over the same jobs. Every step is also safe when
two servers run it at once (guarded updates, row locks, ``ON CONFLICT``), so a leader
that is slow to notice it was replaced does no harm; the election only saves work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket

from jobyard.core.errors import Conflict, DatabaseUnavailable, NotFound
from jobyard.core.jobs import JobStatus
from jobyard.core.timeutil import utcnow
from jobyard.engine.bus import Bus
from jobyard.store.protocol import Store

log = logging.getLogger("jobyard.maintenance")

LEASE_LOST_REASON = "worker lost: its lease expired without renewal"
RESTART_REASON = "worker lost: the server restarted while the job was held"
PROCESS_DIED_REASON = "worker lost: its worker process died"
#: The leadership outlives its last renewal by this many sweep intervals: a leader that
#: died (``kill -9``, host lost) is replaced within that time plus one interval, and one
#: that stops cleanly hands over at once (``Store.leaders_release``).
LEADER_TTL_SWEEPS = 2.0


async def sweep_once(store: Store, bus: Bus, *, interval: float | None = None) -> tuple[int, int]:
    """One pass: fail expired leases, submit due retries (jobconfigs' retry policies,
    lost workers' jobs included: they ended FAILED just before), then promote any
    sequencing left behind.

    ``interval``: how often sweeps run; a longer pause since the last one (the database
    was unreachable, no server was up) does not count against leases, so jobs whose
    workers could not renew during an outage are not failed as lost once it is over.
    Returns (jobs failed, jobs promoted).
    """
    failed = await store.jobs_fail_expired_leases(
        now=utcnow(), reason=LEASE_LOST_REASON, sweep_interval=interval
    )
    for job in failed:
        log.warning("job %s ended FAILED: %s (worker %s)", job.id, LEASE_LOST_REASON, job.worker_id)
        bus.job_changed(job.id)
    retried = await store.jobs_submit_due_retries(now=utcnow())
    for job in retried:
        log.info("job %s submitted: %s", job.id, job.trigger)
        bus.job_changed(job.id)
    promoted = 0
    for jobconfig_id in await store.jobconfigs_with_sequenced():
        promoted += len(await store.jobs_promote_sequenced(jobconfig_id))
    if failed or promoted or retried:
        bus.work_available()
    return len(failed), promoted


#: Most fold transactions of one sweep (each up to ``batch`` jobs): a big backlog (the
#: first pass after an upgrade over a long history) is folded over several sweeps.
FOLD_ROUNDS_PER_SWEEP = 20


async def fold_stats(store: Store, *, lag_seconds: float, batch: int = 5000) -> int:
    """Fold newly ended jobs into the statistics rollup; how many were folded.

    Runs in the maintenance leader, off the job path: one short transaction per batch.
    """
    folded = 0
    for _ in range(FOLD_ROUNDS_PER_SWEEP):
        result = await store.jobstats_fold(lag_seconds=lag_seconds, batch=batch)
        folded += result.folded
        if not result.more:
            break
        await asyncio.sleep(0)  # let the API answer between batches
    return folded


async def maintenance_loop(
    store: Store,
    bus: Bus,
    *,
    holder: str,
    interval: float,
    stats_lag_seconds: float = 5.0,
    stats_batch: int = 5000,
) -> None:
    """Run :func:`sweep_once` and :func:`fold_stats` every ``interval`` s while leading."""
    while True:
        try:
            ttl = interval * LEADER_TTL_SWEEPS
            if await store.leader_try_acquire(name="maintenance", holder=holder, ttl_seconds=ttl):
                await sweep_once(store, bus, interval=interval)
                await fold_stats(store, lag_seconds=stats_lag_seconds, batch=stats_batch)
                # Renewed after the work too: the TTL then covers the pause, not a long
                # sweep or fold (were it to lapse meanwhile, the steps are safe twice).
                await store.leader_try_acquire(name="maintenance", holder=holder, ttl_seconds=ttl)
        except asyncio.CancelledError:
            raise
        except DatabaseUnavailable as exc:
            log.debug("maintenance sweep skipped: %s", exc.message)  # the store logs outages
        except Exception:
            log.exception("maintenance sweep failed; retrying")
        await asyncio.sleep(interval)


def _job_processes(work_root: str) -> dict[int, list[int]]:
    """Map ``JOB_ID`` -> pids of live processes of jobs run under ``work_root``.

    Every job program (and each child it forks) inherits ``JOB_ID`` and
    ``LOCAL_JOB_SPEC_DIR``; scanning ``/proc`` finds them even when the server died
    before recording the pid, and the folder tells this home's jobs from another's.
    """
    prefix = b"LOCAL_JOB_SPEC_DIR=" + work_root.rstrip("/").encode() + b"/"
    found: dict[int, list[int]] = {}
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:
            continue
        variables = environ.split(b"\0")
        if not any(v.startswith(prefix) for v in variables):
            continue
        for var in variables:
            if var.startswith(b"JOB_ID="):
                with contextlib.suppress(ValueError):
                    found.setdefault(int(var[7:]), []).append(int(entry.name))
                break
    return found


def _kill_job_processes(pids: list[int]) -> None:
    """SIGKILL the process groups (and the processes) of an orphaned job."""
    groups = set()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            groups.add(os.getpgid(pid))
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


async def recover_local_orphans(
    store: Store,
    bus: Bus,
    *,
    home: str,
    work_root: str,
    dead_pids: set[int] | None = None,
    reason: str = RESTART_REASON,
) -> int:
    """End jobs held by dead local workers of this home as FAILED; kill their programs.

    At start (``dead_pids`` None) every earlier local worker of this home is dead: the
    server crashed. When a worker process dies under a running server, ``dead_pids``
    names it. Leases would expire anyway; doing it now is faster, and it also kills the
    programs left running (found by JOB_ID), so nothing runs twice.
    """
    host = socket.gethostname()
    mine = [
        w.id
        for w in await store.workers_list()
        if w.kind == "local"
        and w.host == host
        and w.home == home
        and (w.pid in dead_pids if dead_pids is not None else w.pid != os.getpid())
    ]
    if not mine:
        return 0
    count = 0
    held = await store.jobs_held_by_workers(mine)
    running = _job_processes(work_root) if held else {}
    for job in held:
        _kill_job_processes(running.get(job.id, []))
        try:
            await store.job_end(
                job.id,
                worker_id=None,
                status=JobStatus.FAILED,
                exit_code=None,
                reason=reason,
                actor="system",
            )
            count += 1
            bus.job_changed(job.id)
        except (Conflict, NotFound):
            continue
    if count:
        bus.work_available()
    return count
