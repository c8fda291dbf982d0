"""The RQ side of the peer benchmark: one job function that spawns ``true``.

Runs in the peers' own venv (``.venv-peers``): ``rq worker-pool`` imports it from this
folder, ``peer_client.py`` enqueues it. As on the Celery side, the job records when its
body started (just before the spawn) and when the program was reaped, as
``"<started> <ended>"`` (``time.time()``) pushed onto the Redis list the submitter names;
results are not kept (``result_ttl=0`` at enqueue).
"""

from __future__ import annotations

import subprocess
import time

from rq import get_current_job


def spawn_true(key: str) -> None:
    """Spawn and reap ``true``; push ``"<body started> <program reaped>"`` onto ``key``."""
    started = time.time()
    subprocess.run(["true"], check=True)
    ended = time.time()
    job = get_current_job()
    if job is None:  # called outside a worker: nothing to report to
        return
    job.connection.rpush(key, f"{started!r} {ended!r}")
