"""The Celery side of the peer benchmark: one task that spawns ``true``.

Runs in the peers' own venv (``.venv-peers``), never in jobyard's: the worker is
``celery -A celery_app worker`` started by ``bench_peers.py`` with this folder as its
working directory, and ``peer_client.py`` imports the app to submit.

No result backend: the task itself records when its body started (just before the spawn)
and when the program was reaped, as ``"<started> <ended>"`` (``time.time()``) pushed onto
the Redis list the submitter names. That is one cheap ``RPUSH`` per task, where a result
backend would add a store and a read per task to what is measured.

Settings (the broker URL, and the flags a throughput-minded user passes on the worker's
command line: concurrency, ``-O``, ``--prefetch-multiplier``) come from the driver.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_process_init, worker_ready

REDIS_URL = os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/0")
#: Lists the driver watches to know the worker is up.
READY_KEY = "peers:celery:ready"
CHILDREN_KEY = "peers:celery:children"

app = Celery("peers", broker=REDIS_URL)
app.conf.update(
    # Nothing reads task results: do not store them (no backend configured either).
    task_ignore_result=True,
    # Rate limits are off by default per task, but the worker still keeps the machinery;
    # a throughput-minded user turns it off.
    worker_disable_rate_limits=True,
    broker_connection_retry_on_startup=True,
    # Keep the worker's own output quiet: its log goes to a file nobody reads unless it fails.
    worker_redirect_stdouts=False,
)

_connection: redis.Redis | None = None
_connection_pid = 0


def _redis() -> redis.Redis:
    """This process's Redis connection (made after the fork: a child's own socket)."""
    global _connection, _connection_pid
    if _connection is None or _connection_pid != os.getpid():
        _connection = redis.Redis.from_url(REDIS_URL)
        _connection_pid = os.getpid()
    return _connection


@worker_process_init.connect
def _child_up(**_kwargs: Any) -> None:
    """Each prefork child says it is up, so the driver starts timing a full pool."""
    _redis().rpush(CHILDREN_KEY, os.getpid())


@worker_ready.connect
def _worker_ready(**_kwargs: Any) -> None:
    """The consumer is connected and consuming."""
    _redis().rpush(READY_KEY, os.getpid())


@app.task(name="peers.spawn_true")
def spawn_true(key: str) -> None:
    """Spawn and reap ``true``; push ``"<body started> <program reaped>"`` onto ``key``."""
    started = time.time()
    subprocess.run(["true"], check=True)
    ended = time.time()
    _redis().rpush(key, f"{started!r} {ended!r}")
