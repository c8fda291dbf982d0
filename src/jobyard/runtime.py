"""The running system of one server: store, blobs, bus, workers, maintenance, scheduler.

``jobyard up`` = this runtime + the API on uvicorn, in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from pathlib import Path

from jobyard.blobs.open import open_blob_store
from jobyard.core.crypto import KEY_FILE, Keyrings, ensure_key_file
from jobyard.engine.bus import Bus
from jobyard.engine.local_backend import local_worker_pool
from jobyard.engine.local_process import WorkerProcess
from jobyard.engine.maintenance import (
    PROCESS_DIED_REASON,
    maintenance_loop,
    recover_local_orphans,
)
from jobyard.engine.relay import BusRelay
from jobyard.engine.remote_desk import RemoteDesk
from jobyard.engine.retention import Retention
from jobyard.engine.scheduler import Scheduler
from jobyard.engine.spool import seal_spooled_logs
from jobyard.service import auth, users
from jobyard.service.context import Context
from jobyard.settings import Settings
from jobyard.store.factory import open_store
from jobyard.worker.pool import WorkerPool
from jobyard.worker.sandbox import IsolationPlan, jobs_root_for, resolve_isolation
from jobyard.worker.workspace import Workspace

log = logging.getLogger("jobyard.runtime")


class Runtime:
    """Owns startup and shutdown order of one server process."""

    def __init__(self, settings: Settings, *, example: bool = False) -> None:
        self.settings = settings
        self.example = example
        self.server_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._ctx: Context | None = None
        self._bus = Bus()
        self._pool: WorkerPool | None = None
        self._processes: list[WorkerProcess] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.new_admin_token: str | None = None
        self.new_admin_password: str | None = None
        self._work_root = str(Workspace.from_settings(settings).jobs_root)
        self.scheduler: Scheduler | None = None
        #: Wake-ups to and from the other servers of a PostgreSQL database.
        self.relay: BusRelay | None = None
        self.isolation: IsolationPlan | None = None

    @property
    def ctx(self) -> Context:
        """The use-case context (after :meth:`start`)."""
        if self._ctx is None:
            raise RuntimeError("runtime not started")
        return self._ctx

    async def start(self) -> None:
        """Open the store (migrating it), mint the first token, start workers and sweeps."""
        home = self.settings.home
        plan = self._choose_isolation()
        jobs_root = jobs_root_for(home, plan)
        if jobs_root is not None:
            self._work_root = str(jobs_root)
        secure_home(self.settings, searchable=plan.job_uids and jobs_root is None)
        if not self.settings.secret_key and ensure_key_file(home):  # secure macros need a key
            log.info("created the secure-macro key %s (mode 0600)", home / KEY_FILE)
        store = await open_store(self.settings.effective_database_url, migrate=True)
        blobs = open_blob_store(
            self.settings.blobs_url,
            folder=self.settings.effective_blobs_dir,
            endpoint_url=self.settings.s3_endpoint_url,
        )
        bus = self._bus
        retention = Retention(store, blobs, self.settings.retention)
        keyrings = Keyrings()
        ctx = Context(
            settings=self.settings,
            store=store,
            blobs=blobs,
            bus=bus,
            retention=retention,
            keyrings=keyrings,
            desk=RemoteDesk(self.settings, store, bus, keyrings),
        )
        self._ctx = ctx
        if store.dialect == "postgresql" and self.settings.notify_replicas:
            # Before anything raises events: workers, the scheduler and the API then
            # reach the other servers' slots and waiters too (SQLite has one server).
            self.relay = BusRelay(bus, self.settings.effective_database_url)
            await self.relay.start()
        self.new_admin_token = await auth.ensure_admin_token(ctx)
        if self.new_admin_token is not None:
            self.new_admin_password = await users.ensure_admin_password(ctx)
        await self._announce_isolation(ctx)
        recovered = await recover_local_orphans(
            store, bus, home=str(home), work_root=self._work_root
        )
        if recovered:
            log.warning("ended %d job(s) orphaned by a previous crash as FAILED", recovered)
        uploaded = await seal_spooled_logs(store, blobs)
        if uploaded:
            log.warning("uploaded %d log(s) of ended jobs left in the blob spool", uploaded)
        if self.example:
            from jobyard.examples import load_example

            await load_example(ctx)
        self._tasks.append(
            asyncio.create_task(
                maintenance_loop(
                    store,
                    bus,
                    holder=self.server_id,
                    interval=self.settings.maintenance_seconds,
                    stats_lag_seconds=self.settings.stats.fold_lag_seconds,
                    stats_batch=self.settings.stats.fold_batch,
                ),
                name="maintenance",
            )
        )
        if self.settings.retention.enabled:
            self._tasks.append(
                asyncio.create_task(retention.loop(holder=self.server_id), name="retention")
            )
        if self.settings.scheduler.enabled:
            self.scheduler = Scheduler(store, bus, self.settings.scheduler)
            self._tasks.append(asyncio.create_task(self.scheduler.run(), name="scheduler"))
        if self.settings.workers > 0 and self.settings.worker_processes > 0:
            n = min(self.settings.worker_processes, self.settings.workers)
            for index in range(n):
                slots = self.settings.workers // n + (1 if index < self.settings.workers % n else 0)
                proc = WorkerProcess(
                    self.settings, bus, slots=slots, index=index, on_death=self._worker_died
                )
                await proc.start()
                self._processes.append(proc)
        elif self.settings.workers > 0:
            self._pool = local_worker_pool(self.settings, store, blobs, bus)
            self._tasks.append(asyncio.create_task(self._pool.run(), name="workers"))
        piece_seconds = self.settings.s3_log_piece_seconds
        on_s3 = self.settings.blobs_url.startswith("s3://")
        if self.settings.workers > 0 and piece_seconds > 0 and on_s3:
            # A bucket: the running logs of the local slots reach the other replicas as
            # pieces. (A local folder needs nothing: the spool file is the blob.)
            from jobyard.blobs.ship import LogShipper

            shipper = LogShipper(blobs)  # type: ignore[arg-type]
            self._tasks.append(asyncio.create_task(shipper.run(piece_seconds), name="log-shipper"))

    def _choose_isolation(self) -> IsolationPlan:
        """Resolve ``isolation`` once, so every worker process sandboxes the same way."""
        if self.settings.workers == 0:
            self.isolation = IsolationPlan("none", "no local workers: nothing runs here")
            return self.isolation
        plan = resolve_isolation(self.settings.isolation)
        self.isolation = plan
        self.settings = self.settings.model_copy(update={"isolation": plan.mode})
        return plan

    async def _announce_isolation(self, ctx: Context) -> None:
        plan = self.isolation
        if plan is None or self.settings.workers == 0:
            return
        if plan.mode != "none":
            log.info("job isolation: %s (%s)", plan.mode, plan.reason)
            return
        several = len((await ctx.store.users_list(cursor=None, limit=2)).items) > 1
        if several or plan.reason.startswith("auto"):
            log.warning(
                "UNSAFE: job isolation is 'none' (%s)%s: any job can read this server's "
                "files (its key, its database, every log). Set JOBYARD_ISOLATION=auto to "
                "sandbox jobs.",
                plan.reason, " and several users can run jobs" if several else "",
            )  # fmt: skip

    async def _worker_died(self, pid: int) -> None:
        """A worker process died: its jobs end FAILED now and their programs are killed."""
        count = await recover_local_orphans(
            self.ctx.store, self._bus, home=str(self.settings.home),
            work_root=self._work_root, dead_pids={pid},
            reason=PROCESS_DIED_REASON,
        )  # fmt: skip
        if count:
            log.warning("ended %d job(s) of dead worker process %d as FAILED", count, pid)

    async def stop(self) -> None:
        """Stop workers (running jobs end FAILED with a reason), sweeps, then the store.

        Slots inside this process get the same bound as worker processes: past it (their
        end reports retrying through a database outage), their tasks are cancelled.
        """
        grace = self.settings.abort_grace_seconds + 10
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.stop(), grace)
            except TimeoutError:
                log.warning("local slots did not stop within %.0f s; leaving them", grace)
        await asyncio.gather(*(p.stop(grace) for p in self._processes))
        self._processes.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._ctx is not None:
            # Logs ended just now: let their seals finish (any left keep their pieces).
            await self._ctx.seals.drain(10.0)
            # Hand maintenance and retention to another server now, not after their TTL.
            with contextlib.suppress(Exception):
                await self._ctx.store.leaders_release(holder=self.server_id)
        if self.relay is not None:
            await self.relay.stop()
            self.relay = None
        if self._ctx is not None:
            await self._ctx.store.close()

    @property
    def admin_token_file(self) -> Path:
        """Where the first admin token lives."""
        return auth.admin_token_path(self.settings)

    @property
    def admin_password_file(self) -> Path:
        """Where the first admin password lives (the console's first sign-in)."""
        return users.admin_password_path(self.settings)


def secure_home(settings: Settings, *, searchable: bool) -> None:
    """Create the home and make what the server keeps there private to its user.

    Everything is created 0600/0700 from here on (umask 077; job programs get their own
    umask). The home itself is 0711 when job uids must reach their folders inside it
    (search only: nothing in it can be listed or read), 0700 otherwise. Existing
    databases, keys and blob folders of older installs are closed too.
    """
    os.umask(0o077)
    home = settings.home
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o711 if searchable else 0o700)
    for name in ("jobyard.db", "jobyard.db-wal", "jobyard.db-shm", "admin.token", KEY_FILE):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(home / name, 0o600)
    for folder in (settings.effective_blobs_dir, home / "work", home / "work" / "cache"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(folder, 0o700)
