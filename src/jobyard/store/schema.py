"""The database schema, as SQLAlchemy Core metadata: the one description both engines share.

The Alembic chain in :mod:`jobyard.store.migrations` must replay to exactly this
metadata (a test compares them on both engines). Column order of ``jobs`` follows the
fields of :class:`jobyard.core.models.Job`, so a RETURNING row maps positionally.

Index choices follow the hot paths:

* acquisition: partial ``(pool, priority DESC, seq) WHERE status = 'QUEUED'``: only
  queued jobs are in it, so history never slows a claim;
* sequencing: ``(jobconfig_id, status, seq)`` (count ACTIVE, oldest SEQUENCED first);
* listing: ``(jobconfig_id, status, id)``, ``(status, id)``, ``(created_at)``,
  ``(jobconfig_id, created_at)``: newest-first pages read an index range backwards;
* leases: partial ``(lease_expires_at) WHERE status IN ('INITIALIZING', 'RUNNING')``;
* retention: partial ``(jobconfig_id, id) WHERE status IN (<ended>)``: the ended jobs
  of a jobconfig, oldest first, without touching the live ones.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Sequence,
    String,
    Table,
    Text,
    false,
    text,
)
from sqlalchemy.types import TypeDecorator

from jobyard.core.jobs import HELD, JobStatus

#: Naming convention so constraint names are identical on both engines and in migrations.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both engines.

    PostgreSQL stores ``timestamptz``. SQLite has no time type: values are stored as
    naive UTC text (fixed width, so text order is time order) and come back aware.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes (ambiguous); normalise to UTC (naive on SQLite)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _json() -> JSON:
    # none_as_null: a Python None is stored as SQL NULL, not the JSON literal 'null'.
    return JSON(none_as_null=True)


#: Surrogate keys of the big tables: 64-bit on PostgreSQL, the rowid alias on SQLite
#: (``BIGINT PRIMARY KEY`` would not alias the rowid there, so no autoincrement).
BigId = BigInteger().with_variant(Integer(), "sqlite")

#: The global, monotonic sequencing number (PostgreSQL; SQLite computes MAX(seq)+1 under
#: its write lock).
job_seq = Sequence("jobs_seq_seq", metadata=metadata)

_STATUS_VALUES = ", ".join(f"'{s.value}'" for s in JobStatus)
_HELD_VALUES = ", ".join(f"'{s.value}'" for s in sorted(HELD))

packages = Table(
    "packages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False),
    Column("filename", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("entrypoints", _json(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ux_packages_sha256", "sha256", unique=True),
    sqlite_autoincrement=True,
)

jobconfigs = Table(
    "jobconfigs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("package_id", Integer, ForeignKey("packages.id"), nullable=True),
    Column("entrypoint", String(200), nullable=True),
    Column("command", _json(), nullable=True),
    Column("macros", _json(), nullable=False),
    Column("max_concurrent", Integer, nullable=False),
    Column("timeout", Integer, nullable=False),
    Column("success_exit_codes", _json(), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("description", Text, nullable=False),
    Column("pool", String(100), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("owner", String(200), nullable=True),  # 0002; scheduled jobs run as the owner
    Column("template_id", Integer, nullable=True),  # 0003: inherits package/entrypoint/macros
    # 0004: macro names a caller with only `execute` may set at run time (a JSON list;
    # NULL is read as the empty list: a JSON server default does not compare on PostgreSQL)
    Column("parameters", _json(), nullable=True),
    # 0004: who last changed what it runs, and when (bounds its jobs' SESSION_ID)
    Column("definition_changed_by", String(200), nullable=True),
    Column("definition_changed_at", UtcDateTime(), nullable=True),
    # 0005: retention overrides of its ended jobs (NULL: the global setting)
    Column("retention_max_age_days", Float, nullable=True),
    Column("retention_max_jobs", Integer, nullable=True),
    # 0009: retry policy (jobyard.core.retries); retry_since: when retries went above 0
    Column("retries", Integer, nullable=False, server_default="0"),
    Column("retry_delay_seconds", Float, nullable=False, server_default="30"),
    Column("retry_backoff", Float, nullable=False, server_default="2"),
    Column("retry_on", _json(), nullable=True),
    Column("retry_since", UtcDateTime(), nullable=True),
    # 0010: worker labels its jobs require (a JSON object; NULL: none, or its template's)
    Column("labels", _json(), nullable=True),
    Index("ux_jobconfigs_name", "name", unique=True),
    CheckConstraint("max_concurrent >= 0", name="max_concurrent_nonneg"),
    sqlite_autoincrement=True,
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("jobconfig_id", Integer, ForeignKey("jobconfigs.id"), nullable=True),
    Column("package_id", Integer, ForeignKey("packages.id"), nullable=True),
    Column("entrypoint", String(200), nullable=True),
    Column("command", _json(), nullable=True),
    Column("macros", _json(), nullable=False),
    Column("timeout", Integer, nullable=False),
    Column("success_exit_codes", _json(), nullable=False),
    Column("pool", String(100), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("trigger", String(100), nullable=False),
    Column("submitted_by", String(200), nullable=True),
    Column("rerun_of", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),
    Column("status_reason", Text, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("seq", BigInteger, nullable=True),
    Column("worker_id", String(200), nullable=True),
    Column("lease_expires_at", UtcDateTime(), nullable=True),
    Column("abort_requested_at", UtcDateTime(), nullable=True),
    Column("pid", Integer, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("sequenced_at", UtcDateTime(), nullable=True),
    Column("queued_at", UtcDateTime(), nullable=True),
    Column("acquired_at", UtcDateTime(), nullable=True),
    Column("started_at", UtcDateTime(), nullable=True),
    Column("ended_at", UtcDateTime(), nullable=True),
    Column("schedule_id", Integer, nullable=True),  # 0002: the schedule that fired it
    Column("scheduled_for", UtcDateTime(), nullable=True),  # 0002: its nominal fire time
    Column("template_id", Integer, nullable=True),  # 0003: its jobconfig's template then
    # 0003: the macros the job got, resolved at initialization, as
    # {name: {"level": "account|template|user|jobconfig|job", "secure": bool, "value": str|None}}
    # (value None for secure ones: never stored in clear).
    Column("resolved_macros", _json(), nullable=True),
    # 0004: names of the users besides the submitter who decided what it runs (its
    # jobconfig's and template's definers, and those of the job that submitted it)
    Column("definers", _json(), nullable=True),
    # 0010: worker labels it requires, copied at submission (NULL: none; claims test it)
    Column("labels", _json(), nullable=True),
    CheckConstraint(f"status IN ({_STATUS_VALUES})", name="status_known"),
    sqlite_autoincrement=True,
)

Index(
    "ix_jobs_acquire",
    jobs.c.pool,
    jobs.c.priority.desc(),
    jobs.c.seq,
    postgresql_where=text("status = 'QUEUED'"),
    sqlite_where=text("status = 'QUEUED'"),
)
Index("ix_jobs_sequencing", jobs.c.jobconfig_id, jobs.c.status, jobs.c.seq)
Index("ux_jobs_seq", jobs.c.seq, unique=True)
Index("ix_jobs_jobconfig_status_id", jobs.c.jobconfig_id, jobs.c.status, jobs.c.id)
Index("ix_jobs_status_id", jobs.c.status, jobs.c.id)
Index("ix_jobs_created_at", jobs.c.created_at)
Index("ix_jobs_jobconfig_created_at", jobs.c.jobconfig_id, jobs.c.created_at)
Index(
    "ix_jobs_lease",
    jobs.c.lease_expires_at,
    postgresql_where=text(f"status IN ({_HELD_VALUES})"),
    sqlite_where=text(f"status IN ({_HELD_VALUES})"),
)

#: Retention (0005): a jobconfig's ended jobs by id (count, keep the newest N, oldest first).
#: Partial on ``ended_at`` (set by every end), not on the status: a listing filtered by
#: an end status must not mistake this (jobconfig, id) index for its (status, id) one.
Index(
    "ix_jobs_ended",
    jobs.c.jobconfig_id,
    jobs.c.id,
    postgresql_where=text("ended_at IS NOT NULL"),
    sqlite_where=text("ended_at IS NOT NULL"),
)

#: Retention (0005): is a package still used by some job? (jobs of a command have none)
Index(
    "ix_jobs_package_id",
    jobs.c.package_id,
    postgresql_where=text("package_id IS NOT NULL"),
    sqlite_where=text("package_id IS NOT NULL"),
)

#: A firing is never run twice: one job at most per (schedule, nominal fire time).
Index(
    "ux_jobs_schedule_firing",
    jobs.c.schedule_id,
    jobs.c.scheduled_for,
    unique=True,
    postgresql_where=text("schedule_id IS NOT NULL"),
    sqlite_where=text("schedule_id IS NOT NULL"),
)

#: Retries (0009), kept beside ``jobs`` so the job path never reads them: one row per
#: ended job the maintenance pass decided about (``retry_of``, the primary key, makes a
#: second decision impossible), naming the job that repeats it (``job_id``; NULL when the
#: policy allowed no more) and that job's ``attempt`` (1 = first retry).
job_retries = Table(
    "job_retries",
    metadata,
    Column("retry_of", BigInteger, primary_key=True, autoincrement=False),
    Column("job_id", BigInteger, nullable=True),
    Column("attempt", Integer, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ux_job_retries_job_id", "job_id", unique=True),
)

job_events = Table(
    "job_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # No foreign key (0012): events are written only with their job, and retention
    # deletes a job's events with it; the check cost every event a look-up and a lock
    # of the job's row.
    Column("job_id", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=True),
    Index("ix_job_events_job_id_id", "job_id", "id"),
    sqlite_autoincrement=True,
)

job_files = Table(
    "job_files",
    metadata,
    Column(
        "job_id",
        BigInteger,
        ForeignKey("jobs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("kind", String(16), primary_key=True),
    Column("name", String(500), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("blob_key", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("token_hash", String(128), nullable=False),
    Column("role", String(32), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked", Boolean, nullable=False),
    # 0003: whose token (NULL: the bootstrap admin token of admin.token, before users existed)
    Column("user_id", Integer, nullable=True),
    # 0003: "admin" (bootstrap) | "personal" | "access" | "refresh" | "session"
    Column("kind", String(16), nullable=False, server_default="personal"),
    Column("expires_at", UtcDateTime(), nullable=True),  # 0003: NULL = no expiry
    Column("job_id", BigInteger, nullable=True),  # 0003: a session token's job
    # 0007: when it was last used, to within a minute (personal and admin tokens)
    Column("last_used_at", UtcDateTime(), nullable=True),
    Index("ux_api_tokens_token_hash", "token_hash", unique=True),
    Index("ix_api_tokens_user_id", "user_id"),
    Index("ix_api_tokens_job_id", "job_id"),  # 0005: purged with their job
    sqlite_autoincrement=True,
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("password_hash", Text, nullable=True),  # argon2; NULL = cannot log in by password
    Column("role", String(16), nullable=False),  # "admin" | "user"
    Column("active", Boolean, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ux_users_name", "name", unique=True),
    CheckConstraint("role IN ('admin', 'user')", name="role_known"),
    sqlite_autoincrement=True,
)

#: Failed logins per key ("user:<name>" and "ip:<address>"), for throttling.
login_failures = Table(
    "login_failures",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_failure_at", UtcDateTime(), nullable=False),
    Column("blocked_until", UtcDateTime(), nullable=True),
)

templates = Table(
    "templates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("package_id", Integer, ForeignKey("packages.id"), nullable=True),
    Column("entrypoint", String(200), nullable=True),
    Column("command", _json(), nullable=True),
    Column("description", Text, nullable=False),
    Column("owner", String(200), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("definition_changed_by", String(200), nullable=True),  # 0004
    Column("definition_changed_at", UtcDateTime(), nullable=True),  # 0004
    # 0009: retry policy its jobconfigs take when they set none (jobyard.core.retries)
    Column("retries", Integer, nullable=False, server_default="0"),
    Column("retry_delay_seconds", Float, nullable=False, server_default="30"),
    Column("retry_backoff", Float, nullable=False, server_default="2"),
    Column("retry_on", _json(), nullable=True),
    Column("retry_since", UtcDateTime(), nullable=True),
    # 0010: worker labels the jobs of its jobconfigs require when they set none
    Column("labels", _json(), nullable=True),
    Index("ux_templates_name", "name", unique=True),
    sqlite_autoincrement=True,
)

#: Macros of the account, template, user and jobconfig levels (the job level lives on the
#: job). A secure value is stored encrypted (``value`` = key id + AEAD ciphertext).
macros = Table(
    "macros",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(16), nullable=False),  # account | template | user | jobconfig
    Column("scope_id", Integer, nullable=False),  # 0 for the account level
    Column("name", String(128), nullable=False),
    Column("value", Text, nullable=False),
    Column("secure", Boolean, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("updated_by", String(200), nullable=True),
    Index("ux_macros_scope_scope_id_name", "scope", "scope_id", "name", unique=True),
    CheckConstraint("scope IN ('account', 'template', 'user', 'jobconfig')", name="scope_known"),
    sqlite_autoincrement=True,
)

#: Access policies: a user may do ``action`` on ``resource`` objects matching ``selector``
#: (an id, ``*``, or ``template:<id>`` for every jobconfig of that template).
policies = Table(
    "policies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("action", String(16), nullable=False),  # view | edit | delete | execute
    Column("resource", String(16), nullable=False),  # jobconfigs | templates
    Column("selector", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Index(
        "ux_policies_user_id_action_resource_selector",
        "user_id",
        "action",
        "resource",
        "selector",
        unique=True,
    ),
    sqlite_autoincrement=True,
)

#: Who did what, when and from where (never a secure value).
audit = Table(
    "audit",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor", String(200), nullable=False),  # user:<name>, scheduler, system
    Column("action", String(64), nullable=False),  # e.g. jobconfig.create, macro.set
    Column("object_type", String(32), nullable=False),
    Column("object_id", String(200), nullable=True),
    Column("details", _json(), nullable=True),
    Column("remote_addr", String(64), nullable=True),
    Index("ix_audit_at", "at"),
    Index("ix_audit_object_type_object_id", "object_type", "object_id"),
    Index("ix_audit_actor_at", "actor", "at"),
    sqlite_autoincrement=True,
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("pool", String(100), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("slots", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("heartbeat_at", UtcDateTime(), nullable=False),
    Column("draining", Boolean, nullable=False),
    Column("home", Text, nullable=True),
    # 0008: the version a worker runs and its labels (a JSON object; NULL reads as {})
    Column("version", String(64), nullable=True),
    Column("labels", _json(), nullable=True),
    # 0010: an admin asked it to drain (its heartbeat's answer says so)
    Column("drain_requested", Boolean, nullable=False, server_default=false()),
)

#: 0010: tokens of remote workers (``jobyard worker``), their own kind: they open the
#: worker routes only, and user tokens never open those. Stored by hash like API tokens;
#: ``pool`` (NULL: any) is the only pool a worker holding it may serve.
worker_tokens = Table(
    "worker_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("token_hash", String(128), nullable=False),
    Column("pool", String(100), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("revoked", Boolean, nullable=False),
    Column("last_used_at", UtcDateTime(), nullable=True),
    Index("ux_worker_tokens_token_hash", "token_hash", unique=True),
    sqlite_autoincrement=True,
)

schedules = Table(
    "schedules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "jobconfig_id",
        Integer,
        ForeignKey("jobconfigs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", String(128), nullable=False),
    Column("cron", String(400), nullable=True),
    Column("interval_minutes", Integer, nullable=True),
    Column("start_at", UtcDateTime(), nullable=True),
    Column("timezone", String(64), nullable=False),
    Column("misfire_policy", String(16), nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("macros", _json(), nullable=False),
    Column("description", Text, nullable=False),
    Column("next_fire_at", UtcDateTime(), nullable=True),
    Column("last_fire_at", UtcDateTime(), nullable=True),
    Column("last_result", Text, nullable=True),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ux_schedules_jobconfig_id_name", "jobconfig_id", "name", unique=True),
    Index("ix_schedules_next_fire_at", "next_fire_at"),
    CheckConstraint("(cron IS NULL) <> (interval_minutes IS NULL)", name="cron_xor_interval"),
    sqlite_autoincrement=True,
)

leaders = Table(
    "leaders",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
)

#: Job statistics (0006): a rollup of ended jobs per jobconfig (``jobconfig_key``; 0 for
#: ad-hoc jobs) and time bucket of their end, at three grains: ``h`` (hour), ``d`` (day,
#: UTC) and ``t`` (all time, ``bucket_start`` the epoch). Maintained off the job path by
#: the maintenance leader (:mod:`jobyard.store.sql.stats`); bins are the packed
#: :mod:`jobyard.core.stats` histograms as bytes. Purging jobs never changes these rows.
jobstats = Table(
    "jobstats",
    metadata,
    Column("grain", String(1), primary_key=True),
    Column("jobconfig_key", Integer, primary_key=True),
    Column("bucket_start", UtcDateTime(), primary_key=True),
    Column("finished", BigInteger, nullable=False),
    Column("error", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),
    Column("cancelled", BigInteger, nullable=False),
    Column("dur_count", BigInteger, nullable=False),
    Column("dur_sum_ms", Float, nullable=False),
    Column("dur_max_ms", Float, nullable=False),
    Column("dur_bins", LargeBinary, nullable=False),
    Column("wait_count", BigInteger, nullable=False),
    Column("wait_sum_ms", Float, nullable=False),
    Column("wait_max_ms", Float, nullable=False),
    Column("wait_bins", LargeBinary, nullable=False),
    Index("ix_jobstats_grain_bucket_start", "grain", "bucket_start"),
)

#: The rollup's watermark (one row, id 1): every job with ``id <= folded_through`` is in
#: ``jobstats`` or, if it had not ended when its id was passed, in ``jobstats_pending``.
jobstats_state = Table(
    "jobstats_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("folded_through", BigInteger, nullable=False),
    Column("folded_at", UtcDateTime(), nullable=True),
)

#: Jobs below the watermark that had not ended when it passed them (folded when they end).
jobstats_pending = Table(
    "jobstats_pending",
    metadata,
    Column("job_id", BigInteger, primary_key=True, autoincrement=False),
)


def table_names() -> list[str]:
    """Every table of the schema, parents first (handy for tests and tooling)."""
    return [t.name for t in metadata.sorted_tables]
