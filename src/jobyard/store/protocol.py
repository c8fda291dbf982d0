"""The storage seam: every database operation of jobyard, typed, noun-verb named.

Two implementations share one conformance suite (``tests/store``): SQLite (embedded
default) and PostgreSQL. Methods are coroutines; each runs as ONE transaction, so
callers never hold a database transaction across an ``await`` of their own.

Status writes are guarded: a method that moves a job applies
``WHERE status IN sources_of(target)`` (see :mod:`jobyard.core.jobs`) and reports a
lost race instead of overwriting. Each successful move records a :class:`JobEvent`.
Whenever a job leaves an ACTIVE status, or enters SEQUENCED, the same transaction
promotes SEQUENCED jobs of its jobconfig under a per-jobconfig lock, so the
``max_concurrent`` limit holds with many servers.

Any method raises ``DatabaseUnavailable`` when the database cannot be reached (or
stays locked) — never a driver error: its ``committed`` says whether a write may have
taken effect (``None``: the connection broke during the commit). A connection that
broke before its commit (a stale one after a database restart), or under a read at any
moment, is replaced and the transaction run again inside the method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from jobyard.core.access import AuditNote
from jobyard.core.jobs import JobStatus
from jobyard.core.macros import MacroSources, StoredMacro
from jobyard.core.models import (
    ApiToken,
    Job,
    JobConfig,
    JobConfigSpec,
    JobEvent,
    JobFile,
    JobFilter,
    NewJob,
    Package,
    Page,
    RunContext,
    WorkerInfo,
)
from jobyard.core.retention import JobconfigKey, JobconfigRemoved, JobsPurged
from jobyard.core.retries import RetryLinks
from jobyard.core.schedules import FiringPlanner, FiringRound, Schedule, ScheduleSpec
from jobyard.core.templates import CloneResult, Template, TemplateSpec
from jobyard.core.users import User
from jobyard.store.protocol_apply import ApplyStore
from jobyard.store.protocol_claims import ClaimStore
from jobyard.store.protocol_stats import StatsStore
from jobyard.store.protocol_users import UserStore
from jobyard.store.protocol_worker_tokens import WorkerTokenStore


class Store(ClaimStore, UserStore, StatsStore, ApplyStore, WorkerTokenStore, Protocol):
    """All persistence of jobyard. See the module docstring for the rules."""

    # -- lifecycle ---------------------------------------------------------------
    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...

    # -- packages ----------------------------------------------------------------
    async def package_insert(
        self,
        *,
        sha256: str,
        filename: str,
        size: int,
        kind: str,
        entrypoints: dict[str, dict[str, Any]],
    ) -> tuple[Package, bool]:
        """Insert a package, or return the existing one with that sha256.

        Returns ``(package, created)``; concurrent uploads of one content yield one row.
        """
        ...

    async def package_get(self, package_id: int) -> Package:
        """Return a package or raise ``NotFound``."""
        ...

    async def packages_list(self, *, cursor: str | None, limit: int) -> Page[Package]:
        """Newest first, cursor-paginated."""
        ...

    # -- jobconfigs --------------------------------------------------------------
    async def jobconfig_insert(self, spec: JobConfigSpec, *, owner: str | None = None) -> JobConfig:
        """Create; ``Conflict`` if the name is taken, ``NotFound`` for an unknown package."""
        ...

    async def jobconfig_get(self, jobconfig_id: int) -> JobConfig:
        """Return a jobconfig or raise ``NotFound``."""
        ...

    async def jobconfig_get_by_name(self, name: str) -> JobConfig:
        """Return a jobconfig by its unique name or raise ``NotFound``."""
        ...

    async def jobconfig_update(
        self, jobconfig_id: int, changes: dict[str, Any], *, changed_by: str | None = None
    ) -> JobConfig:
        """Apply field changes (keys are :class:`JobConfigSpec` fields) and bump updated_at.

        Raising ``max_concurrent`` promotes waiting SEQUENCED jobs in the same transaction.
        When a field of ``DEFINITION_FIELDS`` really changes, ``changed_by`` becomes the
        definer (``definition_changed_by``/``_at``), compared in the same transaction.
        """
        ...

    async def jobconfig_mark_defined(self, jobconfig_id: int, *, changed_by: str | None) -> None:
        """Record ``changed_by`` as the jobconfig's definer now; ``NotFound``."""
        ...

    async def jobconfig_delete(self, jobconfig_id: int) -> JobconfigRemoved:
        """Delete a jobconfig and its ended jobs; ``Conflict`` while any job has not ended.

        Its jobs go with their events, file records and session tokens; the answer
        names their blobs and the packages they used (the caller deletes those next).
        """
        ...

    async def jobconfigs_list(self, *, cursor: str | None, limit: int) -> Page[JobConfig]:
        """Ordered by id ascending, cursor-paginated."""
        ...

    # -- jobs: creation and queries ----------------------------------------------
    # -- schedules ---------------------------------------------------------------------
    async def schedule_insert(
        self,
        jobconfig_id: int,
        spec: ScheduleSpec,
        *,
        next_fire_at: datetime | None,
        changed_by: str | None = None,
    ) -> Schedule:
        """Create (spec already validated); ``NotFound`` jobconfig, ``Conflict`` name taken.

        With macros, ``changed_by`` becomes the jobconfig's definer in the same transaction.
        """
        ...

    async def schedule_get(self, jobconfig_id: int, schedule_id: int) -> Schedule:
        """One schedule of this jobconfig, or ``NotFound``."""
        ...

    async def schedules_list(self, jobconfig_id: int) -> list[Schedule]:
        """The jobconfig's schedules by id; ``NotFound`` for an unknown jobconfig."""
        ...

    async def schedule_replace(
        self,
        jobconfig_id: int,
        schedule_id: int,
        spec: ScheduleSpec,
        *,
        next_fire_at: datetime | None,
        expected_version: int | None = None,
        changed_by: str | None = None,
    ) -> Schedule:
        """New writable fields + next fire time, version + 1 (CAS on ``expected_version``).

        When its macros change, ``changed_by`` becomes the jobconfig's definer.
        """
        ...

    async def schedule_delete(self, jobconfig_id: int, schedule_id: int) -> None:
        """Delete a schedule; ``NotFound`` if it is not one of this jobconfig's."""
        ...

    async def schedules_next_due(self) -> datetime | None:
        """The earliest ``next_fire_at`` over all schedules."""
        ...

    async def schedules_due_between(
        self,
        after: datetime | None,
        until: datetime,
        *,
        limit: int,
        after_id: int | None = None,
    ) -> list[Schedule]:
        """Schedules with ``after < next_fire_at <= until`` by (next_fire_at, id); paged."""
        ...

    async def schedules_fire_due(self, *, limit: int, planner: FiringPlanner) -> FiringRound:
        """Fire up to ``limit`` due schedules in one transaction, each exactly once."""
        ...

    # -- jobs ----------------------------------------------------------------------------
    async def job_insert(
        self, new: NewJob, *, actor: str, reason: str | None, audit: AuditNote | None = None
    ) -> Job:
        """Create a job WAITING (``new.hold``) or SEQUENCED, then promote in the same tx.

        The returned job reflects the promotion (it may already be QUEUED). ``audit`` is
        written about the new job in the same transaction.
        """
        ...

    async def job_submit_for_jobconfig(
        self,
        jobconfig_id: int,
        *,
        macros: dict[str, str],
        hold: bool,
        trigger: str,
        submitted_by: str | None,
        actor: str,
        reason: str | None,
        definers: tuple[str, ...] = (),
        audit: AuditNote | None = None,
    ) -> Job:
        """Snapshot the jobconfig and insert a job of it, in one transaction (with
        ``audit`` about the new job, when given).

        ``NotFound`` for an unknown jobconfig, ``Conflict`` if it is disabled. Otherwise
        as :meth:`job_insert` with what to run, limits and pool taken from the jobconfig.
        The job's ``definers``: the jobconfig's and its template's definers now, plus
        ``definers``, without the submitter.
        """
        ...

    async def job_get(self, job_id: int) -> Job:
        """Return a job or raise ``NotFound``."""
        ...

    async def jobs_list(
        self, flt: JobFilter, *, cursor: str | None, limit: int, oldest_first: bool = False
    ) -> Page[Job]:
        """Newest first (id descending), or oldest first (ascending); filtered,
        cursor-paginated (a cursor continues in the way of the listing that wrote it)."""
        ...

    async def job_events(self, job_id: int) -> list[JobEvent]:
        """The job's transitions in order, first one WAITING or SEQUENCED."""
        ...

    # -- jobs: transitions ---------------------------------------------------------
    async def job_release(self, job_id: int, *, actor: str) -> Job:
        """WAITING -> SEQUENCED (+ promotion). ``Conflict`` from any other status."""
        ...

    async def job_cancel(self, job_id: int, *, actor: str, reason: str | None) -> Job:
        """WAITING|SEQUENCED|QUEUED -> CANCELLED (+ promotion). ``Conflict`` otherwise.

        Races with :meth:`job_acquire` have exactly one winner.
        """
        ...

    async def job_acquire(
        self,
        *,
        worker_id: str,
        pool: str,
        limit: int,
        lease_seconds: float,
        labels: Mapping[str, str] | None = None,
    ) -> list[Job]:
        """Claim up to ``limit`` QUEUED jobs of ``pool`` -> INITIALIZING for this worker.

        Only jobs requiring no worker labels, or only labels among ``labels`` (the
        worker's, same values). Order: priority descending, then seq ascending. Sets
        worker_id, acquired_at and lease_expires_at in the same statement. Each job is
        claimed by one worker only.
        """
        ...

    async def job_set_running(self, job_id: int, *, worker_id: str, pid: int | None) -> Job:
        """INITIALIZING -> RUNNING for the holding worker; sets started_at and pid.

        ``Conflict`` if the job is no longer held by ``worker_id`` in INITIALIZING.
        """
        ...

    async def job_end(
        self,
        job_id: int,
        *,
        worker_id: str | None,
        status: JobStatus,
        exit_code: int | None,
        reason: str | None,
        actor: str,
    ) -> Job:
        """Move a held job to FINISHED, ERROR or FAILED (+ promotion); sets ended_at.

        ``worker_id`` (when given) must match the holder. ``Conflict`` if the transition
        is not allowed from the current status (e.g. the job already ended).
        """
        ...

    async def job_request_abort(self, job_id: int, *, actor: str, reason: str | None) -> Job:
        """Mark an INITIALIZING/RUNNING job for abort; ``Conflict`` from other statuses."""
        ...

    async def jobs_promote_sequenced(self, jobconfig_id: int | None) -> list[int]:
        """Promote SEQUENCED -> QUEUED within the limit; ``None`` = ad-hoc jobs.

        Normally called inside other transitions; exposed for the maintenance sweep.
        """
        ...

    async def jobconfigs_with_sequenced(self) -> list[int | None]:
        """Jobconfig ids (``None`` for ad-hoc) that have SEQUENCED jobs: the sweep's input."""
        ...

    # -- leases ----------------------------------------------------------------------
    async def leases_renew(
        self, *, worker_id: str, job_ids: list[int], lease_seconds: float
    ) -> dict[int, bool]:
        """Extend the leases this worker still holds.

        Returns ``{job_id: abort_requested}`` for the jobs still held; a job missing from
        the answer is no longer this worker's (ended or taken away).
        """
        ...

    async def jobs_fail_expired_leases(
        self, *, now: datetime, reason: str, sweep_interval: float | None = None
    ) -> list[Job]:
        """End every INITIALIZING/RUNNING job whose lease expired as FAILED (+ promotion).

        ``sweep_interval``: the caller sweeps this often. A longer pause since the last
        sweep (database unreachable, no server up) is not counted against any lease:
        every held lease is pushed back by it first, in the same transaction.
        """
        ...

    async def jobs_held_by_workers(self, worker_ids: list[str]) -> list[Job]:
        """INITIALIZING/RUNNING jobs held by any of these workers (restart recovery)."""
        ...

    # -- retries ---------------------------------------------------------------------
    async def jobs_submit_due_retries(self, *, now: datetime) -> list[Job]:
        """Decide each ended job of a jobconfig with a retry policy whose retry is due.

        Submits a new job repeating it (trigger ``retry``) while the policy has attempts
        left, and records the decision keyed by the ended job, so each ended job is
        decided exactly once however many passes run concurrently. Returns the new jobs.
        Nothing on the job path reads or writes what this uses.
        """
        ...

    async def job_retry_links(self, job_id: int) -> RetryLinks:
        """The job this one retries (with its attempt number) and the job retrying it."""
        ...

    # -- job files -------------------------------------------------------------------
    async def job_run_context(self, job: Job) -> RunContext:
        """The job's package, its jobconfig's current macros and its payload files.

        One read transaction for what preparing a job needs (the worker hot path).
        """
        ...

    async def job_file_add(self, file: JobFile) -> None:
        """Record a payload or output file (replacing one of the same kind and name)."""
        ...

    async def job_files_list(self, job_id: int, kind: str) -> list[JobFile]:
        """Files of a job of one kind, by name."""
        ...

    # -- tokens -----------------------------------------------------------------------
    async def token_insert(
        self,
        *,
        name: str,
        token_hash: str,
        role: str,
        user_id: int | None = None,
        kind: str = "admin",
        expires_at: datetime | None = None,
        job_id: int | None = None,
    ) -> ApiToken:
        """Store a token by its hash."""
        ...

    async def token_lookup(self, token_hash: str) -> ApiToken | None:
        """Find a non-revoked token by hash."""
        ...

    async def tokens_count(self) -> int:
        """How many tokens exist (revoked included): zero means first start."""
        ...

    # -- workers and leadership ----------------------------------------------------------
    async def worker_upsert(self, info: WorkerInfo) -> bool:
        """Register a worker or refresh its heartbeat; True when a drain was requested
        for it (read in the same statement: the heartbeat's answer costs no round trip).
        ``info.drain_requested`` is not written: only :meth:`worker_request_drain` sets it.
        """
        ...

    async def worker_request_drain(self, worker_id: str) -> WorkerInfo:
        """Mark the worker to drain (idempotent); ``NotFound`` for an unknown id."""
        ...

    async def workers_list(self) -> list[WorkerInfo]:
        """Every known worker."""
        ...

    async def leader_try_acquire(self, *, name: str, holder: str, ttl_seconds: float) -> bool:
        """Take or keep the leadership ``name`` for ``ttl_seconds``; False if another holds it."""
        ...

    async def leaders_release(self, *, holder: str) -> int:
        """Give up every leadership ``holder`` holds (a server stopping); how many."""
        ...

    # -- templates ----------------------------------------------------------
    async def template_insert(self, spec: TemplateSpec, *, owner: str | None = None) -> Template:
        """Create; ``Conflict`` if the name is taken, ``NotFound`` for an unknown package."""
        ...

    async def template_get(self, template_id: int) -> Template:
        """Return a template or raise ``NotFound``."""
        ...

    async def template_get_by_name(self, name: str) -> Template:
        """Return a template by its unique name or raise ``NotFound``."""
        ...

    async def template_update(
        self, template_id: int, changes: dict[str, Any], *, changed_by: str | None = None
    ) -> Template:
        """Apply field changes (keys are :class:`TemplateSpec` fields), bump updated_at.

        When package, entry point or command really change, ``changed_by`` becomes the
        template's definer.
        """
        ...

    async def template_delete(self, template_id: int) -> None:
        """Delete a template and its macros; ``Conflict`` while a jobconfig names it."""
        ...

    async def templates_list(self, *, cursor: str | None, limit: int) -> Page[Template]:
        """Ordered by id ascending, cursor-paginated."""
        ...

    async def template_jobconfigs(self, template_id: int) -> list[JobConfig]:
        """The jobconfigs naming this template, by id; ``NotFound`` for an unknown template."""
        ...

    async def package_get_by_sha256(self, sha256: str) -> Package | None:
        """The package with this content hash, if uploaded (template import resolves by it)."""
        ...

    async def template_clone(
        self,
        template_id: int,
        *,
        name: str,
        owner: str | None,
        jobconfig_prefix: str | None = None,
    ) -> CloneResult:
        """Copy a template (with ``jobconfig_prefix``: its jobconfigs too) in one transaction.

        Copies are named ``prefix + name``; schedules are not copied; secure macros are
        not copied (their names are reported). ``Conflict`` on any name clash.
        """
        ...

    # -- macros of the account, template, user and jobconfig levels ---
    async def macros_list(self, scope: str, scope_id: int) -> list[StoredMacro]:
        """A level's macros by name (a jobconfig's plain ones from its field); ``NotFound``."""
        ...

    async def macros_put(
        self,
        scope: str,
        scope_id: int,
        items: list[tuple[str, str, bool, bool]],
        *,
        updated_by: str | None,
    ) -> list[StoredMacro]:
        """Create/replace ``(name, stored value, secure, only_if_new)`` macros of a level.

        One transaction; returns the level. ``InvalidInput`` when a secure macro would
        become non-secure. Jobconfig plain values go to its ``macros`` field. On a
        jobconfig or template, ``updated_by`` becomes its definer when a plain value really
        changes or a secure one is written.
        """
        ...

    async def macro_delete(
        self, scope: str, scope_id: int, name: str, *, changed_by: str | None = None
    ) -> None:
        """Delete one macro of a level; ``NotFound`` if it has no such macro.

        On a jobconfig or template, ``changed_by`` becomes its definer.
        """
        ...

    async def macros_delete_of(self, scope: str, scope_id: int) -> int:
        """Delete every table row of one object (when it is deleted); the count."""
        ...

    async def macro_sources(
        self,
        *,
        jobconfig_id: int | None,
        template_id: int | None = None,
        user_name: str | None = None,
    ) -> MacroSources:
        """Every level's macros for a job of ``jobconfig_id`` in one read (secure encrypted).

        ``template_id``/``user_name`` default to the jobconfig's template and owner.
        """
        ...

    async def job_initialize(
        self,
        job_id: int,
        *,
        worker_id: str,
        resolved: dict[str, Any],
        user_name: str | None,
        token_hash: str | None,
    ) -> User | None:
        """Session token (active user only) + resolved macro record, in one transaction.

        Only while the job is INITIALIZING and held by ``worker_id`` (``Conflict``
        otherwise, ``NotFound`` for an unknown job): a worker that lost the job changes
        nothing.
        """
        ...

    async def macros_reencrypt(self, transform: Callable[[StoredMacro], str]) -> int:
        """Rewrite every secure value as ``transform(macro)`` in one transaction (rotation)."""
        ...

    async def macro_user_id(self, name: str) -> int | None:
        """The id of the user called ``name``, if any."""
        ...

    # -- retention -------------------------------------------------------------------
    async def retention_overrides(self) -> list[tuple[int, float | None, int | None]]:
        """``(jobconfig id, max_age_days, max_jobs)`` of every jobconfig (None: global)."""
        ...

    async def jobs_purgeable(
        self,
        jobconfig_id: JobconfigKey,
        *,
        keep: int,
        ended_before: datetime | None,
        after_id: int = 0,
        limit: int,
    ) -> list[int]:
        """Ids (ascending, > ``after_id``) of ended jobs of one jobconfig past their keep.

        ``jobconfig_id`` None: ad-hoc jobs. Past the keep: older than the ``keep`` newest
        ended jobs (0: no count limit) or ended before ``ended_before`` (None: no age
        limit). Jobs that have not ended are never listed.
        """
        ...

    async def jobs_purge(self, job_ids: list[int], *, dry_run: bool = False) -> JobsPurged:
        """Delete these jobs if ended, with events, file records and session tokens (one tx).

        Returns what went and the blob keys of their files (deleted by the caller after
        the commit). ``dry_run`` changes nothing and answers what would go.
        """
        ...

    async def audit_purge(self, *, before: datetime, limit: int, dry_run: bool = False) -> int:
        """Delete up to ``limit`` audit rows older than ``before``; the count.

        ``dry_run``: how many rows are older than ``before`` (nothing deleted).
        """
        ...

    async def packages_purgeable(self, *, created_before: datetime, limit: int) -> list[Package]:
        """Packages no jobconfig, template or job refers to, created before the time."""
        ...

    async def packages_purge(
        self, package_ids: list[int], *, created_before: datetime | None
    ) -> list[Package]:
        """Delete these packages if still unreferenced (and old enough); the deleted ones."""
        ...

    async def jobs_existing(self, job_ids: list[int]) -> set[int]:
        """Which of these job ids still exist (the orphan-file sweep)."""
        ...

    async def packages_existing(self, sha256s: list[str]) -> set[str]:
        """Which of these package hashes have a package row (the orphan-file sweep)."""
        ...
