"""A remote worker process (``jobyard worker``): the local runner, fed over HTTP.

The same :class:`~jobyard.worker.pool.WorkerPool` and runner as the local slots of
``jobyard up``, with an :class:`~jobyard.worker.http_backend.HttpBackend`. Jobs run in
the same sandbox (see :mod:`jobyard.worker.sandbox`); the worker's home, package cache
and token file are hidden from them, and the token is never in a job's environment.
SIGTERM / SIGINT drain: running jobs finish, no new one is taken (jobs claimed ahead
and not started end FAILED ``worker lost``, see :mod:`jobyard.worker.http_backend`), the
process exits 0.
A server refusing the worker's protocol (see :mod:`jobyard.core.workerprotocol`) is not retried:
the worker exits non-zero with the server's message (after its running jobs, if any).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from jobyard.core.errors import DatabaseUnavailable
from jobyard.worker.http_backend import HttpBackend
from jobyard.worker.http_link import MAX_PAUSE, ServerRefused
from jobyard.worker.pool import WorkerPool
from jobyard.worker.runner import RunnerOptions
from jobyard.worker.sandbox import Isolator, hidden_paths, jobs_root_for, resolve_isolation
from jobyard.worker.workspace import Workspace

_log = logging.getLogger("jobyard.worker")


@dataclass(frozen=True, slots=True)
class RemoteOptions:
    """What ``jobyard worker`` was started with."""

    server: str
    token: str
    pool: str
    slots: int
    home: Path
    cache_dir: Path
    labels: dict[str, str] = field(default_factory=dict)
    isolation: str = "auto"
    isolation_uid_first: int = 100_000
    isolation_uid_count: int = 65_536
    #: Paths jobs must not see besides the worker's own (e.g. the token file).
    hide: tuple[Path, ...] = ()
    wait_seconds: float = 25.0
    #: Most jobs claimed ahead of free slots (None: as many as the slots; 0: none).
    prefetch: int | None = None
    abort_grace_seconds: float = 10.0
    unpack_max_bytes: int = 2 * 1024**3
    unpack_max_entries: int = 100_000
    #: More servers (replicas of ``server``) the worker moves to when one fails.
    fallback_servers: tuple[str, ...] = ()


class WorkerStartError(Exception):
    """The worker cannot start or go on (bad token, unreachable server, unusable folders,
    a worker protocol the server does not serve)."""


def _prepare_home(home: Path, *, searchable: bool) -> None:
    """The worker's home: private to its user (search-only when job uids must reach
    their folders inside it); everything made from here on is 0600/0700."""
    os.umask(0o077)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o711 if searchable else 0o700)


async def run_remote_worker(opts: RemoteOptions) -> int:
    """Register, then acquire and run jobs until SIGTERM/SIGINT or a drain order; 0."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per call
    plan = resolve_isolation(opts.isolation)
    home = opts.home.resolve()
    jobs_root = jobs_root_for(home, plan)
    _prepare_home(home, searchable=plan.job_uids and jobs_root is None)
    opts.cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    backend = HttpBackend(
        opts.server,
        opts.token,
        pool=opts.pool,
        slots=opts.slots,
        state_dir=home / "state",
        cache_dir=opts.cache_dir,
        labels=opts.labels,
        wait_seconds=opts.wait_seconds,
        prefetch=opts.prefetch,
        fallbacks=opts.fallback_servers,
    )
    isolator = Isolator(
        plan,
        slots=opts.slots,
        uid_first=opts.isolation_uid_first,
        uid_count=opts.isolation_uid_count,
        hidden=hidden_paths([home, opts.cache_dir.resolve(), *opts.hide]),
    )
    workspace = Workspace(
        home / "work",
        jobs_root=jobs_root,
        unpack_max_bytes=opts.unpack_max_bytes,
        unpack_max_entries=opts.unpack_max_entries,
    )
    try:
        pool = await _registered_pool(opts, backend, workspace, isolator)
        # What startup made (modules, settings, clients) is kept for the process's life:
        # out of the collector's reach, a full collection scans only the jobs' objects.
        gc.freeze()
        _log.info(
            "worker %s serving pool %s with %d slot(s) for %s (isolation: %s)",
            pool.worker_id, opts.pool, opts.slots, ", ".join(backend.servers), plan.mode,
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        draining: list[asyncio.Task[None]] = []

        def drain() -> None:
            if draining:
                return
            _log.info("draining: finishing %d running job(s), taking no new ones", pool.running)
            backend.stop_acquiring()
            draining.append(loop.create_task(pool.drain()))

        backend.on_drain = drain
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, drain)
        await pool.run()
        for task in draining:
            await task
        if backend.refused is not None:  # the server stopped serving this protocol
            raise WorkerStartError(f"the server refused this worker: {backend.refused}")
        return 0
    finally:
        await backend.close()


async def _registered_pool(
    opts: RemoteOptions, backend: HttpBackend, workspace: Workspace, isolator: Isolator
) -> WorkerPool:
    """A pool registered with the server (its first heartbeat checks the token)."""
    pool = WorkerPool(
        backend,
        workspace=workspace,
        slots=opts.slots,
        pool=opts.pool,
        options=RunnerOptions(abort_grace_seconds=opts.abort_grace_seconds, api_url=opts.server),
        isolator=isolator,
    )
    pause = 0.5
    while True:
        try:
            await backend.heartbeat(worker_id=pool.worker_id, running=0, draining=False)
            break
        except ServerRefused as exc:  # a bad token or pool: retrying changes nothing
            raise WorkerStartError(f"the server refused this worker: {exc.message}") from exc
        except DatabaseUnavailable as exc:  # not up yet, restarting: wait for it
            _log.warning("%s; retrying in %.1f s", exc.message, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)
    if backend.heartbeat_seconds is not None:
        pool.heartbeat_seconds = backend.heartbeat_seconds
    pool.lease_seconds = backend.lease_seconds
    return pool
