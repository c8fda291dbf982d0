"""A worker's write that committed while its answer was lost: repeated without harm.

The local control plane (``LocalBackend``) on a real PostgreSQL store reached through a
proxy that loses the answer to one COMMIT (``tests/support/pgproxy.py``): the store
reports the outcome as unknown, the backend repeats the call, and the repetition must
neither fail nor do anything twice. The API, for which a submit is not idempotent,
answers 503 saying the outcome is unknown instead of repeating it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobyard.blobs.local import LocalBlobStore
from jobyard.core.jobs import JobStatus as S
from jobyard.core.models import Job
from jobyard.core.tokens import hash_token
from jobyard.engine.bus import Bus
from jobyard.engine.local_backend import LocalBackend, initialize_job
from jobyard.settings import Settings
from jobyard.store.factory import open_store, upgrade_database
from jobyard.store.protocol import Store
from tests.integration.conftest import ServerFactory
from tests.store.conftest import make_jobconfig, new_job
from tests.support.pg import PgCluster
from tests.support.pgproxy import CommitCutter

pytestmark = pytest.mark.pg

WORKER = "host:1:worker"


@dataclass
class Plane:
    """A store behind the cutting proxy, and the local backend over it."""

    store: Store
    backend: LocalBackend
    proxy: CommitCutter


@pytest.fixture
def proxied_url(pg_cluster: PgCluster) -> Iterator[tuple[str, CommitCutter]]:
    with pg_cluster.fresh_database() as url:
        upgrade_database(url)
        proxy = CommitCutter(pg_cluster.port, pg_cluster.password)
        try:
            yield proxy.url(url.rsplit("/", 1)[-1]), proxy
        finally:
            proxy.close()


@pytest.fixture
async def plane(proxied_url: tuple[str, CommitCutter], tmp_path: Path) -> AsyncIterator[Plane]:
    url, proxy = proxied_url
    store = await open_store(url, migrate=False)
    settings = Settings(home=tmp_path / "home", database_url=url, lease_seconds=60)
    backend = LocalBackend(settings, store, LocalBlobStore(tmp_path / "blobs"), Bus())
    try:
        yield Plane(store, backend, proxy)
    finally:
        await store.close()


async def _acquired(plane: Plane, jobconfig_id: int | None = None) -> Job:
    job = await plane.store.job_insert(new_job(jobconfig_id), actor="a", reason=None)
    claimed = await plane.store.job_acquire(
        worker_id=WORKER, pool="default", limit=1, lease_seconds=60
    )
    assert [j.id for j in claimed] == [job.id]
    return claimed[0]


async def test_an_end_report_whose_answer_was_lost_ends_the_job_once(plane: Plane) -> None:
    jc = await make_jobconfig(plane.store, max_concurrent=1)
    job = await _acquired(plane, jc.id)
    waiting = await plane.store.job_insert(new_job(jc.id), actor="a", reason=None)
    await plane.store.job_set_running(job.id, worker_id=WORKER, pid=4242)
    plane.proxy.arm()
    await plane.backend.end(job.id, worker_id=WORKER, status=S.FINISHED, exit_code=0, reason=None)
    assert plane.proxy.cuts == 1
    ended = await plane.store.job_get(job.id)
    assert (ended.status, ended.exit_code) == (S.FINISHED, 0)
    statuses = [e.status for e in await plane.store.job_events(job.id)]
    assert statuses.count(S.FINISHED) == 1
    # The queue moved on exactly once, in the transaction that did commit.
    events = [e.status for e in await plane.store.job_events(waiting.id)]
    assert events == [S.SEQUENCED, S.QUEUED]


async def test_running_whose_answer_was_lost_is_still_ours(plane: Plane) -> None:
    job = await _acquired(plane)
    plane.proxy.arm()
    ours = await plane.backend.set_running(job.id, worker_id=WORKER, pid=4242)
    assert plane.proxy.cuts == 1
    assert ours, "the first attempt made it RUNNING on this worker: the job must run"
    running = await plane.store.job_get(job.id)
    assert (running.status, running.worker_id, running.pid) == (S.RUNNING, WORKER, 4242)


async def test_an_initialization_whose_answer_was_lost_is_not_repeated(plane: Plane) -> None:
    await plane.store.users_bootstrap(None)  # user "admin", the submitter of new_job
    job = await plane.store.job_insert(
        new_job(submitted_by="admin"), actor="user:admin", reason=None
    )
    [job] = await plane.store.job_acquire(
        worker_id=WORKER, pool="default", limit=1, lease_seconds=60
    )
    plane.proxy.arm()
    token = await initialize_job(plane.store, job, {"A": {"level": "job", "value": "1"}})
    assert plane.proxy.cuts == 1
    stored = await plane.store.token_lookup(hash_token(token))
    assert stored is not None and stored.job_id == job.id
    sessions = await plane.store.tokens_list(user_id=None, kinds=("session",))
    assert [t.job_id for t in sessions] == [job.id]  # one token, the one the job got
    record = (await plane.store.job_get(job.id)).resolved_macros
    assert record == {"A": {"level": "job", "value": "1"}}


async def test_a_claim_whose_answer_was_lost_is_handed_over_next_time(plane: Plane) -> None:
    job = await plane.store.job_insert(new_job(), actor="a", reason=None)
    plane.proxy.arm()
    first = await plane.backend.acquire(worker_id=WORKER, pool="default", limit=2)
    assert plane.proxy.cuts == 1
    assert first == []  # the claim committed, but nobody heard
    assert (await plane.store.job_get(job.id)).status is S.INITIALIZING
    second = await plane.backend.acquire(worker_id=WORKER, pool="default", limit=2)
    assert [j.id for j in second] == [job.id]
    assert await plane.backend.acquire(worker_id=WORKER, pool="default", limit=2) == []


async def test_a_submit_whose_answer_was_lost_is_not_repeated(
    proxied_url: tuple[str, CommitCutter], start_server: ServerFactory
) -> None:
    """Submitting is not idempotent: the API answers 503 'unknown' instead of retrying."""
    url, proxy = proxied_url
    env = await start_server(database_url=url, workers=0)
    assert (await env.client.get("/api/v1/jobs")).status_code == 200  # token now cached
    proxy.arm(after=b"INSERT INTO jobs")
    r = await env.client.post("/api/v1/jobs", json={"command": ["/bin/true"], "hold": True})
    assert proxy.cuts == 1
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "database_unavailable"
    assert error["details"]["committed"] == "unknown"
    assert "may or may not have been applied" in error["message"]
    assert int(r.headers["retry-after"]) > 0
    # It did commit, once: the caller checks before repeating it.
    listed = (await env.client.get("/api/v1/jobs")).json()["items"]
    assert [j["status"] for j in listed] == ["WAITING"]
