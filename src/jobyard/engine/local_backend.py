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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jobyard import __version__
from jobyard.blobs.keys import log_key, output_key, package_key, payload_job
from jobyard.blobs.protocol import BlobStore
from jobyard.core.claims import Claim, ClaimRequest, EndReport, RunningReport
from jobyard.core.crypto import Keyring, Keyrings, SecretError
from jobyard.core.errors import Conflict, DatabaseUnavailable, InvalidInput
from jobyard.core.jobs import JobStatus
from jobyard.core.models import Job, JobFile, Package, WorkerInfo
from jobyard.core.runplan import chosen_entrypoint, effective_timeout
from jobyard.core.timeutil import utcnow
from jobyard.core.tokens import SESSION_TOKEN_PREFIX, hash_token
from jobyard.core.users import User
from jobyard.engine.bus import Bus
from jobyard.engine.jobmacros import JobMacros, resolve_claimed, resolve_for_job
from jobyard.engine.reporter import Reporter
from jobyard.engine.retry import FIRST_PAUSE, MAX_PAUSE, Persistent
from jobyard.settings import Settings
from jobyard.store.protocol import Store
from jobyard.worker.logwriter import SecretMasker
from jobyard.worker.pool import WorkerPool
from jobyard.worker.protocol import Assignment, PayloadRef
from jobyard.worker.runner import RunnerOptions
from jobyard.worker.sandbox import Isolator, hidden_paths, jobs_root_for, resolve_isolation
from jobyard.worker.workspace import Workspace

#: How long worker calls keep retrying through a database outage when not configured.
DEFAULT_PATIENCE = 600.0


async def resolve_assignment(
    store: Store,
    job: Job,
    keys: Callable[[], Keyring] | None = None,
    *,
    patience: float = DEFAULT_PATIENCE,
) -> Assignment:
    """Work out argv, environment, package and payload of an acquired job.

    Macro precedence (lowest first): the entry point's ``env`` from the manifest, then
    the macro levels account, template, user, jobconfig (as they are now) and job (see
    :func:`jobyard.engine.jobmacros.resolve_for_job`: secure ones decrypted here only,
    their values masked in the log; the job record keeps where each came from).
    Database reads and the initialization write ride out an outage of up to
    ``patience`` seconds (see :mod:`jobyard.engine.retry`).
    """
    ctx = await Persistent(f"read the run context of job {job.id}", patience).run(
        lambda: store.job_run_context(job)
    )
    if job.package_id is not None and ctx.package is None:
        raise InvalidInput(f"package {job.package_id} no longer exists")
    what = _what_to_run(job, ctx.package)
    resolved = await Persistent(f"resolve the macros of job {job.id}", patience).run(
        lambda: resolve_for_job(store, keys or _no_keyring, job)
    )
    session_token = await initialize_job(store, job, resolved.record, patience=patience)
    return _assignment(job, what, ctx.payload, resolved, session_token)


@dataclass(frozen=True, slots=True)
class _WhatToRun:
    argv: list[str]
    env: dict[str, str]
    timeout_minutes: int
    package: Package | None


def _what_to_run(job: Job, package: Package | None) -> _WhatToRun:
    """The program (argv), the entry point's environment and timeout of a job.

    The entry point and the timeout come from :mod:`jobyard.core.runplan`, the rule
    the API shows as the job's ``effective_timeout``.
    """
    env: dict[str, str] = {}
    argv: list[str] | None = job.command
    if package is not None:
        entry_name = chosen_entrypoint(job, package)
        if entry_name is not None:
            entry = package.entrypoints.get(entry_name)
            if entry is None:
                raise InvalidInput(f"package {package.id} has no entry point {entry_name!r}")
            argv = list(entry["command"])
            env.update(entry.get("env") or {})
        elif argv is None and package.kind == "file":
            argv = [f"./{package.filename}"]
    if not argv:
        raise InvalidInput("nothing to run: the job has no command and no entry point")
    return _WhatToRun(argv, env, effective_timeout(job, package).minutes, package)


def _assignment(
    job: Job,
    what: _WhatToRun,
    payload: list[JobFile],
    resolved: JobMacros,
    session_token: str,
) -> Assignment:
    package = what.package
    return Assignment(
        job=job,
        argv=what.argv,
        env={**what.env, **resolved.env},
        package_sha256=None if package is None else package.sha256,
        package_kind=None if package is None else package.kind,
        package_filename=None if package is None else package.filename,
        payload=[PayloadRef(name=f.name, blob_key=f.blob_key) for f in payload],
        timeout_seconds=what.timeout_minutes * 60.0 if what.timeout_minutes else None,
        success_exit_codes=frozenset(job.success_exit_codes),
        secret_values=resolved.secrets,
        template_id=job.template_id,
        session_token=session_token,
        notes=resolved.notes,
    )


def _claimed_assignment(
    claim: Claim, token: str, keys: Callable[[], Keyring]
) -> tuple[Assignment, dict[str, Any]]:
    """The assignment of a claimed job (no database call) and its macro record."""
    job = claim.job
    if job.package_id is not None and claim.package is None:
        raise InvalidInput(f"package {job.package_id} no longer exists")
    if job.submitted_by and claim.submitter is not None and not claim.submitter.active:
        raise Conflict(f"submitting user {claim.submitter.name} is deactivated")
    what = _what_to_run(job, claim.package)
    resolved = resolve_claimed(claim, keys)
    return _assignment(job, what, claim.payload, resolved, token), resolved.record


def _no_keyring() -> Keyring:
    raise SecretError("this worker has no secret key: it cannot decrypt secure macros")


async def initialize_job(
    store: Store, job: Job, record: dict[str, Any], *, patience: float = DEFAULT_PATIENCE
) -> str:
    """Store the job's macro record and mint its SESSION_ID, in one transaction.

    SESSION_ID is a token with the submitting user's authority, valid until the job ends
    (stored hashed). ``Conflict`` (the job ends FAILED) if that user is deactivated;
    empty when the job has no submitting user. ``Conflict`` too, with nothing written,
    when the job is no longer INITIALIZING on the worker that acquired it (lease lost,
    aborted meanwhile): preparing stops there. Retried through a database outage; an
    attempt whose commit went unacknowledged is found by its token before writing again.
    """
    value = SESSION_TOKEN_PREFIX + secrets.token_urlsafe(32) if job.submitted_by else ""
    token_hash = hash_token(value) if value else None
    worker_id = job.worker_id
    if worker_id is None:
        raise Conflict(f"job {job.id} was not acquired by a worker: cannot initialize it")
    persistent = Persistent(f"initialize job {job.id}", patience)

    async def attempt() -> User | None:
        if persistent.unsure and token_hash is not None and job.submitted_by:
            stored = await store.token_lookup(token_hash)
            if stored is not None and stored.job_id == job.id:  # the first attempt committed
                return await store.user_find(job.submitted_by)
        return await store.job_initialize(
            job.id,
            worker_id=worker_id,
            resolved=record,
            user_name=job.submitted_by,
            token_hash=token_hash,
        )

    user = await persistent.run(attempt)
    if user is None:
        return ""
    if not user.active:
        raise Conflict(f"submitting user {user.name} is deactivated")
    return value


class LocalBackend:
    """Direct control-plane access for worker slots living in the server process."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        blobs: BlobStore,
        bus: Bus,
        *,
        slots: int | None = None,
    ) -> None:
        """``slots``: how many slots this backend serves (default: every local slot); a
        claim may fill that many at most, so that many SESSION_IDs are minted for it."""
        self._settings = settings
        self._slots = settings.workers if slots is None else slots
        #: Labels of these slots (JOBYARD_WORKER_LABELS): registered, and sent with claims.
        self._labels = settings.worker_label_map
        self._store = store
        self._blobs = blobs
        self._bus = bus
        self._started: dict[str, datetime] = {}
        self._maskers: dict[int, SecretMasker] = {}  # jobs with secure macros only
        #: The keyrings of these slots (loaded once; a key id they lack reloads them).
        self._keyrings = Keyrings()
        self._patience = settings.db_retry_seconds
        #: Jobs handed to the pool and not reported ended (to tell them from jobs an
        #: acquisition claimed while its answer was lost).
        self._handed: set[int] = set()
        #: The last acquisition failed while its commit was in flight.
        self._acquire_unsure = False
        #: The last wait ended on a fresh wake-up: the next claim need not look first.
        self._work_fresh = False
        #: The last acquisition found the database unavailable (poll it more often).
        self._unavailable_pause = 0.0
        #: Claimed jobs not prepared yet: their run context and SESSION_ID value.
        self._claims: dict[int, tuple[Claim, str]] = {}
        #: Macro records of prepared jobs, written with their RUNNING status.
        self._records: dict[int, dict[str, Any]] = {}
        self._reporter = Reporter(store, patience=self._patience, orphaned=self._orphaned)
        #: Where blobs a job reads are downloaded when the store is not a local folder
        #: (a local folder hands out its own files and nothing lands here).
        self._fetched = settings.effective_blobs_dir / "spool" / "fetch"
        #: Jobs whose payload files were downloaded (their copies go when they end).
        self._payload_copies: dict[int | None, set[Path]] = {}

    def _persistent(self, what: str) -> Persistent:
        return Persistent(what, self._patience)

    async def acquire(
        self,
        *,
        worker_id: str,
        pool: str,
        limit: int,
        free_now: Callable[[], int] | None = None,
    ) -> list[Job]:
        """Claim queued jobs under a lease.

        No ``job_changed`` here, nor on RUNNING: waiters care about ends (abort, log
        follow); they re-read the store on a short poll for anything else.

        While the database is unavailable there is no work to claim (an empty answer,
        and :meth:`wait_for_work` polls every half second at most so work is claimed soon
        after it is back). If a claim's commit went unacknowledged it may have claimed
        jobs: the next call first hands over the INITIALIZING jobs this worker holds
        that were never handed out, so none waits for its lease to expire.
        """
        try:
            jobs = await self._recover_claimed(worker_id) if self._acquire_unsure else []
            if not jobs:
                jobs = await self._claim(worker_id, pool, limit, free_now)
        except DatabaseUnavailable as exc:
            if exc.committed is None:
                self._acquire_unsure = True
            self._unavailable_pause = min(max(self._unavailable_pause * 2, FIRST_PAUSE), MAX_PAUSE)
            return []
        self._unavailable_pause = 0.0
        self._handed.update(job.id for job in jobs)
        return jobs

    async def _claim(
        self, worker_id: str, pool: str, limit: int, free_now: Callable[[], int] | None
    ) -> list[Job]:
        """Claim jobs with their run context; their SESSION_IDs are minted here, stored
        (hashed) by the claim for the jobs that get one. With ``free_now`` the claim may
        take as many jobs as slots are free when it is written (up to this process's
        slots)."""
        if limit <= 0:
            return []
        most = max(limit, self._slots) if free_now is not None else limit
        values = [SESSION_TOKEN_PREFIX + secrets.token_urlsafe(32) for _ in range(most)]
        by_hash = {hash_token(value): value for value in values}
        fresh, self._work_fresh = self._work_fresh, False
        request = ClaimRequest(
            pool=pool,
            limit=limit,
            lease_seconds=self._settings.lease_seconds,
            token_hashes=list(by_hash),
            free_now=free_now,
            look_first=not fresh,
            labels=self._labels,
        )
        claims = await self._reporter.claim(worker_id, request)
        for claim in claims:
            token = by_hash[claim.token_hash] if claim.token_hash is not None else ""
            self._claims[claim.job.id] = (claim, token)
        return [claim.job for claim in claims]

    def _orphaned(self, claims: list[Claim]) -> None:
        """Jobs claimed for an acquisition that was abandoned: the next one hands them
        over (read anew, see :meth:`_recover_claimed`)."""
        if claims:
            self._acquire_unsure = True

    async def _recover_claimed(self, worker_id: str) -> list[Job]:
        held = await self._store.jobs_held_by_workers([worker_id])
        self._acquire_unsure = False
        self._handed.intersection_update(job.id for job in held)  # forget lost ones
        return [
            job
            for job in held
            if job.status is JobStatus.INITIALIZING and job.id not in self._handed
        ]

    async def wait_for_work(self, timeout: float) -> None:
        """Sleep until something is queued (or the timeout; shorter during an outage)."""
        if self._unavailable_pause:
            timeout = min(timeout, self._unavailable_pause)
        self._work_fresh = await self._bus.wait_for_work(timeout)

    def _keyring(self) -> Keyring:
        return self._keyrings.get(self._settings.home, self._settings.secret_key)

    async def prepare(self, job: Job) -> Assignment:
        """What to run: from the job's claim (no database call), or for a job whose claim
        was recovered, read now (through database outages, see :func:`resolve_assignment`)."""
        claimed = self._claims.pop(job.id, None)
        keys = self._keyring
        if claimed is None:  # a job whose claim's answer was lost: read its context now
            assignment = await resolve_assignment(self._store, job, keys, patience=self._patience)
        else:
            assignment, self._records[job.id] = _claimed_assignment(*claimed, keys)
        if assignment.secret_values:  # output file names are masked too
            self._maskers[job.id] = SecretMasker(assignment.secret_values)
        return assignment

    async def package_path(self, sha256: str) -> Path:
        """A local file of the package upload: the blob folder's own file, or a download
        kept by sha256 (content-addressed, so one download serves every later job)."""
        dest = self._fetched / "packages" / sha256
        if dest.is_file():
            return dest
        return await self._blobs.materialize(package_key(sha256), dest)

    async def payload_path(self, ref: PayloadRef) -> Path:
        """A local file of a payload: the blob folder's own file, or a download removed
        when the job ends (the workspace copies it into the job's folder)."""
        dest = self._fetched.joinpath(*ref.blob_key.split("/"))
        src = await self._blobs.materialize(ref.blob_key, dest)
        if src == dest:
            self._payload_copies.setdefault(payload_job(ref.blob_key), set()).add(dest)
        return src

    def _drop_payload_copies(self, job_id: int) -> None:
        for path in self._payload_copies.pop(job_id, ()):
            with contextlib.suppress(OSError):
                path.unlink()

    def log_path(self, job_id: int) -> Path:
        """Where the running job's log is appended on this host: the blob store's spool
        file of the log (the blob itself in a local folder; the writer creates its
        folder when it is missing)."""
        return self._blobs.spool_path(log_key(job_id))

    async def log_closed(self, job_id: int) -> None:
        """Seal the log: nothing to do in a local folder, an upload to a bucket
        (followers are woken when the job ends, and read the bucket from then on)."""
        await self._blobs.seal(log_key(job_id))

    async def set_running(
        self,
        job_id: int,
        *,
        worker_id: str,
        pid: int | None,
        started_at: datetime | None = None,
    ) -> bool:
        """INITIALIZING -> RUNNING (now: the program was just started), with the job's
        macro record; False if the job is not ours any more.

        Written with the other reports of this process (see :mod:`jobyard.engine.reporter`),
        through database outages; a repetition after a commit whose answer was lost is
        recognised by worker and pid.
        """
        report = RunningReport(
            job_id=job_id,
            pid=pid,
            started_at=started_at or utcnow(),
            resolved=self._records.pop(job_id, None),
        )
        outcome = await self._reporter.report(worker_id, report)
        return outcome.moved

    async def end(
        self,
        job_id: int,
        *,
        worker_id: str,
        status: JobStatus,
        exit_code: int | None,
        reason: str | None,
    ) -> None:
        """Record the end status; promotion in the same transaction may queue more work.

        Written with the other reports of this process, through database outages, so a
        job whose program ended while the database restarted ends as it should once it
        is back. The write is guarded by status and holder: an attempt repeated after one
        that did commit finds the job ended and changes nothing (a lost race is ignored
        the same way).
        """
        self._claims.pop(job_id, None)
        self._records.pop(job_id, None)
        report = EndReport(
            job_id=job_id,
            status=status,
            exit_code=exit_code,
            reason=reason,
            actor=f"worker:{worker_id}",
        )
        await self._reporter.report(worker_id, report)
        self._handed.discard(job_id)
        self._maskers.pop(job_id, None)
        self._drop_payload_copies(job_id)
        self._bus.job_changed(job_id)
        self._bus.work_available()

    def forget(self, job_id: int) -> None:
        """Drop what was kept for a job the pool is done with: its claim, macro record
        and secret masker, even when its end was never reported (a lost lease)."""
        self._claims.pop(job_id, None)
        self._records.pop(job_id, None)
        self._maskers.pop(job_id, None)
        self._handed.discard(job_id)
        self._drop_payload_copies(job_id)

    async def renew(self, *, worker_id: str, job_ids: list[int]) -> dict[int, bool]:
        """Renew leases of held jobs (retried through a database outage: idempotent)."""
        return await self._persistent(f"renew the leases of {len(job_ids)} job(s)").run(
            lambda: self._store.leases_renew(
                worker_id=worker_id, job_ids=job_ids, lease_seconds=self._settings.lease_seconds
            )
        )

    async def store_output(self, job_id: int, name: str, path: Path) -> None:
        """Move a file of LOCAL_JOB_OUT_DIR into the blob store and record it."""
        masker = self._maskers.get(job_id)  # a secure value never names a file
        if masker is not None:
            name = masker.mask_text(name)
        key = output_key(job_id, name)
        size = await self._blobs.put_file(key, path, move=True)
        record = JobFile(
            job_id=job_id, kind="output", name=name, size=size, blob_key=key, created_at=utcnow()
        )
        # An upsert by (job, kind, name): repeating it after an outage is harmless.
        await self._persistent(f"record output {name!r} of job {job_id}").run(
            lambda: self._store.job_file_add(record)
        )

    async def heartbeat(self, *, worker_id: str, running: int, draining: bool) -> bool:
        """Refresh this worker's row (health in the workers list); True when an admin
        asked it to drain (read back by the same upsert: no extra round trip).

        Retried through a short outage only (one heartbeat period): a missed heartbeat
        costs nothing but a late health mark, and the pool must stay free to stop.
        """
        now = utcnow()
        started = self._started.setdefault(worker_id, now)
        info = WorkerInfo(
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
            version=__version__,
            labels=dict(self._labels),
        )
        requested: bool = await Persistent(
            f"record the heartbeat of {worker_id}", self._settings.heartbeat_seconds
        ).run(lambda: self._store.worker_upsert(info))
        return requested


def local_worker_pool(
    settings: Settings, store: Store, blobs: BlobStore, bus: Bus, *, slots: int | None = None
) -> WorkerPool:
    """The worker pool of local slots (in the API process or a worker process).

    ``settings.isolation`` is normally already resolved by the server (see
    :meth:`jobyard.runtime.Runtime.start`), so every worker process sandboxes alike.
    """
    count = settings.workers if slots is None else slots
    plan = resolve_isolation(settings.isolation)
    isolator = Isolator(
        plan,
        slots=count,
        uid_first=settings.isolation_uid_first,
        uid_count=settings.isolation_uid_count,
        hidden=hidden_paths(
            [
                settings.home,
                settings.effective_blobs_dir,
                *settings.config_files,
                *settings.isolation_hide,
            ]
        ),
    )
    pool = WorkerPool(
        LocalBackend(settings, store, blobs, bus, slots=count),
        workspace=Workspace.from_settings(settings, jobs_root=jobs_root_for(settings.home, plan)),
        slots=count,
        pool=settings.pool,
        options=RunnerOptions.from_settings(settings),
        heartbeat_seconds=settings.heartbeat_seconds,
        lease_seconds=settings.lease_seconds,
        isolator=isolator,
        # Drained on request, local slots idle rather than exit: the server would
        # restart a worker process that left, as a fresh worker taking jobs again.
        exit_on_drain=False,
    )
    bus.on_abort(pool.abort)
    return pool
