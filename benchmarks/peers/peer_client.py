"""Load generator of the peer benchmark for Celery and RQ (runs in ``.venv-peers``).

``bench_peers.py`` starts Redis and the workers, then runs this script with the peers'
venv Python; it prints one JSON object on stdout and nothing else there.

1. **Warm-up**: ``--warmup`` jobs one at a time (connections, imports, the pool's first
   forks), not measured.
2. **Idle latency**: ``--samples`` jobs one at a time. ``t0 = time.time()`` just before
   the submit call; the job pushes its body's start (just before it spawns ``true``) and
   the program's reaping (``time.time()`` in the worker); the client waits for that push
   with ``BLPOP`` before the next job. Intervals: submit → body started ("program
   started": the spawn is the next statement), submit → program reaped, and the submit
   call itself.
3. **Burst**: ``--jobs`` jobs submitted by ``--clients`` threads sharing one counter;
   ``first = time.time()`` just before the threads are released; end to end is from
   ``first`` to the latest "program reaped" stamp. The script polls the list's length
   every 10 ms until every job has reported (the stamps, not the poll, give the end).

Every clock here is ``time.time()`` on this machine, the clock jobyard stamps its job
records with.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

Submit = Callable[[str], None]


def _machine_busy() -> tuple[int, int]:
    """``(busy, total)`` jiffies of the whole machine so far (from /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


def _celery_submitter() -> Callable[[], Submit]:
    """A factory of per-thread submit functions: ``apply_async`` of the one task."""
    from celery_app import spawn_true

    def make() -> Submit:
        def submit(key: str) -> None:
            spawn_true.apply_async(args=(key,))

        return submit

    return make


def _rq_submitter(url: str, queue_name: str) -> Callable[[], Submit]:
    """A factory of per-thread submit functions: ``Queue.enqueue`` without kept results."""
    from rq import Queue
    from rq_jobs import spawn_true

    connection = redis.Redis.from_url(url)

    def make() -> Submit:
        queue = Queue(queue_name, connection=connection)

        def submit(key: str) -> None:
            queue.enqueue(spawn_true, key, result_ttl=0)

        return submit

    return make


def _parse(raw: bytes) -> tuple[float, float]:
    started, ended = raw.split()
    return float(started), float(ended)


def _one_at_a_time(
    conn: redis.Redis, submit: Submit, count: int, key: str
) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"started": [], "ended": [], "call": []}
    for _ in range(count):
        t0 = time.time()
        submit(key)
        t1 = time.time()
        answer: Any = conn.blpop([key], timeout=60)
        if answer is None:
            raise RuntimeError("a job did not report within 60 s (is the worker running?)")
        started, ended = _parse(answer[1])
        found["started"].append(started - t0)
        found["ended"].append(ended - t0)
        found["call"].append(t1 - t0)
    return found


def _burst(
    conn: redis.Redis, make: Callable[[], Submit], jobs: int, clients: int, key: str
) -> dict[str, Any]:
    counter = itertools.count()
    lock = threading.Lock()
    go = threading.Event()
    errors: list[BaseException] = []

    def client() -> None:
        submit = make()
        go.wait()
        try:
            while True:
                with lock:
                    n = next(counter)
                if n >= jobs:
                    return
                submit(key)
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # every thread has made its submitter and waits on the event
    busy0 = _machine_busy()
    first = time.time()
    go.set()
    for thread in threads:
        thread.join()
    submitted = time.time()
    if errors:
        raise RuntimeError(f"a submit failed: {errors[0]!r}")
    deadline = time.monotonic() + 600
    while int(conn.llen(key)) < jobs:  # type: ignore[arg-type]
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {conn.llen(key)} of {jobs} jobs reported within 600 s")
        time.sleep(0.01)
    busy1 = _machine_busy()
    stamps = [_parse(raw) for raw in conn.lrange(key, 0, -1)]  # type: ignore[union-attr]
    conn.delete(key)
    return {
        "jobs": len(stamps),
        "first_submit": first,
        "submit_s": submitted - first,
        "first_started": min(s for s, _ in stamps),
        "last_ended": max(e for _, e in stamps),
        "machine_busy": (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", choices=["celery", "rq"], required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--rq-queue", default="peers")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    os.environ["PEERS_REDIS_URL"] = args.redis_url  # read by celery_app at import
    make = (
        _celery_submitter()
        if args.system == "celery"
        else _rq_submitter(args.redis_url, args.rq_queue)
    )
    conn = redis.Redis.from_url(args.redis_url)
    run = uuid.uuid4().hex[:8]
    submit = make()
    _one_at_a_time(conn, submit, args.warmup, f"peers:{run}:warm")
    latency = _one_at_a_time(conn, submit, args.samples, f"peers:{run}:latency")
    burst = _burst(conn, make, args.jobs, args.clients, f"peers:{run}:burst")
    json.dump({"latency": latency, "burst": burst}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
