"""The purge pass: ended jobs past their keep, old audit rows, unused package blobs.

Run in the background by the server that holds the ``retention`` leadership (one
replica at a time), and on demand (``POST /api/v1/admin/purge``, ``jobyard purge``).

How it stays off the job path: every transaction covers one batch of at most
``retention.batch_size`` rows and the pass sleeps briefly between batches, so on
SQLite the write lock is held for a few milliseconds at a time and workers' status
writes slip in between. Blob files are deleted after the rows' commit: a crash in
between leaves orphan files, never rows naming missing files. The orphan sweep at the
end of each pass removes files under ``logs/``, ``outputs/``, ``payloads/`` and
``packages/`` that no row refers to and that are older than ``blob_grace_hours``.

Package blobs: a package that no jobconfig, template or job refers to, created and last
uploaded more than ``blob_grace_hours`` ago, goes. An upload writes (or touches) its
blob before recording the package and checks the blob is still there afterwards; the
purge moves a blob aside, re-reads the package rows and puts the blob back if a row for
that content appeared meanwhile. Either way no package row is left without its blob.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

from jobyard.blobs.keys import job_prefixes, log_key, package_key
from jobyard.blobs.protocol import BlobStore
from jobyard.core.errors import BlobsUnavailable, DatabaseUnavailable
from jobyard.core.retention import JobconfigRemoved, JobsPurged, PurgeReport, keep_rule
from jobyard.core.timeutil import utcnow
from jobyard.settings import RetentionSettings
from jobyard.store.protocol import Store

log = logging.getLogger("jobyard.retention")

#: Pause between two purge transactions: lets the job path's writers take the lock.
BATCH_PAUSE_SECONDS = 0.005
LEADER_NAME = "retention"


class Retention:
    """One server's purge passes (at most one at a time in this process)."""

    def __init__(self, store: Store, blobs: BlobStore, settings: RetentionSettings) -> None:
        self.store = store
        self.blobs = blobs
        self.settings = settings
        self._lock = asyncio.Lock()

    async def purge(self, *, dry_run: bool = False) -> PurgeReport:
        """One full pass now; ``dry_run`` counts what would go and changes nothing."""
        async with self._lock:
            report = PurgeReport(dry_run=dry_run)
            now = utcnow()
            await self._purge_jobs(report, now)
            await self._purge_audit(report, now)
            await self._purge_packages(report, now)
            if not dry_run:
                await self._sweep_orphans(report, now)
            return report

    async def remove_jobconfig_leftovers(self, removed: JobconfigRemoved) -> PurgeReport:
        """After a jobconfig's deletion: see :func:`remove_jobconfig_leftovers`."""
        return await remove_jobconfig_leftovers(self.store, self.blobs, removed)

    async def loop(self, *, holder: str) -> None:
        """Run a pass every ``interval_seconds`` while this server holds the leadership."""
        interval = self.settings.interval_seconds
        while True:
            try:
                if await self.store.leader_try_acquire(
                    name=LEADER_NAME, holder=holder, ttl_seconds=max(interval * 3, 60.0)
                ):
                    started = time.monotonic()
                    report = await self.purge()
                    if report.jobs or report.audit_rows or report.packages or report.orphans:
                        log.info(
                            "purged %d jobs, %d audit rows, %d packages, %d orphan files "
                            "(%d bytes) in %.2f s",
                            report.jobs, report.audit_rows, report.packages, report.orphans,
                            report.bytes, time.monotonic() - started,
                        )  # fmt: skip
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable as exc:
                log.debug("purge pass skipped: %s", exc.message)
            except BlobsUnavailable as exc:  # rows gone, blobs left: the orphan sweep ends it
                log.warning("purge pass stopped by the blob store: %s", exc.message)
            except Exception:
                log.exception("purge pass failed; retrying")
            await asyncio.sleep(interval)

    # -- jobs ----------------------------------------------------------------------------
    async def _purge_jobs(self, report: PurgeReport, now: datetime) -> None:
        s = self.settings
        targets: list[tuple[int | None, float | None, int | None]] = [
            *await self.store.retention_overrides(),
            (None, None, None),
        ]
        for jobconfig_id, age, count in targets:
            rule = keep_rule(
                jobconfig_id,
                default_age_days=s.max_age_days,
                default_max_jobs=s.max_jobs_per_jobconfig,
                age_override=age,
                jobs_override=count,
            )
            ended_before = rule.ended_before(now)
            if rule.max_jobs <= 0 and ended_before is None:
                continue
            after = 0
            while True:
                ids = await self.store.jobs_purgeable(
                    jobconfig_id,
                    keep=rule.max_jobs,
                    ended_before=ended_before,
                    after_id=after,
                    limit=s.batch_size,
                )
                if not ids:
                    break
                purged = await self.store.jobs_purge(ids, dry_run=report.dry_run)
                await delete_job_blobs(self.blobs, purged, report)
                if report.dry_run or not purged.job_ids:
                    # Nothing was deleted (a dry run, or another server took them):
                    # page on rather than list the same ids again.
                    after = ids[-1]
                await asyncio.sleep(BATCH_PAUSE_SECONDS)

    # -- audit ---------------------------------------------------------------------------
    async def _purge_audit(self, report: PurgeReport, now: datetime) -> None:
        days = self.settings.audit_days
        if days <= 0:
            return
        before = now - timedelta(days=days)
        if report.dry_run:
            report.audit_rows = await self.store.audit_purge(before=before, limit=1, dry_run=True)
            return
        while True:
            gone = await self.store.audit_purge(before=before, limit=self.settings.batch_size)
            report.audit_rows += gone
            if gone < self.settings.batch_size:
                return
            await asyncio.sleep(BATCH_PAUSE_SECONDS)

    # -- packages ------------------------------------------------------------------------
    async def _purge_packages(self, report: PurgeReport, now: datetime) -> None:
        grace = timedelta(hours=self.settings.blob_grace_hours)
        cutoff = now - grace
        candidates = await self.store.packages_purgeable(created_before=cutoff, limit=1000)
        fresh_after = cutoff.timestamp()
        old = []
        for package in candidates:
            mtime = await self.blobs.modified_at(package_key(package.sha256))
            if mtime is not None and mtime > fresh_after:
                continue  # uploaded again lately: its grace started over
            old.append(package)
        if report.dry_run:
            report.packages += len(old)
            for package in old:
                size = await self.blobs.size(package_key(package.sha256))
                if size is not None:
                    report.blobs += 1
                    report.bytes += size
            return
        for start in range(0, len(old), self.settings.batch_size):
            batch = [p.id for p in old[start : start + self.settings.batch_size]]
            gone = await self.store.packages_purge(batch, created_before=cutoff)
            report.packages += len(gone)
            for package in gone:
                size = await drop_package_blob(self.store, self.blobs, package.sha256)
                if size is not None:
                    report.blobs += 1
                    report.bytes += size
            await asyncio.sleep(BATCH_PAUSE_SECONDS)

    # -- orphans -------------------------------------------------------------------------
    async def _sweep_orphans(self, report: PurgeReport, now: datetime) -> None:
        """Remove blob files no row refers to, older than the grace period."""
        cutoff = (now - timedelta(hours=self.settings.blob_grace_hours)).timestamp()
        by_job: dict[int, list[str]] = {}
        for kind in ("outputs", "payloads"):
            for name, mtime in await self.blobs.list_children(kind):
                if name.isdigit() and mtime < cutoff:
                    by_job.setdefault(int(name), []).append(f"{kind}/{name}/")
        for bucket, _ in await self.blobs.list_children("logs"):
            for name, mtime in await self.blobs.list_children(f"logs/{bucket}"):
                stem = name.removesuffix(".log")
                if name.endswith(".log") and stem.isdigit() and mtime < cutoff:
                    by_job.setdefault(int(stem), []).append(f"logs/{bucket}/{name}")
                # The pieces of a log never sealed (its job lost with its worker), on a
                # bucket: they go once their job is gone, like the log.
                stem = name.removesuffix(".log.parts")
                if name.endswith(".log.parts") and stem.isdigit() and mtime < cutoff:
                    by_job.setdefault(int(stem), []).append(f"logs/{bucket}/{name}/")
        ids = sorted(by_job)
        for start in range(0, len(ids), 1000):
            batch = ids[start : start + 1000]
            alive = await self.store.jobs_existing(batch)
            keys: list[str] = []
            prefixes: list[str] = []
            for job_id in batch:
                if job_id in alive:
                    continue
                for item in by_job[job_id]:
                    (prefixes if item.endswith("/") else keys).append(item)
            if keys or prefixes:
                files, size = await self.blobs.delete_batch(keys, prefixes)
                report.orphans += files
                report.bytes += size
        await self._sweep_package_orphans(report, cutoff)

    async def _sweep_package_orphans(self, report: PurgeReport, cutoff: float) -> None:
        shas: list[str] = []
        for bucket, _ in await self.blobs.list_children("packages"):
            for name, mtime in await self.blobs.list_children(f"packages/{bucket}"):
                if mtime < cutoff and len(name) == 64 and not name.startswith("."):
                    shas.append(name)
        for start in range(0, len(shas), 500):
            batch = shas[start : start + 500]
            known = await self.store.packages_existing(batch)
            for sha in batch:
                if sha not in known:
                    size = await drop_package_blob(self.store, self.blobs, sha)
                    if size is not None:
                        report.orphans += 1
                        report.bytes += size


async def delete_job_blobs(blobs: BlobStore, purged: JobsPurged, report: PurgeReport) -> None:
    """Delete (or, in a dry run, measure) the log, outputs and payloads of purged jobs."""
    report.add_jobs(purged)
    if not purged.job_ids:
        return
    logs = [log_key(job_id) for job_id in purged.job_ids]
    log_files, log_bytes = await blobs.delete_batch(logs, [], dry_run=report.dry_run)
    report.log_files += log_files
    report.blobs += log_files
    report.bytes += log_bytes
    prefixes = [p for job_id in purged.job_ids for p in job_prefixes(job_id)]
    recorded = set(purged.file_keys)
    # The recorded files are already counted; anything else under the job's folders
    # (a file written but never recorded) goes too.
    files, size = await blobs.delete_batch([], prefixes, dry_run=report.dry_run)
    extra = max(0, files - len(recorded))
    report.blobs += extra
    report.bytes += max(0, size - purged.file_bytes)


async def drop_package_blob(store: Store, blobs: BlobStore, sha256: str) -> int | None:
    """Delete a package's blob unless a package row for that content (re)appears.

    The blob is moved aside first, the rows re-read, and the blob put back when an
    upload recorded the content meanwhile (that upload then finds its blob in place,
    or puts it back itself). Returns the size removed, None when nothing was removed.
    """
    key = package_key(sha256)
    aside = key.rsplit("/", 1)[0] + f"/.purge-{sha256}"
    size = await blobs.size(key)
    if not await blobs.rename(key, aside):
        return None
    if await store.packages_existing([sha256]):
        await blobs.rename(aside, key)
        return None
    await blobs.delete_batch([aside], [])
    return size


async def remove_jobconfig_leftovers(
    store: Store, blobs: BlobStore, removed: JobconfigRemoved
) -> PurgeReport:
    """After a jobconfig's deletion: its jobs' blobs, and its packages nothing else uses.

    Those packages go at once (no grace period): they were in use until now, so they
    are no upload waiting to be attached.
    """
    report = PurgeReport()
    await delete_job_blobs(blobs, removed.jobs, report)
    if removed.package_ids:
        for package in await store.packages_purge(removed.package_ids, created_before=None):
            report.packages += 1
            size = await drop_package_blob(store, blobs, package.sha256)
            if size is not None:
                report.blobs += 1
                report.bytes += size
    return report
