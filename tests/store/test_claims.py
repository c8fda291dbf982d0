"""The worker's batched path: claims with their run context, grouped reports, grouped submits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from jobyard.core.access import AuditFilter, AuditNote
from jobyard.core.claims import Claim, ClaimRequest
from jobyard.core.errors import NotFound
from jobyard.core.jobs import JobStatus
from jobyard.core.models import Job, JobConfigSpec, JobFile, NewJob
from jobyard.store.factory import open_store
from jobyard.store.protocol import Store
from tests.store.conftest import force, make_jobconfig, new_job

WORKER = "host:1:w"
S = JobStatus


def _hashes(n: int, tag: str = "h") -> list[str]:
    return [f"{tag}{i:063d}" for i in range(n)]


async def _claim(
    store: Store, limit: int = 10, worker: str = WORKER, tag: str = "h"
) -> list[Claim]:
    request = ClaimRequest("default", limit, 60, _hashes(limit, tag))
    return (await store.jobs_report(worker_id=worker, claim=request)).claims


async def test_a_claim_carries_everything_to_run_the_job(store: Store) -> None:
    alice = await store.user_create(name="alice", role="user", password_hash=None)
    package, _ = await store.package_insert(
        sha256="a" * 64,
        filename="p.zip",
        size=1,
        kind="zip",
        entrypoints={"main": {"command": ["x"]}},
    )
    jc = await store.jobconfig_insert(
        JobConfigSpec(name="jc", package_id=package.id, macros={"PLAIN": "p"}, max_concurrent=0),
        owner="alice",
    )
    await store.macros_put("account", 0, [("ACC", "a", False, False)], updated_by=None)
    await store.macros_put("user", alice.id, [("MINE", "m", False, False)], updated_by=None)
    await store.macros_put("jobconfig", jc.id, [("SEC", "enc", True, False)], updated_by=None)
    held = await store.job_submit_for_jobconfig(
        jc.id, macros={}, hold=True, trigger="api", submitted_by="alice", actor="user:alice",
        reason=None,
    )  # fmt: skip
    await store.job_file_add(
        JobFile(held.id, "payload", "in.csv", 3, f"payload/{held.id}/in.csv", datetime.now(UTC))
    )
    await store.job_release(held.id, actor="user:alice")
    adhoc = await store.job_insert(new_job(), actor="user:alice", reason=None)

    claims = await _claim(store)

    assert [c.job.id for c in claims] == [held.id, adhoc.id]
    first, second = claims
    assert first.job.status is S.INITIALIZING and first.job.worker_id == WORKER
    assert first.package == package
    assert [(f.name, f.blob_key) for f in first.payload] == [
        ("in.csv", f"payload/{held.id}/in.csv")
    ]
    assert first.sources.jobconfig_plain == {"PLAIN": "p"}
    assert [m.name for m in first.sources.jobconfig_secure] == ["SEC"]
    assert [m.name for m in first.sources.account] == ["ACC"]
    assert [m.name for m in first.sources.user] == ["MINE"]
    assert first.submitter is not None and first.submitter.name == "alice"
    assert second.package is None and second.payload == []
    assert second.sources.jobconfig_plain == {} and second.sources.jobconfig_secure == []
    assert [m.name for m in second.sources.user] == ["MINE"]
    # Each got its own session token, stored in the same transaction.
    hashes = [c.token_hash for c in claims]
    assert len(set(hashes)) == 2 and None not in hashes
    for claim in claims:
        token = await store.token_lookup(claim.token_hash or "")
        assert token is not None and token.job_id == claim.job.id and token.kind == "session"
    events = [e.status for e in await store.job_events(adhoc.id)]
    assert events == [S.SEQUENCED, S.QUEUED, S.INITIALIZING]
    assert await _claim(store) == []


async def test_no_token_for_a_deactivated_or_unknown_submitter(store: Store) -> None:
    bob = await store.user_create(name="bob", role="user", password_hash=None)
    await store.user_create(name="admin2", role="admin", password_hash=None)
    await store.user_deactivate(bob.id, actor="test")
    by_bob = await store.job_insert(new_job(submitted_by="bob"), actor="user:bob", reason=None)
    by_ghost = await store.job_insert(new_job(submitted_by="ghost"), actor="x", reason=None)

    claims = {c.job.id: c for c in await _claim(store)}

    bob_now = claims[by_bob.id].submitter
    assert bob_now is not None and bob_now.active is False
    assert claims[by_bob.id].token_hash is None
    assert claims[by_ghost.id].submitter is None and claims[by_ghost.id].token_hash is None
    assert await store.tokens_list(user_id=None, kinds=("session",)) == []


async def test_a_withheld_user_level_falls_back_to_nobody(store: Store, db: Engine) -> None:
    alice = await store.user_create(name="alice", role="user", password_hash=None)
    await store.user_create(name="carol", role="user", password_hash=None)
    await store.macros_put("user", alice.id, [("MINE", "m", False, False)], updated_by=None)
    jc = await store.jobconfig_insert(JobConfigSpec(name="jc", command=["x"]), owner="alice")
    job = await store.job_submit_for_jobconfig(
        jc.id,
        macros={},
        hold=False,
        trigger="api",
        submitted_by="alice",
        actor="user:alice",
        reason=None,
        definers=("carol",),
    )
    assert job.definers == ["carol"]

    [claim] = await _claim(store)

    assert claim.withheld_by == ["carol"]
    assert claim.sources.user == [] and claim.sources.user_name is None


async def test_each_claimed_job_gets_the_user_level_of_its_own_user(store: Store) -> None:
    alice = await store.user_create(name="alice", role="user", password_hash=None)
    bob = await store.user_create(name="bob", role="user", password_hash=None)
    carol = await store.user_create(name="carol", role="user", password_hash=None)
    await store.user_create(name="dave", role="user", password_hash=None)
    await store.macros_put(
        "user", alice.id, [("Z_A", "1", False, False), ("A_A", "2", True, False)], updated_by=None
    )
    await store.macros_put("user", bob.id, [("BOB", "b", False, False)], updated_by=None)
    await store.macros_put("user", carol.id, [("CAROL", "c", False, False)], updated_by=None)
    await store.macros_put("account", 0, [("ACC", "a", False, False)], updated_by=None)
    jc = await store.jobconfig_insert(JobConfigSpec(name="jc", command=["x"]), owner="carol")
    by_alice = await store.job_insert(new_job(), actor="user:alice", reason=None)
    by_bob = await store.job_insert(new_job(submitted_by="bob"), actor="user:bob", reason=None)
    by_dave = await store.job_insert(new_job(submitted_by="dave"), actor="user:dave", reason=None)
    on_jc = await store.job_submit_for_jobconfig(
        jc.id, macros={}, hold=False, trigger="schedule", submitted_by=None, actor="schedule",
        reason=None,
    )  # fmt: skip
    by_nobody = await store.job_insert(new_job(submitted_by=None), actor="x", reason=None)

    claims = {c.job.id: c for c in await _claim(store)}

    def level(job: Job) -> list[tuple[str, str]]:
        return [(m.name, m.value) for m in claims[job.id].sources.user]

    assert level(by_alice) == [("A_A", "2"), ("Z_A", "1")]
    assert level(by_bob) == [("BOB", "b")]
    assert level(by_dave) == []
    assert level(on_jc) == [("CAROL", "c")] and claims[on_jc.id].sources.user_name == "carol"
    assert level(by_nobody) == [] and claims[by_nobody.id].sources.user_name is None
    assert claims[by_nobody.id].submitter is None
    for claim in claims.values():
        assert [m.name for m in claim.sources.account] == ["ACC"]


async def test_a_claim_of_jobs_without_any_user(store: Store) -> None:
    await store.macros_put("account", 0, [("ACC", "a", False, False)], updated_by=None)
    job = await store.job_insert(new_job(submitted_by=None), actor="x", reason=None)

    [claim] = await _claim(store)

    assert claim.job.id == job.id and claim.submitter is None and claim.token_hash is None
    assert claim.sources.user == [] and [m.name for m in claim.sources.account] == ["ACC"]


async def test_racing_claimers_claim_each_job_once(store: Store, migrated_store_url: str) -> None:
    for _ in range(120):
        await store.job_insert(new_job(), actor="t", reason=None)
    others = [await open_store(migrated_store_url, migrate=False) for _ in range(2)]
    try:
        claimers = [store, *others]

        async def claim_all(index: int, s: Store) -> list[int]:
            got: list[int] = []
            rounds = 0
            while True:
                claims = await _claim(s, 7, f"w{index}", f"{index}r{rounds}-")
                rounds += 1
                if not claims:
                    return got
                got.extend(c.job.id for c in claims)
                assert all(c.job.worker_id == f"w{index}" for c in claims)

        results = await asyncio.gather(*(claim_all(i, s) for i, s in enumerate(claimers)))
    finally:
        for other in others:
            await other.close()
    claimed = [job_id for got in results for job_id in got]
    assert len(claimed) == 120 and len(set(claimed)) == 120


async def test_submissions_made_together_each_get_their_own_answer(store: Store) -> None:
    limited = await make_jobconfig(store, "limited", max_concurrent=2)
    unlimited = await make_jobconfig(store, "unlimited", max_concurrent=0)
    disabled = await store.jobconfig_insert(JobConfigSpec(name="off", command=["x"], enabled=False))
    note = AuditNote("user:alice", "job.submit", "job", {"adhoc": True}, "10.0.0.1")

    def run(jc_id: int) -> Coroutine[Any, Any, Job]:
        return store.job_submit_for_jobconfig(
            jc_id, macros={}, hold=False, trigger="api", submitted_by="alice",
            actor="user:alice", reason="submitted (api)", audit=note,
        )  # fmt: skip

    calls = [
        store.job_insert(new_job(), actor="user:alice", reason="adhoc", audit=note),
        run(limited.id),
        run(unlimited.id),
        run(limited.id),
        store.job_insert(new_job(hold=True), actor="user:alice", reason="held"),
        run(disabled.id),
        run(limited.id),
        run(unlimited.id),
        store.job_insert(new_job(), actor="user:alice", reason="adhoc", audit=note),
    ]
    answers = await asyncio.gather(*calls, return_exceptions=True)

    refused = [a for a in answers if isinstance(a, Exception)]
    assert len(refused) == 1 and "disabled" in str(refused[0])
    jobs_ = [a for a in answers if isinstance(a, Job)]
    by_id = {j.id: j for j in jobs_}
    assert len(by_id) == 8
    for job in jobs_:
        stored = await store.job_get(job.id)
        assert stored.status is job.status, "the answer is the job as committed"
    statuses = [j.status for j in jobs_]
    assert statuses.count(S.WAITING) == 1
    limited_jobs = sorted(j.id for j in jobs_ if j.jobconfig_id == limited.id)
    assert [by_id[i].status for i in limited_jobs] == [S.QUEUED, S.QUEUED, S.SEQUENCED]
    assert all(j.status is S.QUEUED for j in jobs_ if j.jobconfig_id == unlimited.id)
    assert all(
        j.status is S.QUEUED for j in jobs_ if j.jobconfig_id is None and j.status != S.WAITING
    )
    for job in jobs_:
        events = [e.status for e in await store.job_events(job.id)]
        expected = {
            S.WAITING: [S.WAITING],
            S.SEQUENCED: [S.SEQUENCED],
            S.QUEUED: [S.SEQUENCED, S.QUEUED],
        }[job.status]
        assert events == expected
    audited = (await store.audit_list(AuditFilter(action="job.submit"), limit=100)).items
    assert sorted(int(a.object_id or 0) for a in audited) == sorted(
        j.id for j in jobs_ if j.status is not S.WAITING
    )
    assert all(a.remote_addr == "10.0.0.1" for a in audited)


async def test_adhoc_submissions_made_together_each_get_their_own_job(store: Store) -> None:
    """A batch of ad-hoc submissions only (one INSERT on PostgreSQL): each caller gets
    the job it asked for, QUEUED, numbered in the order of the calls, with its events
    and its own audit entry."""
    notes = [AuditNote(f"user:u{i}", "job.submit", "job", {"i": i}, None) for i in range(6)]
    news = [
        NewJob(
            jobconfig_id=None, package_id=None, entrypoint=None, command=["echo", str(i)],
            macros={"I": str(i)}, timeout=i, success_exit_codes=[0, i], pool="default",
            priority=i % 3, submitted_by=f"u{i}", hold=False,
            labels={"gpu": "yes"} if i == 2 else None, definers=("d",) if i == 4 else (),
        )
        for i in range(6)
    ]  # fmt: skip
    answers = await asyncio.gather(
        *(
            store.job_insert(new, actor=f"user:u{i}", reason=f"r{i}", audit=notes[i])
            for i, new in enumerate(news)
        )
    )
    assert [j.command for j in answers] == [["echo", str(i)] for i in range(6)]
    assert [(j.macros, j.timeout, j.success_exit_codes) for j in answers] == [
        ({"I": str(i)}, i, [0, i]) for i in range(6)
    ]
    assert [(j.priority, j.submitted_by) for j in answers] == [(i % 3, f"u{i}") for i in range(6)]
    assert answers[2].labels == {"gpu": "yes"} and answers[0].labels in (None, {})
    assert answers[4].definers == ["d"]
    seqs = [j.seq or 0 for j in answers]
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
    for i, job in enumerate(answers):
        assert job.status is S.QUEUED and job.queued_at == job.created_at == job.sequenced_at
        assert await store.job_get(job.id) == job
        events = await store.job_events(job.id)
        assert [(e.status, e.actor, e.reason) for e in events] == [
            (S.SEQUENCED, f"user:u{i}", f"r{i}"),
            (S.QUEUED, "system", None),
        ]
    audited = (await store.audit_list(AuditFilter(action="job.submit"), limit=100)).items
    assert sorted((a.actor, a.object_id) for a in audited) == sorted(
        (f"user:u{i}", str(job.id)) for i, job in enumerate(answers)
    )


def _json(value: Any) -> Any:
    """A JSON column as read by the driver: text on SQLite, decoded on PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value


def _at(value: Any) -> datetime:
    """A timestamp column as read by the driver: naive UTC text on SQLite."""
    return datetime.fromisoformat(value).replace(tzinfo=UTC) if isinstance(value, str) else value


async def test_an_adhoc_batch_writes_the_rows_of_one_by_one_submissions(
    store: Store, db: Engine
) -> None:
    """A batch of ad-hoc submissions (one statement on PostgreSQL) writes the same events
    and audit rows as the same submissions made one at a time, ids in the same order:
    each job's SEQUENCED then QUEUED event, then the next job's; audit rows only for the
    submissions that have a note; awkward texts and JSON details unchanged."""
    awkward = 'it\'s "q" \\ {a,b} NULL é ✓'
    calls = [
        (f"user:u{i}", None if i == 1 else f"r{i} {awkward}", None if i % 3 == 2 else i)
        for i in range(6)
    ]

    def note(i: int) -> AuditNote:
        details = {"i": i, "text": awkward, "list": [1, None, "x"]}
        return AuditNote(f"user:u{i}", "job.submit", "job", details, "10.0.0.1" if i else None)

    async def submit(together: bool) -> list[Job]:
        made = [
            store.job_insert(
                new_job(submitted_by=f"u{i}"),
                actor=actor,
                reason=reason,
                audit=None if n is None else note(n),
            )
            for i, (actor, reason, n) in enumerate(calls)
        ]
        if together:
            return list(await asyncio.gather(*made))
        return [await one for one in made]

    def written(answers: list[Job]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        ids = {job.id: n for n, job in enumerate(answers)}
        with db.connect() as conn:
            events = conn.exec_driver_sql(
                "SELECT job_id, status, actor, reason, at FROM job_events ORDER BY id"
            ).all()
            audited = conn.exec_driver_sql(
                "SELECT object_id, actor, action, object_type, details, remote_addr, at "
                "FROM audit WHERE action = 'job.submit' ORDER BY id"
            ).all()
        by_job = {job.id: job for job in answers}
        mine_events = [
            (ids[e[0]], e[1], e[2], e[3], _at(e[4]) == by_job[e[0]].created_at)
            for e in events
            if e[0] in ids
        ]
        mine_audit = [
            (ids[int(a[0])], *a[1:4], _json(a[4]), a[5], _at(a[6]) == by_job[int(a[0])].created_at)
            for a in audited
            if a[0] is not None and int(a[0]) in ids
        ]
        return mine_events, mine_audit

    alone = await submit(together=False)
    together = await submit(together=True)
    assert written(together) == written(alone)
    events, audited = written(together)
    assert [e[:4] for e in events[:2]] == [
        (0, "SEQUENCED", "user:u0", f"r0 {awkward}"),
        (0, "QUEUED", "system", None),
    ]
    assert len(events) == 12 and len(audited) == 4
    assert audited[0] == (0, "user:u0", "job.submit", "job", note(0).details, None, True)
    assert [j.id for j in together] == sorted(j.id for j in together)


async def test_a_bad_reference_in_a_batch_fails_only_its_submission(store: Store) -> None:
    good = new_job()
    bad = NewJob(
        jobconfig_id=None, package_id=999_999, entrypoint=None, command=None, macros={},
        timeout=0, success_exit_codes=[0], submitted_by="alice",
    )  # fmt: skip
    answers = await asyncio.gather(
        store.job_insert(good, actor="t", reason=None),
        store.job_insert(bad, actor="t", reason=None),
        store.job_insert(good, actor="t", reason=None),
        return_exceptions=True,
    )
    assert isinstance(answers[1], NotFound) and "package 999999" in answers[1].message
    assert [a.status for a in (answers[0], answers[2])] == [S.QUEUED, S.QUEUED]  # type: ignore[union-attr]


async def test_a_claim_event_is_never_stamped_before_its_job_was_queued(
    store: Store, db: Engine
) -> None:
    """A claim whose transaction read the clock before another one queued the job: the
    INITIALIZING event takes the job's acquired_at, which PostgreSQL keeps at or after
    queued_at (on SQLite the write lock rules the race out; the event still matches)."""
    job = await store.job_insert(new_job(), actor="user:alice", reason=None)
    queued_later = datetime.now(UTC) + timedelta(seconds=30)
    force(db, job.id, S.QUEUED, queued_at=queued_later)
    (claim,) = await _claim(store)
    acquired = claim.job.acquired_at
    assert acquired is not None
    events = {e.status: e.at for e in await store.job_events(job.id)}
    assert events[S.INITIALIZING] == acquired
    if store.dialect == "postgresql":
        assert acquired == queued_later


async def test_a_claim_reads_its_jobs_by_key_whatever_the_statistics(
    store: Store, db: Engine
) -> None:
    """A burst of QUEUED jobs on a fresh database (never analyzed): the claim's UPDATE
    fetches the picked rows by primary key (PostgreSQL), instead of walking every QUEUED
    row through a status index and joining each against the picked ids (the plan these
    statistics gave before: ~15 ms a claim with 2,000 jobs queued)."""
    if db.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL planner question")
    from sqlalchemy.dialects import postgresql

    from jobyard.store.sql.transitions import Pick, _move_statement

    for _ in range(250):  # enough pages that a table scan is not the cheapest plan
        await asyncio.gather(
            *(store.job_insert(new_job(), actor="t", reason=None) for _ in range(8))
        )
    sets = ("acquired_at", "lease_expires_at", "worker_id")
    stmt = _move_statement(JobStatus.INITIALIZING, Pick.QUEUED_OF_POOL, sets, False, False, True)
    compiled = stmt.compile(dialect=postgresql.psycopg.dialect())
    now = datetime.now(UTC)
    params = dict(compiled.params)
    params.update(
        p_pool="default", limit=8, v_acquired_at=now, v_lease_expires_at=now, v_worker_id="w"
    )
    raw = db.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("EXPLAIN " + str(compiled), params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    finally:
        raw.rollback()
        raw.close()
    # The picking scan (``jobs pick``, in the CTE) is an index scan either way; the
    # UPDATE's own reading of ``jobs`` is what stale statistics got wrong.
    scans_of_jobs = [
        line
        for line in plan.splitlines()
        if "Scan" in line and " on jobs " in line and " on jobs pick" not in line
    ]
    assert scans_of_jobs and all("pk_jobs" in line for line in scans_of_jobs), plan


async def test_a_claims_macro_levels_are_read_by_index_among_many_macros(
    store: Store, db: Engine
) -> None:
    """The users and levels of a claim, one statement on PostgreSQL: its user level
    (by the users' names) stays an index condition, not a filter over every macro row."""
    if db.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL planner question")
    from jobyard.store.sql.claims import _USERS_AND_LEVELS

    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (name, role, active, created_at, updated_at) "
                "SELECT 'u' || g, 'user', true, now(), now() FROM generate_series(1, 2000) g"
            )
        )
        conn.execute(
            text(
                "INSERT INTO macros (scope, scope_id, name, value, secure, updated_at) "
                "SELECT 'user', g % 2000 + 1, 'M' || g, 'v', false, now() "
                "FROM generate_series(1, 20000) g"
            )
        )
        conn.execute(text("ANALYZE users"))
        conn.execute(text("ANALYZE macros"))
    params = {"names": ["u1", "u2"], "level_names": ["u1"], "templates": [3], "jobconfigs": [4]}
    with db.connect() as conn:
        compiled = _USERS_AND_LEVELS._compiled(conn.dialect, params)
        raw = conn.connection.driver_connection
        assert raw is not None
        rows = raw.execute("EXPLAIN " + compiled.sql, compiled.parameters(params)).fetchall()
        plan = "\n".join(row[0] for row in rows)
        found = _USERS_AND_LEVELS.fetch(conn, params)
        conn.rollback()
    scans_of_macros = [line for line in plan.splitlines() if "Scan" in line and "macros" in line]
    assert scans_of_macros and all("Seq Scan" not in line for line in scans_of_macros), plan
    assert sorted(row[1] for row in found if row[0] is not None) == ["u1", "u2"]
    assert len([row for row in found if row[0] is None]) == 10  # u1's level: 20000 / 2000
