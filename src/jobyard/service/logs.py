"""Job logs: read whole, from an offset, or follow live until the job ends."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from jobyard.blobs.keys import log_key
from jobyard.core.errors import DatabaseUnavailable, NotFound
from jobyard.core.jobs import TERMINAL, JobStatus
from jobyard.core.models import Job
from jobyard.service import access
from jobyard.service.context import Context, Principal

#: A follower reads the log file again this often...
FOLLOW_POLL_SECONDS = 0.2
#: ...and the job's status (a database read) only this often, or at once when the bus
#: says the job changed (a local job's end does).
FOLLOW_STATUS_SECONDS = 1.0


async def open_log(ctx: Context, principal: Principal, job_id: int) -> tuple[Job, str]:
    """Return the job and its log key, or ``NotFound`` saying why there is no log.

    The caller must be allowed to view the job (404 as for a missing job otherwise).
    """
    job = await ctx.store.job_get(job_id)
    await access.require_job(ctx, principal, "view", job)
    if job.status is JobStatus.CANCELLED:
        raise NotFound(
            f"job {job_id} was cancelled before a worker acquired it: cancelled jobs have no log",
            {"job_id": job_id, "status": job.status},
        )
    key = log_key(job_id)
    if job.status in (JobStatus.WAITING, JobStatus.SEQUENCED, JobStatus.QUEUED):
        raise NotFound(
            f"job {job_id} is {job.status}: its log begins once a worker runs it",
            {"job_id": job_id, "status": job.status},
        )
    if job.acquired_at is None and not await ctx.blobs.exists(key):
        # Ended without reaching a worker. (A worker creates the file with the first
        # line: the log of an acquired job that printed nothing is empty, not missing.)
        raise NotFound(
            f"job {job_id} ended {job.status} without producing a log"
            + (f" ({job.status_reason})" if job.status_reason else ""),
            {"job_id": job_id, "status": job.status},
        )
    return job, key


async def stream_log(
    ctx: Context, job_id: int, key: str, *, offset: int, follow: bool
) -> AsyncIterator[bytes]:
    """Yield the log from ``offset``; with ``follow``, keep going until the job has ended.

    A follower reads the file every :data:`FOLLOW_POLL_SECONDS` but the job's status
    only every :data:`FOLLOW_STATUS_SECONDS` or when the bus announces a change of the
    job: the status is read before the file, so the last read after the end is whole.

    The log is a file, not a database row: while the database is unavailable a follower
    keeps receiving what the job writes (the answer has begun, a 503 is no longer
    possible), and learns that the job ended once the database is back.
    """
    changed, checked = True, 0.0
    while True:
        ended = not follow
        if follow and (changed or time.monotonic() - checked >= FOLLOW_STATUS_SECONDS):
            checked = time.monotonic()
            try:
                ended = (await ctx.store.job_get(job_id)).status in TERMINAL
            except DatabaseUnavailable:
                ended = False
        try:  # one read, no existence check first: on a bucket each is a request or two
            async for chunk in ctx.blobs.read_chunks(key, offset=offset):
                offset += len(chunk)
                yield chunk
        except NotFound:
            pass  # no line yet (or the log was purged meanwhile)
        if ended:
            return
        changed = await ctx.bus.wait_job(job_id, FOLLOW_POLL_SECONDS)
