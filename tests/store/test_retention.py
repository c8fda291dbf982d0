"""Retention on both engines: what a purge pass removes and what it keeps.

Ended jobs past their keep go with their events, file records, session tokens and
blob files; jobs that have not ended never go; a jobconfig's own limits beat the global
settings; ad-hoc jobs go by age only; packages still referenced (by a running job, a
jobconfig, a template) or freshly uploaded stay; a dry run changes nothing.
"""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update

from jobyard.blobs.keys import log_key, output_key, package_key, payload_key
from jobyard.blobs.local import LocalBlobStore
from jobyard.core.errors import NotFound
from jobyard.core.jobs import TERMINAL, JobStatus
from jobyard.core.models import JobConfigSpec, JobFile
from jobyard.core.templates import TemplateSpec
from jobyard.engine.retention import Retention, drop_package_blob, remove_jobconfig_leftovers
from jobyard.settings import RetentionSettings
from jobyard.store.protocol import Store
from jobyard.store.schema import api_tokens, audit, job_events, jobs
from tests.store.conftest import force, make_jobconfig, new_job

S = JobStatus
NOT_ENDED = sorted(set(JobStatus) - TERMINAL)


def _settings(**values: float) -> RetentionSettings:
    base: dict[str, float] = {
        "max_age_days": 0,
        "max_jobs_per_jobconfig": 0,
        "audit_days": 0,
        "blob_grace_hours": 1,
        "batch_size": 2,  # several transactions per pass
    }
    return RetentionSettings.model_validate({**base, **values})


def _set_times(db: Engine, job_id: int, when: datetime) -> None:
    with db.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(created_at=when, ended_at=when))


async def _job(
    store: Store,
    db: Engine,
    jobconfig_id: int | None,
    status: JobStatus = S.FINISHED,
    *,
    days_ago: float = 0,
    package_id: int | None = None,
) -> int:
    """A job of ``jobconfig_id`` forced to ``status``, created/ended ``days_ago``."""
    new = new_job(jobconfig_id)
    if package_id is not None:
        new = dataclasses.replace(new, package_id=package_id, command=None)
    job = await store.job_insert(new, actor="user:alice", reason=None)
    force(db, job.id, status)
    if days_ago:
        _set_times(db, job.id, datetime.now(UTC) - timedelta(days=days_ago))
    elif status in TERMINAL:
        _set_times(db, job.id, datetime.now(UTC))
    return job.id


async def _ids(store: Store, jobconfig_id: int | None = None) -> set[int]:
    found: set[int] = set()
    for job_id in range(1, 200):
        try:
            job = await store.job_get(job_id)
        except NotFound:
            continue
        if job.jobconfig_id == jobconfig_id:
            found.add(job_id)
    return found


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


async def test_jobs_that_have_not_ended_are_never_purged(
    store: Store, db: Engine, blobs: LocalBlobStore
) -> None:
    jc = await make_jobconfig(store, max_concurrent=0)
    live = [await _job(store, db, jc.id, status, days_ago=400) for status in NOT_ENDED]
    ended = [await _job(store, db, jc.id, status, days_ago=400) for status in sorted(TERMINAL)]
    # Even handed to the purge directly, a live job is skipped.
    direct = await store.jobs_purge(live)
    assert direct.job_ids == []
    listed = await store.jobs_purgeable(jc.id, keep=1, ended_before=datetime.now(UTC), limit=100)
    assert set(listed) <= set(ended)
    report = await Retention(store, blobs, _settings(max_age_days=1)).purge()
    assert report.jobs == len(ended)
    assert await _ids(store, jc.id) == set(live)


async def test_max_jobs_keeps_the_newest_per_jobconfig(
    store: Store, db: Engine, blobs: LocalBlobStore
) -> None:
    a = await make_jobconfig(store, "a", max_concurrent=0)
    b = await make_jobconfig(store, "b", max_concurrent=0)
    a_jobs = [await _job(store, db, a.id) for _ in range(5)]
    b_jobs = [await _job(store, db, b.id) for _ in range(2)]
    running = await _job(store, db, a.id, S.RUNNING)
    report = await Retention(store, blobs, _settings(max_jobs_per_jobconfig=2)).purge()
    assert report.jobs == 3
    assert await _ids(store, a.id) == {*a_jobs[-2:], running}
    assert await _ids(store, b.id) == set(b_jobs)


async def test_max_age_purges_old_ended_jobs_only(
    store: Store, db: Engine, blobs: LocalBlobStore
) -> None:
    jc = await make_jobconfig(store, max_concurrent=0)
    old = [await _job(store, db, jc.id, days_ago=10) for _ in range(3)]
    young = await _job(store, db, jc.id, days_ago=1)
    old_waiting = await _job(store, db, jc.id, S.WAITING, days_ago=10)
    report = await Retention(store, blobs, _settings(max_age_days=5)).purge()
    assert report.jobs == len(old)
    assert await _ids(store, jc.id) == {young, old_waiting}


async def test_a_jobconfig_override_beats_the_global_settings(
    store: Store, db: Engine, blobs: LocalBlobStore
) -> None:
    strict = await store.jobconfig_insert(
        JobConfigSpec(name="strict", command=["true"], max_concurrent=0, retention_max_jobs=1)
    )
    forever = await store.jobconfig_insert(
        JobConfigSpec(
            name="forever",
            command=["true"],
            max_concurrent=0,
            retention_max_jobs=0,
            retention_max_age_days=0,
        )
    )
    plain = await make_jobconfig(store, "plain", max_concurrent=0)
    strict_jobs = [await _job(store, db, strict.id) for _ in range(3)]
    forever_jobs = [await _job(store, db, forever.id, days_ago=100) for _ in range(4)]
    plain_jobs = [await _job(store, db, plain.id, days_ago=d) for d in (100, 1, 1, 1)]
    settings = _settings(max_jobs_per_jobconfig=3, max_age_days=30)
    await Retention(store, blobs, settings).purge()
    assert await _ids(store, strict.id) == {strict_jobs[-1]}
    assert await _ids(store, forever.id) == set(forever_jobs)
    assert await _ids(store, plain.id) == set(plain_jobs[1:])
    # The override is stored and read back; an update can clear it again.
    assert (await store.jobconfig_get(strict.id)).retention_max_jobs == 1
    cleared = await store.jobconfig_update(strict.id, {"retention_max_jobs": None})
    assert cleared.retention_max_jobs is None


async def test_adhoc_jobs_go_by_age_never_by_count(
    store: Store, db: Engine, blobs: LocalBlobStore
) -> None:
    old = [await _job(store, db, None, days_ago=40) for _ in range(2)]
    young = [await _job(store, db, None, days_ago=2) for _ in range(3)]
    settings = _settings(max_jobs_per_jobconfig=1, max_age_days=30)
    report = await Retention(store, blobs, settings).purge()
    assert report.jobs == len(old)
    assert await _ids(store, None) == set(young)


async def test_a_jobs_rows_and_files_go_with_it(
    store: Store, db: Engine, blobs: LocalBlobStore
) -> None:
    jc = await make_jobconfig(store, max_concurrent=0)
    gone, kept = await _job(store, db, jc.id), await _job(store, db, jc.id)
    now = datetime.now(UTC)
    for job_id in (gone, kept):
        await blobs.put_bytes(log_key(job_id), b"log line\n")
        await blobs.put_bytes(output_key(job_id, "out.txt"), b"12345")
        await blobs.put_bytes(payload_key(job_id, "in.txt"), b"123")
        await store.job_file_add(
            JobFile(job_id, "output", "out.txt", 5, output_key(job_id, "out.txt"), now)
        )
        await store.job_file_add(
            JobFile(job_id, "payload", "in.txt", 3, payload_key(job_id, "in.txt"), now)
        )
        await store.token_insert(
            name=f"session-{job_id}", token_hash=f"h{job_id}", role="user", kind="session",
            job_id=job_id,
        )  # fmt: skip
    with db.connect() as conn:
        events_before = conn.execute(
            select(func.count()).select_from(job_events).where(job_events.c.job_id == gone)
        ).scalar_one()
    assert events_before >= 1
    report = await Retention(store, blobs, _settings(max_jobs_per_jobconfig=1)).purge()
    assert (report.jobs, report.tokens, report.log_files, report.files) == (1, 1, 1, 2)
    assert report.events == events_before
    assert report.bytes == len(b"log line\n") + 5 + 3
    for key in (log_key(gone), output_key(gone, "out.txt"), payload_key(gone, "in.txt")):
        assert not await blobs.exists(key)
    for key in (log_key(kept), output_key(kept, "out.txt"), payload_key(kept, "in.txt")):
        assert await blobs.exists(key)
    with db.connect() as conn:
        for table, column in ((job_events, job_events.c.job_id), (api_tokens, api_tokens.c.job_id)):
            left = conn.execute(select(func.count()).select_from(table).where(column == gone))
            assert left.scalar_one() == 0
        kept_tokens = (
            select(func.count()).select_from(api_tokens).where(api_tokens.c.job_id == kept)
        )
        assert conn.execute(kept_tokens).scalar_one() == 1
    assert not (blobs.root / "outputs" / str(gone)).exists()


async def test_a_dry_run_changes_nothing(store: Store, db: Engine, blobs: LocalBlobStore) -> None:
    jc = await make_jobconfig(store, max_concurrent=0)
    ids = [await _job(store, db, jc.id, days_ago=50) for _ in range(5)]
    for job_id in ids:
        await blobs.put_bytes(log_key(job_id), b"x" * 10)
    await store.audit_insert(
        actor="user:a", action="x.y", object_type="x", object_id="1",
        at=datetime.now(UTC) - timedelta(days=400),
    )  # fmt: skip
    settings = _settings(max_age_days=30, audit_days=365)
    report = await Retention(store, blobs, settings).purge(dry_run=True)
    assert report.dry_run
    assert (report.jobs, report.log_files, report.bytes, report.audit_rows) == (5, 5, 50, 1)
    assert await _ids(store, jc.id) == set(ids)
    assert all([await blobs.exists(log_key(i)) for i in ids])
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit)).scalar_one() == 1
    real = await Retention(store, blobs, settings).purge()
    assert (real.jobs, real.log_files, real.audit_rows) == (5, 5, 1)
    assert await _ids(store, jc.id) == set()


async def test_old_audit_rows_go_in_batches(
    store: Store, db: Engine, blobs: LocalBlobStore
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=10)
    for n in range(5):
        await store.audit_insert(
            actor="user:a", action="x.y", object_type="x", object_id=str(n), at=long_ago
        )
    await store.audit_insert(actor="user:a", action="x.y", object_type="x", object_id="new")
    report = await Retention(store, blobs, _settings(audit_days=7)).purge()
    assert report.audit_rows == 5
    with db.connect() as conn:
        left = conn.execute(select(audit.c.object_id)).scalars().all()
    assert left == ["new"]


async def _package(store: Store, blobs: LocalBlobStore, byte: str, *, age_hours: float) -> int:
    sha = byte * 64
    await blobs.put_bytes(package_key(sha), b"archive-" + byte.encode())
    package, _ = await store.package_insert(
        sha256=sha, filename="p.zip", size=9, kind="file", entrypoints={}
    )
    if age_hours:
        past = time.time() - age_hours * 3600
        os.utime(blobs.local_path(package_key(sha)), (past, past))
    return package.id


def _age_packages(db: Engine, hours: float) -> None:
    from jobyard.store.schema import packages

    with db.begin() as conn:
        conn.execute(update(packages).values(created_at=datetime.now(UTC) - timedelta(hours=hours)))


async def test_packages_in_use_or_fresh_are_kept(
    store: Store, db: Engine, blobs: LocalBlobStore
) -> None:
    used_by_running = await _package(store, blobs, "a", age_hours=48)
    used_by_jobconfig = await _package(store, blobs, "b", age_hours=48)
    used_by_template = await _package(store, blobs, "c", age_hours=48)
    unused = await _package(store, blobs, "d", age_hours=48)
    reuploaded = await _package(store, blobs, "e", age_hours=0)  # blob touched just now
    _age_packages(db, 48)
    await store.jobconfig_insert(JobConfigSpec(name="jc", package_id=used_by_jobconfig))
    await store.template_insert(TemplateSpec(name="t", package_id=used_by_template))
    running = await _job(store, db, None, S.RUNNING, package_id=used_by_running)
    # An upload in progress: its blob is written, its row not yet.
    await blobs.put_bytes(package_key("f" * 64), b"in flight")
    report = await Retention(store, blobs, _settings(blob_grace_hours=24)).purge()
    assert report.packages == 1
    assert not await blobs.exists(package_key("d" * 64))
    with pytest.raises(NotFound):
        await store.package_get(unused)
    for package_id, byte in (
        (used_by_running, "a"),
        (used_by_jobconfig, "b"),
        (used_by_template, "c"),
        (reuploaded, "e"),
    ):
        assert (await store.package_get(package_id)).sha256 == byte * 64
        assert await blobs.exists(package_key(byte * 64))
    assert await blobs.exists(package_key("f" * 64))
    assert (await store.job_get(running)).status is S.RUNNING


async def test_a_purge_racing_an_upload_leaves_the_recorded_package_its_blob(
    store: Store, blobs: LocalBlobStore
) -> None:
    # The purge deleted the row and is about to drop the blob when the upload records
    # the same content again: the blob is put back, not lost.
    sha = "9" * 64
    await blobs.put_bytes(package_key(sha), b"content")
    await store.package_insert(sha256=sha, filename="p", size=7, kind="file", entrypoints={})
    assert await drop_package_blob(store, blobs, sha) is None
    assert await blobs.exists(package_key(sha))
    # Without a row, the blob goes.
    orphan = "8" * 64
    await blobs.put_bytes(package_key(orphan), b"content")
    assert await drop_package_blob(store, blobs, orphan) == 7
    assert not await blobs.exists(package_key(orphan))


async def test_orphan_files_past_the_grace_period_are_swept(
    store: Store, db: Engine, blobs: LocalBlobStore
) -> None:
    jc = await make_jobconfig(store, max_concurrent=0)
    alive = await _job(store, db, jc.id)
    old = time.time() - 3 * 3600
    for job_id in (alive, 9_999):
        await blobs.put_bytes(log_key(job_id), b"log")
        await blobs.put_bytes(output_key(job_id, "o"), b"o")
        os.utime(blobs.local_path(log_key(job_id)), (old, old))
        os.utime(blobs.local_path(f"outputs/{job_id}"), (old, old))
    for job_id in (alive, 9_997):  # a bucket's pieces of a log never sealed (worker lost)
        await blobs.put_bytes(
            log_key(job_id) + ".parts/0000000000000005-0000000000000000", b"piece"
        )
        os.utime(blobs.local_path(log_key(job_id) + ".parts"), (old, old))
    await blobs.put_bytes(log_key(9_998), b"fresh orphan, maybe a job being created")
    report = await Retention(store, blobs, _settings(blob_grace_hours=1)).purge()
    assert report.orphans == 3
    assert not await blobs.exists(log_key(9_999))
    assert not await blobs.exists(output_key(9_999, "o"))
    assert await blobs.exists(log_key(9_998))
    assert await blobs.exists(log_key(alive)) and await blobs.exists(output_key(alive, "o"))
    assert not await blobs.exists(log_key(9_997) + ".parts/0000000000000005-0000000000000000")
    assert await blobs.exists(log_key(alive) + ".parts/0000000000000005-0000000000000000")


async def test_deleting_a_jobconfig_leaves_no_blobs(
    store: Store, db: Engine, blobs: LocalBlobStore
) -> None:
    own = await _package(store, blobs, "1", age_hours=0)
    shared = await _package(store, blobs, "2", age_hours=0)
    jc = await store.jobconfig_insert(JobConfigSpec(name="jc", package_id=own, max_concurrent=0))
    other = await store.jobconfig_insert(JobConfigSpec(name="other", package_id=shared))
    job = await _job(store, db, jc.id, package_id=shared)
    await blobs.put_bytes(log_key(job), b"log")
    await blobs.put_bytes(output_key(job, "o"), b"o")
    await store.token_insert(name="s", token_hash="hs", role="user", kind="session", job_id=job)
    removed = await store.jobconfig_delete(jc.id)
    assert removed.jobs.job_ids == [job] and removed.jobs.tokens == 1
    assert removed.package_ids == sorted([own, shared])
    report = await remove_jobconfig_leftovers(store, blobs, removed)
    assert report.packages == 1  # the shared one is still used by `other`
    assert not await blobs.exists(package_key("1" * 64))
    assert await blobs.exists(package_key("2" * 64))
    assert not await blobs.exists(log_key(job)) and not await blobs.exists(output_key(job, "o"))
    assert (await store.jobconfig_get(other.id)).package_id == shared
