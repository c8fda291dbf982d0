"""Job listings: newest first, filters, opaque cursors, and plans that ignore history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from jobyard.core.errors import InvalidInput
from jobyard.core.jobs import JobStatus
from jobyard.core.models import Job, JobFilter
from jobyard.store.protocol import Store
from jobyard.store.sql.jobs import jobs_list_statement
from tests.store.conftest import make_jobconfig, new_job

S = JobStatus


async def _all_pages(
    store: Store, flt: JobFilter, limit: int, *, oldest_first: bool = False
) -> list[Job]:
    seen: list[Job] = []
    cursor = None
    while True:
        page = await store.jobs_list(flt, cursor=cursor, limit=limit, oldest_first=oldest_first)
        assert len(page.items) <= limit
        seen.extend(page.items)
        if page.next_cursor is None:
            return seen
        assert len(page.items) == limit
        cursor = page.next_cursor


async def test_filters_and_pagination(store: Store) -> None:
    a = await make_jobconfig(store, "a", max_concurrent=0)
    b = await make_jobconfig(store, "b", max_concurrent=0)
    made: list[Job] = []
    for i in range(9):
        jc = a if i % 3 else b
        made.append(
            await store.job_insert(
                new_job(jc.id, hold=i % 4 == 0, submitted_by="bob" if i % 2 else "alice"),
                actor="user:x",
                reason=None,
            )
        )
    await store.job_cancel(made[1].id, actor="user:x", reason=None)
    current = {j.id: await store.job_get(j.id) for j in made}

    def expect(pred: object) -> list[int]:
        return sorted((i for i, j in current.items() if pred(j)), reverse=True)  # type: ignore[operator]

    cases = [
        (JobFilter(), expect(lambda j: True)),
        (JobFilter(jobconfig_id=a.id), expect(lambda j: j.jobconfig_id == a.id)),
        (JobFilter(statuses=(S.QUEUED,)), expect(lambda j: j.status is S.QUEUED)),
        (
            JobFilter(jobconfig_id=a.id, statuses=(S.CANCELLED, S.WAITING)),
            expect(lambda j: j.jobconfig_id == a.id and j.status in (S.CANCELLED, S.WAITING)),
        ),
        (
            JobFilter(statuses=(S.QUEUED, S.WAITING, S.CANCELLED)),
            expect(lambda j: True),
        ),
        (JobFilter(submitted_by="bob"), expect(lambda j: j.submitted_by == "bob")),
        (JobFilter(statuses=()), []),
    ]
    for flt, expected in cases:
        for limit in (1, 2, 4, 100):
            assert [j.id for j in await _all_pages(store, flt, limit)] == expected, (flt, limit)
            oldest = await _all_pages(store, flt, limit, oldest_first=True)
            assert [j.id for j in oldest] == expected[::-1], (flt, limit, "oldest first")

    mid = current[made[4].id].created_at
    after = await _all_pages(store, JobFilter(created_after=mid), 3)
    before = await _all_pages(store, JobFilter(created_before=mid), 3)
    assert [j.id for j in after] == expect(lambda j: j.created_at >= mid)
    assert [j.id for j in before] == expect(lambda j: j.created_at < mid)
    future = datetime.now(UTC) + timedelta(days=1)
    assert (
        await store.jobs_list(JobFilter(created_after=future), cursor=None, limit=5)
    ).items == []


@pytest.mark.parametrize("cursor", ["", "!!!", "aWQ6eA", "eDox", "aWQ6LTE"])
async def test_bad_cursor_is_invalid_input(store: Store, cursor: str) -> None:
    with pytest.raises(InvalidInput, match="cursor"):
        await store.jobs_list(JobFilter(), cursor=cursor, limit=5)


async def test_bad_limit_is_invalid_input(store: Store) -> None:
    for limit in (0, -1, 1001):
        with pytest.raises(InvalidInput):
            await store.jobs_list(JobFilter(), cursor=None, limit=limit)


def _plan(db: Engine, flt: JobFilter, *, oldest_first: bool = False) -> str:
    stmt = jobs_list_statement(flt, after=500, limit=50, oldest_first=oldest_first)
    assert stmt is not None
    with db.connect() as conn:
        compiled = stmt.compile(conn, compile_kwargs={"literal_binds": True})
        if db.dialect.name == "sqlite":
            rows = conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")).all()
            return "\n".join(str(r[-1]) for r in rows)
        # On a table of a few rows the planner's estimates make any plan look cheap (a
        # sort of one row from another index costs next to nothing). Penalising scans and
        # sorts asks the question the test is about: is there a plan without them?
        # Without the right index a Seq Scan or Sort still shows, penalised or not.
        conn.execute(text("SET enable_seqscan = off"))
        conn.execute(text("SET enable_sort = off"))
        rows = conn.execute(text(f"EXPLAIN {compiled}")).all()
        return "\n".join(str(r[0]) for r in rows)


async def test_listing_plans_walk_an_index_without_sorting(store: Store, db: Engine) -> None:
    """Filtered newest-first pages read one index range backwards: no scan, no sort."""
    jc = await make_jobconfig(store, "a")
    await store.job_insert(new_job(jc.id), actor="x", reason=None)
    one = _plan(db, JobFilter(jobconfig_id=jc.id, statuses=(S.FINISHED,)))
    many = _plan(db, JobFilter(jobconfig_id=jc.id, statuses=(S.FINISHED, S.ERROR)))
    by_status = _plan(db, JobFilter(statuses=(S.FAILED,)))
    if db.dialect.name == "sqlite":
        assert "ix_jobs_jobconfig_status_id" in one and "TEMP B-TREE" not in one
        assert "ix_jobs_status_id" in by_status and "TEMP B-TREE" not in by_status
        assert many.count("ix_jobs_jobconfig_status_id") == 2
    else:
        # PostgreSQL picks among the indexes by statistics; what must never appear is a
        # sequential scan or a sort of the matching history (the multi-status plan sorts
        # only the few limited rows its branches return).
        for plan in (one, by_status):
            assert "Index" in plan and "Seq Scan" not in plan and "Sort" not in plan, plan
        assert "Seq Scan" not in many and many.count("Limit") == 3, many


async def test_a_jobconfigs_jobs_are_read_one_status_range_at_a_time(
    store: Store, db: Engine
) -> None:
    """A jobconfig's jobs of any status: one limited (jobconfig, status, id) range per
    status, not every job of the jobconfig read and sorted."""
    jc = await make_jobconfig(store, "a")
    await store.job_insert(new_job(jc.id), actor="x", reason=None)
    for oldest_first in (False, True):
        plan = _plan(db, JobFilter(jobconfig_id=jc.id), oldest_first=oldest_first)
        if db.dialect.name == "sqlite":
            assert plan.count("ix_jobs_jobconfig_status_id") == len(S), plan
        else:
            assert "Seq Scan" not in plan and plan.count("Limit") == len(S) + 1, plan


async def test_oldest_first_plans_walk_an_index_without_sorting(store: Store, db: Engine) -> None:
    """Oldest-first pages read the same index ranges forwards: no scan, no sort."""
    jc = await make_jobconfig(store, "a")
    await store.job_insert(new_job(jc.id), actor="x", reason=None)
    one = _plan(db, JobFilter(jobconfig_id=jc.id, statuses=(S.FINISHED,)), oldest_first=True)
    by_status = _plan(db, JobFilter(statuses=(S.FAILED,)), oldest_first=True)
    if db.dialect.name == "sqlite":
        assert "ix_jobs_jobconfig_status_id" in one and "TEMP B-TREE" not in one
        assert "ix_jobs_status_id" in by_status and "TEMP B-TREE" not in by_status
    else:
        for plan in (one, by_status):
            assert "Index" in plan and "Seq Scan" not in plan and "Sort" not in plan, plan
