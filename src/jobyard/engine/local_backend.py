"""The control plane as seen by local worker slots inside ``jobyard up``.

Implements :class:`~jobyard.worker.protocol.WorkerBackend` with direct store and blob
calls (no HTTP), and wakes API waiters through the in-process bus.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from jobyard.blobs.keys import log_key, output_key, package_key
from jobyard.blobs.protocol import BlobStore
from jobyard.core.crypto import Keyring, SecretError
from jobyard.core.errors import Conflict, InvalidInput, NotFound
from jobyard.core.jobs import JobStatus
from jobyard.core.models import Job, JobFile, WorkerInfo
from jobyard.engine.bus import Bus
from jobyard.service.auth import SESSION_TOKEN_PREFIX, hash_token
from jobyard.service.macros import keyring_for, resolve_for_job
from jobyard.service.timeutil import utcnow
from jobyard.settings import Settings
from jobyard.store.protocol import Store
from jobyard.worker.logwriter import SecretMasker
from jobyard.worker.pool import WorkerPool
from jobyard.worker.protocol import Assignment, PayloadRef
from jobyard.worker.runner import RunnerOptions
from jobyard.worker.workspace import Workspace


async def resolve_assignment(
    store: Store, job: Job, keys: Callable[[], Keyring] | None = None
) -> Assignment:
    """Work out argv, environment, package and payload of an acquired job.

    Macro precedence (lowest first): the entry point's ``env`` from the manifest, then
    the macro levels account, template, user, jobconfig (as they are now) and job (see
    :func:`jobyard.service.macros.resolve_for_job`: secure ones decrypted here only,
    their values masked in the log; the job record keeps where each came from).
    """
    ctx = await store.job_run_context(job)
    env: dict[str, str] = {}
    argv: list[str] | None = job.command
    timeout_minutes = job.timeout
    sha = kind = filename = None
    if job.package_id is not None:
        package = ctx.package
        if package is None:
            raise InvalidInput(f"package {job.package_id} no longer exists")
        sha, kind, filename = package.sha256, package.kind, package.filename
        entry_name = job.entrypoint
        if entry_name is None and argv is None and len(package.entrypoints) == 1:
            entry_name = next(iter(package.entrypoints))
        if entry_name is not None:
            entry = package.entrypoints.get(entry_name)
            if entry is None:
                raise InvalidInput(f"package {package.id} has no entry point {entry_name!r}")
            argv = list(entry["command"])
            env.update(entry.get("env") or {})
            if not timeout_minutes and entry.get("timeout"):
                timeout_minutes = int(entry["timeout"])
        elif argv is None and kind == "file":
            argv = [f"./{filename}"]
    if not argv:
        raise InvalidInput("nothing to run: the job has no command and no entry point")
    resolved = await resolve_for_job(store, keys or _no_keyring, job)  # issue 4: macro levels
    session_token = await initialize_job(store, job, resolved.record)
    env.update(resolved.env)
    return Assignment(
        job=job,
        argv=argv,
        env=env,
        package_sha256=sha,
        package_kind=kind,
        package_filename=filename,
        payload=[PayloadRef(name=f.name, blob_key=f.blob_key) for f in ctx.payload],
        timeout_seconds=timeout_minutes * 60.0 if timeout_minutes else None,
        success_exit_codes=frozenset(job.success_exit_codes),
        secret_values=resolved.secrets,
        template_id=job.template_id,
        session_token=session_token,
    )


def _no_keyring() -> Keyring:
    raise SecretError("this worker has no secret key: it cannot decrypt secure macros")


async def initialize_job(store: Store, job: Job, record: dict[str, Any]) -> str:
    """Store the job's macro record and mint its SESSION_ID, in one transaction.

    SESSION_ID is a token with the submitting user's authority, valid until the job ends
    (stored hashed). ``Conflict`` (the job ends FAILED) if that user is deactivated;
    empty when the job has no submitting user. ``Conflict`` too, with nothing written,
    when the job is no longer INITIALIZING on the worker that acquired it (lease lost,
    aborted meanwhile): preparing stops there.
    """
    value = SESSION_TOKEN_PREFIX + secrets.token_urlsafe(32) if job.submitted_by else ""
    if job.worker_id is None:
        raise Conflict(f"job {job.id} was not acquired by a worker: cannot initialize it")
    user = await store.job_initialize(
        job.id,
        worker_id=job.worker_id,
        resolved=record,
        user_name=job.submitted_by,
        token_hash=hash_token(value) if value else None,
    )
    if user is None:
        return ""
    if not user.active:
        raise Conflict(f"submitting user {user.name} is deactivated")
    return value


class LocalBackend:
    """Direct control-plane access for worker slots living in the server process."""

    def __init__(self, settings: Settings, store: Store, blobs: BlobStore, bus: Bus) -> None:
        self._settings = settings
        self._store = store
        self._blobs = blobs
        self._bus = bus
        self._started: dict[str, datetime] = {}
        self._maskers: dict[int, SecretMasker] = {}  # issue 4: per job with secure macros

    async def acquire(self, *, worker_id: str, pool: str, limit: int) -> list[Job]:
        """Claim queued jobs under a lease.

        No ``job_changed`` here, nor on RUNNING: waiters care about ends (abort, log
        follow); they re-read the store on a short poll for anything else.
        """
        return await self._store.job_acquire(
            worker_id=worker_id,
            pool=pool,
            limit=limit,
            lease_seconds=self._settings.lease_seconds,
        )

    async def wait_for_work(self, timeout: float) -> None:
        """Sleep until something is queued (or the timeout)."""
        await self._bus.wait_for_work(timeout)

    async def prepare(self, job: Job) -> Assignment:
        """Resolve what to run."""
        assignment = await resolve_assignment(self._store, job, lambda: keyring_for(self._settings))
        if assignment.secret_values:  # issue 4: output file names are masked too
            self._maskers[job.id] = SecretMasker(assignment.secret_values)
        return assignment

    async def package_path(self, sha256: str) -> Path:
        """The package upload, already local."""
        return self._blobs.local_path(package_key(sha256))

    async def payload_path(self, ref: PayloadRef) -> Path:
        """A payload file, already local."""
        return self._blobs.local_path(ref.blob_key)

    def log_path(self, job_id: int) -> Path:
        """The log file is written straight into the blob folder."""
        path = self._blobs.local_path(log_key(job_id))
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    async def log_closed(self, job_id: int) -> None:
        """Nothing to upload locally (followers are woken when the job ends)."""

    async def set_running(self, job_id: int, *, worker_id: str, pid: int | None) -> bool:
        """INITIALIZING -> RUNNING; False if the job is not ours any more."""
        try:
            await self._store.job_set_running(job_id, worker_id=worker_id, pid=pid)
        except (Conflict, NotFound):
            return False
        return True

    async def end(
        self,
        job_id: int,
        *,
        worker_id: str,
        status: JobStatus,
        exit_code: int | None,
        reason: str | None,
    ) -> None:
        """Record the end status; promotion in the same transaction may queue more work."""
        with contextlib.suppress(Conflict, NotFound):
            await self._store.job_end(
                job_id,
                worker_id=worker_id,
                status=status,
                exit_code=exit_code,
                reason=reason,
                actor=f"worker:{worker_id}",
            )
        self._maskers.pop(job_id, None)
        self._bus.job_changed(job_id)
        self._bus.work_available()

    async def renew(self, *, worker_id: str, job_ids: list[int]) -> dict[int, bool]:
        """Renew leases of held jobs."""
        return await self._store.leases_renew(
            worker_id=worker_id, job_ids=job_ids, lease_seconds=self._settings.lease_seconds
        )

    async def store_output(self, job_id: int, name: str, path: Path) -> None:
        """Move a file of LOCAL_JOB_OUT_DIR into the blob store and record it."""
        masker = self._maskers.get(job_id)  # issue 4: a secure value never names a file
        if masker is not None:
            name = masker.mask_text(name)
        key = output_key(job_id, name)
        size = await self._blobs.put_file(key, path, move=True)
        await self._store.job_file_add(
            JobFile(
                job_id=job_id,
                kind="output",
                name=name,
                size=size,
                blob_key=key,
                created_at=utcnow(),
            )
        )

    async def heartbeat(self, *, worker_id: str, running: int, draining: bool) -> None:
        """Refresh this worker's row (health in the workers list)."""
        now = utcnow()
        started = self._started.setdefault(worker_id, now)
        await self._store.worker_upsert(
            WorkerInfo(
                id=worker_id,
                name=worker_id,
                pool=self._settings.pool,
                host=socket.gethostname(),
                pid=os.getpid(),
                slots=self._settings.workers,
                kind="local",
                started_at=started,
                heartbeat_at=now,
                draining=draining,
                home=str(self._settings.home),
            )
        )


def local_worker_pool(
    settings: Settings, store: Store, blobs: BlobStore, bus: Bus, *, slots: int | None = None
) -> WorkerPool:
    """The worker pool of local slots (in the API process or a worker process)."""
    pool = WorkerPool(
        LocalBackend(settings, store, blobs, bus),
        workspace=Workspace.from_settings(settings),
        slots=settings.workers if slots is None else slots,
        pool=settings.pool,
        options=RunnerOptions.from_settings(settings),
        heartbeat_seconds=settings.heartbeat_seconds,
        lease_seconds=settings.lease_seconds,
    )
    bus.on_abort(pool.abort)
    return pool
