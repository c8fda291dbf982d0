"""Required worker labels (stored, copied at submission, tested by claims) and drain
requests of workers, on both engines."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from jobyard.core.claims import ClaimRequest
from jobyard.core.errors import InvalidInput, NotFound
from jobyard.core.models import JobConfigSpec, JobFilter, WorkerInfo
from jobyard.core.schedules import FiringPlanner, ScheduleSpec, validate
from jobyard.store.protocol import Store
from tests.store.conftest import make_template, new_job


def _hashes(n: int, tag: str) -> list[str]:
    return [f"{tag}{i:063d}" for i in range(n)]


async def _claimed(store: Store, labels: dict[str, str], worker: str, limit: int = 10) -> list[int]:
    request = ClaimRequest("default", limit, 60, _hashes(limit, worker[:1]), labels=labels)
    answer = await store.jobs_report(worker_id=worker, claim=request)
    return [claim.job.id for claim in answer.claims]


async def _labeled_jobs(store: Store) -> dict[str, int]:
    """One job per kind of requirement, of jobconfigs (unlimited concurrency)."""
    ids: dict[str, int] = {}
    for name, labels in (
        ("none", {}),
        ("gpu", {"gpu": "1"}),
        ("gpu_zone_b", {"gpu": "1", "zone": "b"}),
        ("zone_a", {"zone": "a"}),
    ):
        jc = await store.jobconfig_insert(
            JobConfigSpec(name=name, command=["true"], max_concurrent=0, labels=labels)
        )
        assert jc.labels == labels
        job = await store.job_submit_for_jobconfig(
            jc.id, macros={}, hold=False, trigger="api", submitted_by=None, actor="t", reason=None
        )
        assert job.labels == (labels or None)
        ids[name] = job.id
    return ids


async def test_a_worker_claims_only_jobs_whose_labels_it_has(store: Store) -> None:
    ids = await _labeled_jobs(store)
    # No labels: only the job requiring none.
    assert await _claimed(store, {}, "plain") == [ids["none"]]
    # gpu=1 and zone=a (and more): the gpu job and the zone=a job, not zone=b.
    got = await _claimed(store, {"gpu": "1", "zone": "a", "extra": "x"}, "gz")
    assert sorted(got) == sorted([ids["gpu"], ids["zone_a"]])
    # A wrong value is no match; then the right one claims the last job.
    assert await _claimed(store, {"gpu": "2", "zone": "b"}, "wrong") == []
    assert await _claimed(store, {"gpu": "1", "zone": "b"}, "right") == [ids["gpu_zone_b"]]


async def test_labels_keep_acquisition_order_among_matching_jobs(store: Store) -> None:
    jc = await store.jobconfig_insert(
        JobConfigSpec(name="g", command=["true"], max_concurrent=0, labels={"gpu": "1"})
    )
    plain = await store.job_insert(new_job(), actor="t", reason=None)
    first = await store.job_submit_for_jobconfig(
        jc.id, macros={}, hold=False, trigger="api", submitted_by=None, actor="t", reason=None
    )
    second = await store.job_submit_for_jobconfig(
        jc.id, macros={}, hold=False, trigger="api", submitted_by=None, actor="t", reason=None
    )
    assert await _claimed(store, {"gpu": "1"}, "one", limit=2) == [plain.id, first.id]
    assert await _claimed(store, {"gpu": "1"}, "two", limit=2) == [second.id]


async def test_a_jobconfig_without_labels_takes_its_templates(store: Store) -> None:
    tpl = await make_template(store, labels={"zone": "a"})
    assert tpl.labels == {"zone": "a"}
    inherits = await store.jobconfig_insert(JobConfigSpec(name="i", template_id=tpl.id))
    own = await store.jobconfig_insert(
        JobConfigSpec(name="o", template_id=tpl.id, labels={"zone": "b"})
    )
    a = await store.job_submit_for_jobconfig(
        inherits.id, macros={}, hold=False, trigger="api", submitted_by=None, actor="t", reason=None
    )
    b = await store.job_submit_for_jobconfig(
        own.id, macros={}, hold=False, trigger="api", submitted_by=None, actor="t", reason=None
    )
    assert (a.labels, b.labels) == ({"zone": "a"}, {"zone": "b"})
    clone = await store.template_clone(tpl.id, name="tpl2", owner="alice", jobconfig_prefix="c-")
    assert clone.template.labels == {"zone": "a"}
    assert sorted((c.name, c.labels) for c in clone.jobconfigs) == [
        ("c-i", {}),
        ("c-o", {"zone": "b"}),
    ]


async def test_scheduled_firings_copy_the_labels(store: Store) -> None:
    tpl = await make_template(store, labels={"zone": "a"})
    inherits = await store.jobconfig_insert(
        JobConfigSpec(name="s", template_id=tpl.id), owner="alice"
    )
    own = await store.jobconfig_insert(
        JobConfigSpec(name="t", command=["true"], labels={"gpu": "1"}), owner="alice"
    )
    when = (datetime.now(UTC) - timedelta(seconds=5)).replace(microsecond=0)
    for jc in (inherits, own):
        spec = validate(ScheduleSpec(cron="0 0 0 1 1 ?"), allow_seconds=True)
        await store.schedule_insert(jc.id, spec, next_fire_at=when)
    fired = await store.schedules_fire_due(limit=10, planner=FiringPlanner(timedelta(seconds=60)))
    assert fired.jobs == 2
    page = await store.jobs_list(JobFilter(), cursor=None, limit=10)
    assert sorted((j.jobconfig_id, j.labels) for j in page.items) == [
        (inherits.id, {"zone": "a"}),
        (own.id, {"gpu": "1"}),
    ]


async def test_labels_are_validated_and_patch_clears_them(store: Store) -> None:
    for bad in ({"bad key": "1"}, {"k": "a,b"}, {"k": ""}, ["k"]):
        with pytest.raises(InvalidInput):
            await store.jobconfig_insert(JobConfigSpec(name="x", command=["true"], labels=bad))  # type: ignore[arg-type]
    jc = await store.jobconfig_insert(
        JobConfigSpec(name="x", command=["true"], labels={"gpu": True, "n": 2})  # type: ignore[dict-item]
    )
    assert jc.labels == {"gpu": "true", "n": "2"}
    assert (await store.jobconfig_update(jc.id, {"labels": {}})).labels == {}


def _worker(worker_id: str) -> WorkerInfo:
    now = datetime.now(UTC)
    return WorkerInfo(
        id=worker_id, name=worker_id, pool="default", host="h", pid=1, slots=1, kind="local",
        started_at=now, heartbeat_at=now, draining=False,
    )  # fmt: skip


async def test_a_drain_request_is_answered_by_the_next_heartbeats(store: Store) -> None:
    w1, w2 = _worker("w1"), _worker("w2")
    assert await store.worker_upsert(w1) is False
    assert await store.worker_upsert(w2) is False
    requested = await store.worker_request_drain("w1")
    assert (requested.id, requested.drain_requested) == ("w1", True)
    # Each heartbeat of that run answers it (none clears it), and only for that worker.
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert await store.worker_upsert(replace(w1, draining=True, heartbeat_at=later)) is True
    assert await store.worker_upsert(replace(w1, heartbeat_at=later)) is True
    assert await store.worker_upsert(replace(w2, heartbeat_at=later)) is False
    listed = {w.id: (w.draining, w.drain_requested) for w in await store.workers_list()}
    assert listed == {"w1": (False, True), "w2": (False, False)}
    with pytest.raises(NotFound):
        await store.worker_request_drain("nobody")
    # The same id registering again (restarted: a new started_at) is not draining.
    restarted = replace(w1, started_at=later, heartbeat_at=later)
    assert await store.worker_upsert(restarted) is False
    assert await store.worker_upsert(restarted) is False
