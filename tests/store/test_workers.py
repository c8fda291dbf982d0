"""The workers registry's version and labels, on both engines."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import Engine, update

from jobyard.core.models import WorkerInfo
from jobyard.store.protocol import Store
from jobyard.store.schema import workers


def _worker(worker_id: str) -> WorkerInfo:
    now = datetime.now(UTC)
    return WorkerInfo(
        id=worker_id, name=worker_id, pool="gpu", host="h", pid=10, slots=2, kind="remote",
        started_at=now, heartbeat_at=now, draining=False,
    )  # fmt: skip


async def test_version_and_labels_round_trip_and_change_with_each_heartbeat(store: Store) -> None:
    info = replace(_worker("w1"), version="0.9.0", labels={"gpu": "a100", "zone": "eu-1"})
    await store.worker_upsert(info)
    await store.worker_upsert(_worker("w2"))
    first, second = await store.workers_list()
    assert (first.version, first.labels) == ("0.9.0", {"gpu": "a100", "zone": "eu-1"})
    assert (second.version, second.labels) == (None, {})
    await store.worker_upsert(replace(info, version="1.0.0", labels={}))
    assert [(w.version, w.labels) for w in await store.workers_list()] == [
        ("1.0.0", {}),
        (None, {}),
    ]


async def test_a_row_without_labels_reads_as_no_labels(store: Store, db: Engine) -> None:
    """Rows written before the labels column existed hold NULL there."""
    await store.worker_upsert(replace(_worker("old"), labels={"k": "v"}, version="1"))
    with db.begin() as conn:
        conn.execute(update(workers).values(labels=None, version=None))
    [old] = await store.workers_list()
    assert old.labels == {} and old.version is None
