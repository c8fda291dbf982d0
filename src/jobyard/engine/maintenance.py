"""Maintenance: end jobs of lost workers, catch up on sequencing, recover after a crash.

One server at a time does the sweep (leader election through the store), so several
replicas on one PostgreSQL never fight over the same jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path

from jobyard.core.errors import Conflict, NotFound
from jobyard.core.jobs import JobStatus
from jobyard.engine.bus import Bus
from jobyard.service.timeutil import utcnow
from jobyard.store.protocol import Store

log = logging.getLogger("jobyard.maintenance")

LEASE_LOST_REASON = "worker lost: its lease expired without renewal"
RESTART_REASON = "worker lost: the server restarted while the job was held"


async def sweep_once(store: Store, bus: Bus) -> tuple[int, int]:
    """One pass: fail expired leases, then promote any sequencing left behind.

    Returns (jobs failed, jobs promoted).
    """
    failed = await store.jobs_fail_expired_leases(now=utcnow(), reason=LEASE_LOST_REASON)
    for job in failed:
        log.warning("job %s ended FAILED: %s (worker %s)", job.id, LEASE_LOST_REASON, job.worker_id)
        bus.job_changed(job.id)
    promoted = 0
    for jobconfig_id in await store.jobconfigs_with_sequenced():
        promoted += len(await store.jobs_promote_sequenced(jobconfig_id))
    if failed or promoted:
        bus.work_available()
    return len(failed), promoted


async def maintenance_loop(store: Store, bus: Bus, *, holder: str, interval: float) -> None:
    """Run :func:`sweep_once` every ``interval`` seconds while this server leads."""
    while True:
        try:
            if await store.leader_try_acquire(
                name="maintenance", holder=holder, ttl_seconds=interval * 3
            ):
                await sweep_once(store, bus)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("maintenance sweep failed; retrying")
        await asyncio.sleep(interval)


def _process_belongs_to_job(pid: int, job_id: int) -> bool:
    """True if ``pid`` is alive and carries ``JOB_ID=<job_id>`` in its environment."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"JOB_ID={job_id}".encode() in environ.split(b"\0")


async def recover_local_orphans(store: Store, bus: Bus, *, home: str) -> int:
    """After a crash, end jobs held by this home's previous local workers as FAILED.

    Their leases would expire anyway; doing it at start is faster, and it also kills
    programs the dead server left running (checked by their JOB_ID), so nothing runs
    twice.
    """
    host = socket.gethostname()
    mine = [
        w.id
        for w in await store.workers_list()
        if w.kind == "local" and w.host == host and w.home == home and w.pid != os.getpid()
    ]
    if not mine:
        return 0
    count = 0
    for job in await store.jobs_held_by_workers(mine):
        if job.pid and _process_belongs_to_job(job.pid, job.id):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(job.pid, signal.SIGKILL)
        try:
            await store.job_end(
                job.id,
                worker_id=None,
                status=JobStatus.FAILED,
                exit_code=None,
                reason=RESTART_REASON,
                actor="system",
            )
            count += 1
            bus.job_changed(job.id)
        except (Conflict, NotFound):
            continue
    if count:
        bus.work_available()
    return count
