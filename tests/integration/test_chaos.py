"""Many machines under chaos, on loopback: 3 replicas, 6 remote workers, many jobs.

Three ``jobyard server`` replicas share one PostgreSQL cluster (the test's own, so it can
restart it) and one bucket of a local S3 server; six ``jobyard worker`` processes serve
two pools (some with labels), each given every replica (its own preferred, the next
used while that one is down). ``JOBS`` jobs over 50
jobconfigs (``max_concurrent`` 1, 3 or unlimited; some requiring a label, some with a
retry policy) are submitted through all replicas while, every few seconds, a random
worker or replica is killed with ``SIGKILL`` and restarted, PostgreSQL is restarted once,
and a third pool's only worker is stopped (``SIGSTOP``) past its lease and resumed.

Afterwards the database is read directly and every promise is checked: every job ended,
exactly once; no job ran twice; jobs ran only on workers of their pool having the labels
they require; no jobconfig ever held more jobs than its limit; each jobconfig's jobs were
queued in submission order; every job a killed worker held ended FAILED (worker lost)
within the lease time, and was retried where its policy says so; the stopped worker could
not change the end status, log or outputs of the jobs failed while it was stopped; and
the system still runs jobs at the end.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
import random
import secrets
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.support.fleet import Member, replica, wait_healthy, worker
from tests.support.pg import PgCluster
from tests.support.s3 import AWS_ENV, S3Server

pytestmark = [pytest.mark.pg, pytest.mark.slow]

#: Jobs of a run. The suite runs 3,000 (every check, a few minutes); the acceptance run
#: of 20,000 is ``JOBYARD_CHAOS_JOBS=20000 pytest tests/integration/test_chaos.py`` (its
#: figures are in docs/benchmarks.md, "Chaos").
JOBS = int(os.environ.get("JOBYARD_CHAOS_JOBS", "3000"))
JOBCONFIGS = 50
LEASE_SECONDS = 6.0
MAINTENANCE_SECONDS = 1.0
#: How late after a worker's death its jobs may end FAILED: the lease, a sweep, and the
#: pauses of a loaded machine (the replica doing the sweep may itself have just died).
ORPHAN_SLACK = 12.0
CHAOS_EVERY = 3.0
TERMINAL = ("FINISHED", "ERROR", "FAILED", "CANCELLED")
#: Pools, their workers (name -> labels) and slots.
POOLS: dict[str, dict[str, dict[str, str]]] = {
    "alpha": {"alpha-1": {"zone": "x"}, "alpha-2": {"zone": "x"}, "alpha-3": {}},
    "beta": {"beta-1": {}, "beta-2": {}, "beta-3": {"zone": "y", "disk": "ssd"}},
}
SLOTS = 4
#: The partition scenario's own pool and worker, stopped past its lease.
GAMMA = "gamma"
#: A job of the partition scenario: runs past the stop, then writes what a late worker
#: would try to report (a log line and an output file).
LATE_SCRIPT = (
    "echo started; sleep 10; echo late-line; "
    'echo late > "$LOCAL_JOB_OUT_DIR/late.txt"; sleep 0.2; echo done'
)


@dataclass
class Spec:
    """One jobconfig of the run."""

    name: str
    pool: str
    max_concurrent: int
    labels: dict[str, str]
    retries: int
    id: int = 0


@dataclass
class Chaos:
    """What the chaos thread did, and when (wall clock)."""

    kills: list[tuple[str, float]] = field(default_factory=list)
    #: Set while the partition scenario runs: no kill meanwhile (its worker's server
    #: must be up to see its jobs run, and to refuse the late reports).
    calm: threading.Event = field(default_factory=threading.Event)
    pg_restart: tuple[float, float] | None = None
    errors: list[str] = field(default_factory=list)
    #: Seconds each restarted replica took to answer ``/healthz`` again.
    replica_starts: list[float] = field(default_factory=list)


def _specs() -> list[Spec]:
    out = []
    for i in range(JOBCONFIGS):
        pool = "alpha" if i % 2 == 0 else "beta"
        labels: dict[str, str] = {}
        if i % 5 == 0:
            labels = {"zone": "x"} if pool == "alpha" else {"zone": "y"}
        out.append(
            Spec(
                name=f"chaos-{i:02d}",
                pool=pool,
                max_concurrent=(1, 3, 0)[i % 3],
                labels=labels,
                retries=1 if i % 7 == 0 else 0,
            )
        )
    return out


@contextlib.contextmanager
def _fleet(
    tmp_path: Path, cluster: PgCluster, s3: S3Server
) -> Iterator[tuple[list[tuple[Member, str]], str]]:
    """Start the replicas; yield them with the admin token; stop everything at the end."""
    database = cluster.create_database()
    bucket = s3.new_bucket()
    env = {
        "JOBYARD_DATABASE_URL": cluster.url(database),
        "JOBYARD_BLOBS_URL": f"s3://{bucket}/chaos",
        "JOBYARD_S3_ENDPOINT_URL": s3.endpoint,
        "JOBYARD_SECRET_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "JOBYARD_LEASE_SECONDS": str(LEASE_SECONDS),
        "JOBYARD_HEARTBEAT_SECONDS": "1",
        "JOBYARD_MAINTENANCE_SECONDS": str(MAINTENANCE_SECONDS),
        "JOBYARD_DB_RETRY_SECONDS": "120",
        **AWS_ENV,
    }
    replicas = [replica(tmp_path, f"replica-{n}", env) for n in range(3)]
    members: list[Member] = [m for m, _ in replicas]
    try:
        first, first_url = replicas[0]
        first.start()
        wait_healthy(first, first_url)
        token = _admin_token(first)
        for member, url in replicas[1:]:
            member.start()
            wait_healthy(member, url)
        yield replicas, token
    finally:
        for member in members:
            member.stop()


def _admin_token(member: Member) -> str:
    path = Path(member.env["JOBYARD_HOME"]) / "admin.token"
    deadline = time.monotonic() + 30
    while not path.exists() or not path.read_text().strip():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no admin token in {path}\n{member.tail()}")
        time.sleep(0.1)
    return path.read_text().strip()


class Api:
    """A sync client over every replica: each call tries them in turn until one answers
    (a replica may be down at any moment)."""

    def __init__(self, urls: list[str], token: str) -> None:
        self._clients = [
            httpx.Client(base_url=u, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            for u in urls
        ]
        self._turn = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        deadline = time.monotonic() + 180
        while True:
            with self._lock:
                self._turn += 1
                client = self._clients[self._turn % len(self._clients)]
            try:
                response = client.request(method, path, **kw)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code < 500:
                return response
            if time.monotonic() > deadline:
                detail = response.text if response is not None else "no answer"
                raise RuntimeError(f"{method} {path}: every replica failed: {detail}")
            time.sleep(0.2)


def _create_jobconfigs(api: Api, specs: list[Spec]) -> None:
    for spec in specs:
        body: dict[str, Any] = {
            "name": spec.name,
            "command": ["/bin/sh", "-c", 'echo "job $JOB_ID"'],
            "pool": spec.pool,
            "max_concurrent": spec.max_concurrent,
        }
        if spec.labels:
            body["labels"] = spec.labels
        if spec.retries:
            body |= {"retries": spec.retries, "retry_delay_seconds": 0, "retry_on": ["FAILED"]}
        r = api.call("POST", "/api/v1/jobconfigs", json=body)
        assert r.status_code == 201, r.text
        spec.id = r.json()["id"]


def _worker_token(api: Api, name: str) -> str:
    r = api.call("POST", "/api/v1/worker-tokens", json={"name": name})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def _submit_all(api: Api, specs: list[Spec]) -> list[int]:
    """Submit JOBS jobs round-robin over the jobconfigs, from 8 threads."""
    order = [specs[n % len(specs)].id for n in range(JOBS)]

    def submit(jobconfig_id: int) -> int:
        r = api.call("POST", f"/api/v1/jobconfigs/{jobconfig_id}/run")
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(submit, order))


def _chaos(
    stop: threading.Event,
    victims: list[tuple[Member, str | None]],
    cluster: PgCluster,
    record: Chaos,
) -> None:
    """Every CHAOS_EVERY seconds kill -9 a random worker or replica and restart it; once,
    after a few rounds, restart PostgreSQL."""
    rng = random.Random(20261207)
    rounds = 0
    while not stop.wait(CHAOS_EVERY):
        if record.calm.is_set():
            continue
        rounds += 1
        try:
            if rounds == 4:
                began = time.time()
                cluster.restart("fast")
                record.pg_restart = (began, time.time())
                continue
            member, url = rng.choice(victims)
            record.kills.append((member.name, time.time()))
            member.kill()
            time.sleep(0.5)
            began = time.monotonic()
            member.start()
            if url is not None:
                wait_healthy(member, url)
                record.replica_starts.append(time.monotonic() - began)
        except Exception as exc:  # the test fails on it after the run
            record.errors.append(f"round {rounds}: {exc!r}")


class Db:
    """Reads of the database the servers share, through its restarts: a query whose
    connection was cut is sent again on a new one."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection[dict[str, Any]] | None = None

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 120
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self._url, row_factory=dict_row, autocommit=True)
                return self._conn.execute(sql, params).fetchall()
            except psycopg.OperationalError:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _all_ended(conn: Db) -> int:
    (row,) = conn.rows(
        "SELECT count(*) AS n FROM jobs WHERE status NOT IN "
        "('FINISHED', 'ERROR', 'FAILED', 'CANCELLED')"
    )
    return int(row["n"])


def _overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    best = cur = 0
    for _, delta in points:
        cur += delta
        best = max(best, cur)
    return best


def _partition(
    api: Api, conn: Db, gamma: Member, calm: threading.Event
) -> dict[int, dict[str, Any]]:
    """Stop the gamma worker while two jobs of it run, until they end FAILED; resume it.
    Answers what each failed job looked like before the worker came back. No kill
    happens meanwhile (``calm``): the worker's server must see the jobs run, then refuse
    what the worker sends late."""
    calm.set()
    try:
        return _partition_calm(api, conn, gamma)
    finally:
        calm.clear()


def _partition_calm(api: Api, conn: Db, gamma: Member) -> dict[int, dict[str, Any]]:
    r = api.call(
        "POST",
        "/api/v1/jobconfigs",
        json={
            "name": "partition",
            "command": ["/bin/sh", "-c", LATE_SCRIPT],
            "pool": GAMMA,
            "max_concurrent": 2,
        },
    )
    assert r.status_code == 201, r.text
    jc = r.json()["id"]
    ids = [api.call("POST", f"/api/v1/jobconfigs/{jc}/run").json()["id"] for _ in range(2)]
    deadline = time.monotonic() + 240  # its server may be down a while: chaos
    seen: list[tuple[float, str]] = []
    while True:
        rows = conn.rows("SELECT status FROM jobs WHERE id = ANY(%s)", (ids,))
        if all(row["status"] == "RUNNING" for row in rows):
            break
        if time.monotonic() > deadline:
            events = conn.rows(
                "SELECT job_id, status, at, actor FROM job_events WHERE job_id = ANY(%s) "
                "ORDER BY id",
                (ids,),
            )
            seen_text = "\n".join(f"{t:.2f} {st}" for t, st in seen)
            raise AssertionError(
                f"the partition jobs never ran together: {rows}\n{events}\n{seen_text}\n"
                + gamma.tail()
            )
        seen.append((time.monotonic(), str([row["status"] for row in rows])))
        time.sleep(0.1)
    gamma.signal(signal.SIGSTOP)
    try:
        deadline = time.monotonic() + LEASE_SECONDS + ORPHAN_SLACK + 30
        while True:
            rows = conn.rows(
                "SELECT id, status, status_reason FROM jobs WHERE id = ANY(%s)", (ids,)
            )
            if all(row["status"] in TERMINAL for row in rows):
                break
            assert time.monotonic() < deadline, f"stopped worker's jobs never failed: {rows}"
            time.sleep(0.2)
        time.sleep(4)  # the jobs' programs end meanwhile: a late report is pending
        before = {job_id: _job_snapshot(api, conn, job_id) for job_id in ids}
    finally:
        gamma.signal(signal.SIGCONT)
    return before


def _job_snapshot(api: Api, conn: Db, job_id: int) -> dict[str, Any]:
    (job,) = conn.rows(
        "SELECT status, status_reason, exit_code, ended_at FROM jobs WHERE id = %s", (job_id,)
    )
    events = conn.rows(
        "SELECT status, actor FROM job_events WHERE job_id = %s ORDER BY id", (job_id,)
    )
    log = api.call("GET", f"/api/v1/jobs/{job_id}/log")
    outputs = api.call("GET", f"/api/v1/jobs/{job_id}/outputs")
    return {
        "job": job,
        "events": events,
        "log": log.text if log.status_code == 200 else f"HTTP {log.status_code}",
        "outputs": outputs.json() if outputs.status_code == 200 else outputs.status_code,
    }


def test_chaos_every_job_ends_exactly_once(
    tmp_path: Path, own_cluster: PgCluster, s3_server: S3Server
) -> None:
    specs = _specs()
    with _fleet(tmp_path, own_cluster, s3_server) as (replicas, admin):
        urls = [url for _, url in replicas]
        database_url = replicas[0][0].env["JOBYARD_DATABASE_URL"]
        api = Api(urls, admin)
        workers: list[Member] = []
        conn = Db(database_url)
        gamma: Member | None = None
        watcher_db = Db(database_url)
        stop = threading.Event()
        threads: list[threading.Thread] = []
        try:
            _create_jobconfigs(api, specs)
            for n, (pool, members) in enumerate(sorted(POOLS.items())):
                for m, (name, labels) in enumerate(sorted(members.items())):
                    # Every replica, each worker preferring its own: it moves to the
                    # next while the one it talks to is down.
                    first = (n * 3 + m) % len(urls)
                    member = worker(
                        tmp_path,
                        name,
                        server=urls[first:] + urls[:first],
                        token=_worker_token(api, name),
                        pool=pool,
                        slots=SLOTS,
                        labels=labels,
                    )
                    member.start()
                    workers.append(member)
            gamma = worker(
                tmp_path,
                "gamma-1",
                server=urls,
                token=_worker_token(api, "gamma-1"),
                pool=GAMMA,
                slots=2,
            )
            gamma.start()
            every = [*workers, gamma]

            seen_workers: dict[str, dict[str, Any]] = {}

            def watch_workers() -> None:
                # Workers restarted by the chaos register anew: remember every row seen.
                while not stop.wait(0.5):
                    with contextlib.suppress(Exception):
                        for row in watcher_db.rows("SELECT id, pool, labels, pid FROM workers"):
                            seen_workers[row["id"]] = row

            record = Chaos()
            victims: list[tuple[Member, str | None]] = [
                *((m, None) for m in workers),
                *replicas,
            ]
            watcher = threading.Thread(target=watch_workers, daemon=True)
            chaos = threading.Thread(
                target=_chaos, args=(stop, victims, own_cluster, record), daemon=True
            )
            threads += [watcher, chaos]
            watcher.start()
            chaos.start()
            started = time.monotonic()
            submitted = _submit_all(api, specs)
            partition_before = _partition(api, conn, gamma, record.calm)

            deadline = time.monotonic() + 900
            while _all_ended(conn):
                assert time.monotonic() < deadline, (
                    f"{_all_ended(conn)} jobs never ended\n"
                    + "\n".join(m.tail(30) for m in [*every, *(r for r, _ in replicas)])
                )
                time.sleep(1)
            stop.set()
            chaos.join(timeout=120)
            watcher.join(timeout=10)
            elapsed = time.monotonic() - started
            assert not record.errors, record.errors
            assert record.pg_restart is not None, "PostgreSQL was never restarted"
            assert len(record.kills) >= 5, record.kills

            # The system keeps going: one more job per pool after the chaos.
            for spec in (specs[0], specs[1]):
                r = api.call("POST", f"/api/v1/jobconfigs/{spec.id}/run")
                assert r.status_code == 201, r.text
                last = r.json()["id"]
                deadline = time.monotonic() + 120
                while True:
                    status = api.call("GET", f"/api/v1/jobs/{last}").json()["status"]
                    if status in TERMINAL:
                        break
                    assert time.monotonic() < deadline, f"job {last} stuck in {status}"
                    time.sleep(0.2)
                assert status == "FINISHED", status

            for row in conn.rows("SELECT id, pool, labels, pid FROM workers"):
                seen_workers[row["id"]] = row
            _check(conn, specs, submitted, record, seen_workers)
            _check_partition(api, conn, partition_before)
            print(
                f"\nchaos run: {len(submitted)} jobs in {elapsed:.1f} s, "
                f"{len(record.kills)} kills, PostgreSQL restart {record.pg_restart}, "
                f"replica restarts took {sorted(round(t, 1) for t in record.replica_starts)} s\n"
                + _pace(conn, specs)
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=120)
            conn.close()
            watcher_db.close()
            api.close()
            for member in workers:
                member.stop()
            if gamma is not None:
                gamma.stop()


def _check(
    conn: Db,
    specs: list[Spec],
    submitted: list[int],
    record: Chaos,
    seen_workers: dict[str, dict[str, Any]],
) -> None:
    by_id = {s.id: s for s in specs}
    jobs = conn.rows(
        "SELECT id, jobconfig_id, status, status_reason, worker_id, pool, queued_at, "
        "acquired_at, ended_at FROM jobs WHERE jobconfig_id = ANY(%s)",
        (list(by_id),),
    )
    rows = {j["id"]: j for j in jobs}
    assert set(submitted) <= set(rows), "submitted jobs are missing"
    events: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in conn.rows(
        "SELECT job_id, status, at FROM job_events WHERE job_id = ANY(%s) ORDER BY id",
        (list(rows),),
    ):
        events[event["job_id"]].append(event)

    # Every job ended, exactly once, and ran at most once.
    for job_id, job in rows.items():
        statuses = Counter(e["status"] for e in events[job_id])
        assert job["status"] in TERMINAL, job
        assert sum(statuses[s] for s in TERMINAL) == 1, (job_id, events[job_id])
        assert statuses["INITIALIZING"] <= 1 and statuses["RUNNING"] <= 1, (
            job_id,
            events[job_id],
        )
        if job["status"] != "FINISHED":
            assert job["status"] == "FAILED" and "worker lost" in (job["status_reason"] or ""), job

    # Pools and labels: every job ran on a worker of its pool having its labels.
    for job in rows.values():
        if job["worker_id"] is None:
            continue
        held_by = seen_workers.get(job["worker_id"])
        assert held_by is not None, f"job {job['id']}: unknown worker {job['worker_id']}"
        spec = by_id[job["jobconfig_id"]]
        assert held_by["pool"] == spec.pool, (job, held_by)
        labels = held_by["labels"] or {}
        assert all(labels.get(k) == v for k, v in spec.labels.items()), (job, held_by)

    # Concurrency limits and order, per jobconfig.
    for spec in specs:
        mine = sorted(
            (j for j in rows.values() if j["jobconfig_id"] == spec.id), key=lambda j: j["id"]
        )
        queued = sorted(
            (j for j in mine if j["queued_at"] is not None), key=lambda j: j["queued_at"]
        )
        assert [j["id"] for j in queued] == [j["id"] for j in mine if j["queued_at"] is not None], (
            f"{spec.name}: jobs were not queued in submission order"
        )
        if spec.max_concurrent:
            # The job records' times, not the events': a claim's event is stamped when
            # its transaction began, possibly before the job was queued; acquired_at is
            # never before queued_at, itself the time the slot was handed over.
            held = [(j["acquired_at"], j["ended_at"], j["id"]) for j in mine if j["acquired_at"]]
            most = _overlap([(a, b) for a, b, _ in held])
            if most > spec.max_concurrent:
                crowded = [
                    (x, y)
                    for x in held
                    for y in held
                    if x[2] < y[2] and x[0] < y[1] and y[0] < x[1]
                ][:3]
                detail = [
                    (job_id, events[job_id], rows[job_id])
                    for pair in crowded
                    for _, _, job_id in pair
                ]
                raise AssertionError(
                    f"{spec}: {most} jobs held at once, limit {spec.max_concurrent}: {detail}"
                )

    # Orphans: jobs of a killed worker ended FAILED within the lease time; retried per policy.
    pids_killed = record.kills
    lost = [j for j in rows.values() if j["status"] == "FAILED"]
    kill_times = sorted(t for _, t in pids_killed)
    for job in lost:
        ended = job["ended_at"].timestamp()
        before = [t for t in kill_times if t <= ended]
        assert before, f"job {job['id']} lost its worker before any kill: {job}"
        late = ended - before[-1]
        pg_pause = 0.0
        if record.pg_restart is not None and record.pg_restart[0] <= ended:
            pg_pause = record.pg_restart[1] - record.pg_restart[0] + LEASE_SECONDS
        assert late <= LEASE_SECONDS + ORPHAN_SLACK + pg_pause, (job, late)
    retried = {
        row["retry_of"]: row["job_id"]
        for row in conn.rows("SELECT retry_of, job_id FROM job_retries")
    }
    repeats = {new for new in retried.values() if new is not None}
    for job in lost:
        spec = by_id[job["jobconfig_id"]]
        # A first attempt lost is repeated once (retries 1); a lost repeat is not.
        if spec.retries and job["id"] not in repeats:
            assert retried.get(job["id"]) is not None, f"job {job['id']} was not retried"


def _pace(conn: Db, specs: list[Spec]) -> str:
    """How fast the ``max_concurrent`` 1 chains moved (they bound the run's length):
    seconds per job of each chain, and where a step's time went — held (``acquired_at``
    -> ``ended_at``) and handed over (an end -> the next job's ``acquired_at``)."""
    chains = [s.id for s in specs if s.max_concurrent == 1]
    jobs = conn.rows(
        "SELECT id, jobconfig_id, acquired_at, ended_at FROM jobs "
        "WHERE jobconfig_id = ANY(%s) AND acquired_at IS NOT NULL ORDER BY id",
        (chains,),
    )
    by_chain: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        by_chain[job["jobconfig_id"]].append(job)
    running = {
        e["job_id"]: e["at"]
        for e in conn.rows(
            "SELECT job_id, at FROM job_events WHERE status = 'RUNNING' AND job_id = ANY(%s)",
            ([j["id"] for j in jobs],),
        )
    }
    per_job, held, handover, started, ran = [], [], [], [], []
    for job in jobs:
        at = running.get(job["id"])
        if at is not None and job["ended_at"] is not None:
            started.append((at - job["acquired_at"]).total_seconds())
            ran.append((job["ended_at"] - at).total_seconds())
    for mine in by_chain.values():
        if len(mine) > 1:
            span = (mine[-1]["ended_at"] - mine[0]["acquired_at"]).total_seconds()
            per_job.append(span / (len(mine) - 1))
        for a, b in itertools.pairwise(mine):
            held.append((a["ended_at"] - a["acquired_at"]).total_seconds())
            handover.append((b["acquired_at"] - a["ended_at"]).total_seconds())

    def q(values: list[float]) -> str:
        if not values:
            return "-"
        values = sorted(values)
        at = [values[int(f * (len(values) - 1))] for f in (0.5, 0.9, 0.99)]
        return "p50 {:.3f} / p90 {:.3f} / p99 {:.3f} s".format(*at)

    return (
        f"max_concurrent 1 chains: {q(per_job)} per job; held {q(held)}; handover "
        f"{q(handover)}; of held: claimed -> RUNNING {q(started)}, RUNNING -> ended {q(ran)}"
    )


def _check_partition(api: Api, conn: Db, before: dict[int, dict[str, Any]]) -> None:
    for job_id, seen in before.items():
        assert seen["job"]["status"] == "FAILED", seen
        assert "worker lost" in (seen["job"]["status_reason"] or ""), seen
        now = _job_snapshot(api, conn, job_id)
        assert now == seen, f"the late worker changed job {job_id}: {seen} -> {now}"
        assert "late-line" not in now["log"], now["log"]
        assert "late.txt" not in str(now["outputs"]), now["outputs"]
