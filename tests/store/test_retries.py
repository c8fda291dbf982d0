"""Retry policies in the store, on both engines: who is retried, when, how often, once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update

from jobyard.core.errors import InvalidInput
from jobyard.core.jobs import JobStatus
from jobyard.core.models import Job, JobConfig, JobConfigSpec
from jobyard.core.templates import TemplateSpec
from jobyard.core.timeutil import utcnow
from jobyard.store.factory import open_store
from jobyard.store.protocol import Store
from jobyard.store.schema import job_files, job_retries, jobs
from tests.store.conftest import new_job


async def _jobconfig(store: Store, *, name: str = "retrying", **policy: object) -> JobConfig:
    spec = JobConfigSpec(name=name, command=["true"], max_concurrent=0, **policy)  # type: ignore[arg-type]
    return await store.jobconfig_insert(spec)


def _end(db: Engine, job_id: int, status: JobStatus, at: datetime) -> None:
    """End a job directly (arrangement only: the end path itself is not under test)."""
    with db.begin() as conn:
        conn.execute(
            update(jobs).where(jobs.c.id == job_id).values(status=status.value, ended_at=at)
        )


async def test_no_policy_no_retry(store: Store, db: Engine) -> None:
    jc = await _jobconfig(store)
    assert jc.retries == 0 and jc.retry_on == ["FAILED"] and jc.retry_since is None
    job = await store.job_insert(new_job(jc.id), actor="t", reason=None)
    _end(db, job.id, JobStatus.FAILED, utcnow())
    assert await store.jobs_submit_due_retries(now=utcnow() + timedelta(days=1)) == []
    with db.connect() as conn:
        assert conn.execute(select(job_retries)).all() == []


async def test_chain_until_attempts_are_exhausted(store: Store, db: Engine) -> None:
    jc = await _jobconfig(store, retries=2, retry_delay_seconds=0, retry_on=["ERROR", "FAILED"])
    first = await store.job_insert(new_job(jc.id), actor="t", reason=None)
    chain: list[Job] = [first]
    for expected_attempt in (1, 2):
        ended = utcnow()
        _end(db, chain[-1].id, JobStatus.ERROR, ended)
        retried = await store.jobs_submit_due_retries(now=ended)
        assert len(retried) == 1
        retry = retried[0]
        assert retry.trigger == "retry" and retry.jobconfig_id == jc.id
        assert retry.command == first.command and retry.macros == first.macros
        assert retry.submitted_by == first.submitted_by
        links = await store.job_retry_links(retry.id)
        assert (links.retry_of, links.attempt) == (chain[-1].id, expected_attempt)
        assert (await store.job_retry_links(chain[-1].id)).retried_by == retry.id
        chain.append(retry)
    ended = utcnow()
    _end(db, chain[-1].id, JobStatus.FAILED, ended)
    assert await store.jobs_submit_due_retries(now=ended + timedelta(days=1)) == []
    last = await store.job_retry_links(chain[-1].id)
    assert (last.retry_of, last.attempt, last.retried_by) == (chain[1].id, 2, None)
    assert (await store.job_retry_links(first.id)).attempt == 0


async def test_back_off_times(store: Store, db: Engine) -> None:
    jc = await _jobconfig(store, retries=3, retry_delay_seconds=10, retry_backoff=3)
    job = await store.job_insert(new_job(jc.id), actor="t", reason=None)
    for wait in (10, 30, 90):  # delay * backoff ** (n - 1)
        ended = utcnow()
        _end(db, job.id, JobStatus.FAILED, ended)
        early = ended + timedelta(seconds=wait) - timedelta(milliseconds=1)
        assert await store.jobs_submit_due_retries(now=early) == []
        [job] = await store.jobs_submit_due_retries(now=ended + timedelta(seconds=wait))


async def test_only_statuses_of_the_policy_retry(store: Store, db: Engine) -> None:
    jc = await _jobconfig(store, retries=1, retry_delay_seconds=0, retry_on=["ERROR"])
    failed = await store.job_insert(new_job(jc.id), actor="t", reason=None)
    errored = await store.job_insert(new_job(jc.id), actor="t", reason=None)
    finished = await store.job_insert(new_job(jc.id), actor="t", reason=None)
    ended = utcnow()
    _end(db, failed.id, JobStatus.FAILED, ended)
    _end(db, errored.id, JobStatus.ERROR, ended)
    _end(db, finished.id, JobStatus.FINISHED, ended)
    retried = await store.jobs_submit_due_retries(now=ended)
    assert [(await store.job_retry_links(j.id)).retry_of for j in retried] == [errored.id]


async def test_jobs_ended_before_the_policy_are_left_alone(store: Store, db: Engine) -> None:
    jc = await _jobconfig(store)
    old = await store.job_insert(new_job(jc.id), actor="t", reason=None)
    _end(db, old.id, JobStatus.FAILED, utcnow() - timedelta(seconds=1))
    jc = await store.jobconfig_update(jc.id, {"retries": 1, "retry_delay_seconds": 0})
    assert jc.retry_since is not None
    assert await store.jobs_submit_due_retries(now=utcnow()) == []
    new = await store.job_insert(new_job(jc.id), actor="t", reason=None)
    _end(db, new.id, JobStatus.FAILED, utcnow())
    assert len(await store.jobs_submit_due_retries(now=utcnow())) == 1


@pytest.mark.parametrize(
    "policy",
    [
        {"retries": -1},
        {"retries": 101},
        {"retry_delay_seconds": -1},
        {"retry_backoff": 0.5},
        {"retry_on": []},
        {"retry_on": ["FINISHED"]},
        {"retry_on": ["CANCELLED", "FAILED"]},
    ],
)
async def test_bad_policies_are_refused(store: Store, policy: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as caught:
        await _jobconfig(store, **policy)
    assert next(iter(policy)) in caught.value.message


async def test_concurrent_passes_retry_each_job_exactly_once(
    store: Store, db: Engine, migrated_store_url: str
) -> None:
    jc = await _jobconfig(store, retries=1, retry_delay_seconds=0)
    ended_jobs = [await store.job_insert(new_job(jc.id), actor="t", reason=None) for _ in range(60)]
    ended = utcnow()
    for job in ended_jobs:
        _end(db, job.id, JobStatus.FAILED, ended)
    other = await open_store(migrated_store_url, migrate=False)
    try:
        passes = [s.jobs_submit_due_retries(now=ended) for s in (store, other) for _ in range(3)]
        results = await asyncio.gather(*passes)
    finally:
        await other.close()
    submitted = [job.id for result in results for job in result]
    assert len(submitted) == len(set(submitted)) == len(ended_jobs)
    with db.connect() as conn:
        rows = conn.execute(select(jobs.c.id).where(jobs.c.trigger == "retry")).all()
        links = conn.execute(select(job_retries.c.retry_of, job_retries.c.job_id)).all()
    assert len(rows) == len(ended_jobs)
    assert Counter(r[0] for r in links) == Counter({j.id: 1 for j in ended_jobs})
    assert sorted(r[1] for r in links) == sorted(submitted)


async def test_a_jobconfig_without_a_policy_takes_its_templates(store: Store, db: Engine) -> None:
    tpl = await store.template_insert(
        TemplateSpec(name="tpl", command=["true"], retries=1, retry_delay_seconds=0),
        owner="alice",
    )
    assert tpl.retries == 1 and tpl.retry_since is not None
    child = await store.jobconfig_insert(JobConfigSpec(name="child", template_id=tpl.id))
    own = await store.jobconfig_insert(
        JobConfigSpec(name="own", template_id=tpl.id, retries=2, retry_on=["ERROR"])
    )
    from_child = await store.job_insert(new_job(child.id), actor="t", reason=None)
    from_own = await store.job_insert(new_job(own.id), actor="t", reason=None)
    ended = utcnow()
    _end(db, from_child.id, JobStatus.FAILED, ended)
    _end(db, from_own.id, JobStatus.FAILED, ended)  # its own policy retries ERROR only
    [retry] = await store.jobs_submit_due_retries(now=ended)
    assert (await store.job_retry_links(retry.id)).retry_of == from_child.id
    _end(db, retry.id, JobStatus.FAILED, utcnow())
    assert await store.jobs_submit_due_retries(now=utcnow() + timedelta(days=1)) == []


async def test_a_job_given_payload_files_is_not_retried(store: Store, db: Engine) -> None:
    """Its retry would run without them: the decision is recorded, no job submitted."""
    jc = await _jobconfig(store, retries=2, retry_delay_seconds=0)
    job = await store.job_insert(new_job(jc.id), actor="t", reason=None)
    with db.begin() as conn:
        conn.execute(
            insert(job_files).values(
                job_id=job.id,
                kind="payload",
                name="input.csv",
                size=3,
                blob_key=f"payloads/{job.id}/input.csv",
                created_at=utcnow(),
            )
        )
    ended = utcnow()
    _end(db, job.id, JobStatus.FAILED, ended)
    assert await store.jobs_submit_due_retries(now=ended) == []
    with db.connect() as conn:
        rows = conn.execute(select(job_retries.c.retry_of, job_retries.c.job_id)).all()
    assert [tuple(r) for r in rows] == [(job.id, None)]
    assert await store.jobs_submit_due_retries(now=ended + timedelta(days=1)) == []
