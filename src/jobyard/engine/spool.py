"""Logs left in a remote blob store's local spool by a crash: upload those of ended jobs.

With a bucket as blob store, a running job's log is a spool file on its worker's host
until the job ends (see :mod:`jobyard.blobs.protocol`). When the server died meanwhile,
or the bucket did not answer when the job ended, the file stays there; at the next start
the logs of jobs that have ended (the orphan recovery just ended this host's) are sealed.
"""

from __future__ import annotations

import logging

from jobyard.blobs.keys import log_job
from jobyard.blobs.protocol import BlobStore
from jobyard.core.errors import JobyardError, NotFound
from jobyard.core.jobs import TERMINAL
from jobyard.store.protocol import Store

log = logging.getLogger("jobyard.blobs")


async def seal_spooled_logs(store: Store, blobs: BlobStore) -> int:
    """Seal the spooled logs of ended (or deleted) jobs; answer how many were sealed.

    A log that still fails to upload stays spooled (and readable from this host): it is
    logged, never fatal to the start.
    """
    sealed = 0
    for key in await blobs.spooled("logs"):
        job_id = log_job(key)
        if job_id is None:
            continue
        try:
            try:
                ended = (await store.job_get(job_id)).status in TERMINAL
            except NotFound:
                ended = True  # purged meanwhile: upload it, the orphan sweep decides
            if ended:
                await blobs.seal(key)
                sealed += 1
        except JobyardError as exc:
            log.warning("could not upload the spooled log %s: %s", key, exc.message)
    return sealed
