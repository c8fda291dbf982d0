"""The local control plane keeps nothing for a job the pool is done with, ended or not.

A job dropped after a lost lease reports no end; whatever the backend kept for it (its
claim, its macro record, its secret masker, its "handed" mark) must still go, or a
long-running worker process grows with every lost job.
"""

from __future__ import annotations

from pathlib import Path

from jobyard.blobs.local import LocalBlobStore
from jobyard.engine.bus import Bus
from jobyard.engine.local_backend import LocalBackend
from jobyard.settings import Settings
from jobyard.store.factory import open_store
from tests.store.conftest import new_job

WORKER = "host:1:w"


def _kept(backend: LocalBackend, job_id: int) -> list[str]:
    """The names of the per-job tables that still hold ``job_id``."""
    tables = {
        "claims": backend._claims,
        "records": backend._records,
        "maskers": backend._maskers,
        "handed": backend._handed,
    }
    return [name for name, table in tables.items() if job_id in table]


async def test_a_job_dropped_without_an_end_leaves_nothing_behind(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    settings = Settings(home=home, lease_seconds=60)
    store = await open_store(f"sqlite:///{home}/jobyard.db")
    try:
        await store.users_bootstrap(None)
        backend = LocalBackend(settings, store, LocalBlobStore(tmp_path / "blobs"), Bus())
        kept_job = await store.job_insert(
            new_job(None, submitted_by="admin"), actor="a", reason=None
        )
        dropped_job = await store.job_insert(
            new_job(None, submitted_by="admin"), actor="a", reason=None
        )
        jobs = await backend.acquire(worker_id=WORKER, pool="default", limit=2)
        assert sorted(j.id for j in jobs) == sorted([kept_job.id, dropped_job.id])
        for job in jobs:
            await backend.prepare(job)
        assert _kept(backend, dropped_job.id), "the arrangement keeps state for the job"

        # The pool drops one job (its lease was lost: no end report) and is done with it.
        backend.forget(dropped_job.id)
        assert _kept(backend, dropped_job.id) == []
        assert _kept(backend, kept_job.id) != [], "another job's state is left alone"
    finally:
        await store.close()
