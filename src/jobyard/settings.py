"""One ``Settings`` object, read from ``JOBYARD_*`` variables and an optional TOML file.

Nothing reads the environment anywhere else: the settings are built once at the edge
(CLI, app factory) and passed in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def _default_workers() -> int:
    """4 slots per core, 4..32: jobs mostly wait on I/O (databases, files, networks)."""
    return max(4, min(32, (os.cpu_count() or 2) * 4))


def _default_worker_processes() -> int:
    """One worker process per core (≤ 4), so spawning and reporting use every core."""
    return max(1, min(4, os.cpu_count() or 1))


class SchedulerSettings(BaseModel):
    """``[scheduler]`` in the TOML file; ``JOBYARD_SCHEDULER__<FIELD>`` in the environment."""

    enabled: bool = Field(default=True, description="Fire schedules in this server.")
    allow_seconds: bool = Field(
        default=False, description="Accept cron expressions firing more than once a minute."
    )
    misfire_grace_seconds: float = Field(
        default=60.0,
        ge=1,
        description="A firing found later than this after its time is missed (misfire policy).",
    )
    batch_size: int = Field(
        default=1000, ge=1, le=10_000, description="Schedules fired per transaction."
    )
    poll_seconds: float = Field(
        default=5.0, gt=0, description="Longest sleep (picks up other replicas' changes)."
    )


class AuthSettings(BaseModel):
    """``[auth]`` in the TOML file; ``JOBYARD_AUTH__<FIELD>`` in the environment."""

    access_token_minutes: float = Field(
        default=15, gt=0, description="Lifetime of an access token from POST /api/v1/login."
    )
    refresh_token_days: float = Field(
        default=7, gt=0, description="Lifetime of a refresh token (each is used once)."
    )


class RetentionSettings(BaseModel):
    """``[retention]`` in the TOML file; ``JOBYARD_RETENTION__<FIELD>`` in the environment.

    Ended jobs (with their events, logs, outputs, payloads and session tokens), audit
    rows and unreferenced package blobs are purged by a background pass so that a
    long-running server stops growing. A jobconfig's own ``retention`` overrides the
    job limits for its jobs.
    """

    max_age_days: float = Field(
        default=30, ge=0, description="Ended jobs older than this are purged (0 = keep forever)."
    )
    max_jobs_per_jobconfig: int = Field(
        default=10_000,
        ge=0,
        description="Ended jobs kept per jobconfig, newest first (0 = no limit).",
    )
    audit_days: float = Field(
        default=365, ge=0, description="Audit rows older than this are purged (0 = keep forever)."
    )
    blob_grace_hours: float = Field(
        default=24,
        ge=0,
        description="Unreferenced package blobs (and orphan files) older than this are purged.",
    )
    batch_size: int = Field(
        default=200, ge=1, le=10_000, description="Rows deleted per purge transaction."
    )
    interval_seconds: float = Field(
        default=300, gt=0, description="How often the background purge pass runs."
    )
    enabled: bool = Field(default=True, description="Run the background purge pass here.")
    package_cache_max_bytes: int = Field(
        default=2 * 1024**3,
        ge=0,
        description="Bound of each worker host's unpacked-package cache (LRU; 0 = no bound).",
    )


class StatsSettings(BaseModel):
    """``[stats]`` in the TOML file; ``JOBYARD_STATS__<FIELD>`` in the environment.

    Job statistics come from a rollup the maintenance leader folds ended jobs into
    every ``maintenance_seconds`` (never on the job path).
    """

    fold_lag_seconds: float = Field(
        default=5.0,
        ge=0,
        description="Jobs created less than this long ago wait for the next fold "
        "(an id PostgreSQL handed out may commit late); longer than any submit transaction.",
    )
    fold_batch: int = Field(
        default=5000, ge=1, le=50_000, description="Jobs read per fold transaction."
    )


class MetricsSettings(BaseModel):
    """``[metrics]`` in the TOML file; ``JOBYARD_METRICS__<FIELD>`` in the environment."""

    # A plain str, like secret_key: settings travel to worker processes as JSON.
    token: str = Field(
        default="",
        repr=False,
        description="Bearer token that may read /metrics and nothing else (empty: admins only).",
    )


class Settings(BaseSettings):
    """Every tunable of a jobyard process. Env prefix ``JOBYARD_``; file via ``JOBYARD_CONFIG``."""

    model_config = SettingsConfigDict(
        env_prefix="JOBYARD_", extra="ignore", env_nested_delimiter="__"
    )

    home: Path = Field(default=Path("./var"), description="Data folder: database, blobs, logs.")
    host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port the API listens on.")
    database_url: str = Field(default="", description="SQLAlchemy URL; empty = SQLite in home.")
    blobs_dir: Path | None = Field(
        default=None, description="Packages, logs, outputs; shared by replicas. Default home/blobs."
    )
    blobs_url: str = Field(
        default="",
        description="Blob store: file:///PATH (a folder) or s3://BUCKET/PREFIX; empty = blobs_dir.",
    )
    s3_endpoint_url: str = Field(
        default="",
        description="S3-compatible endpoint for s3:// blobs; empty = boto3's (AWS_ENDPOINT_URL).",
    )
    s3_log_piece_seconds: float = Field(
        default=2.0,
        ge=0,
        description=(
            "With s3:// blobs, the running logs of local slots are uploaded as pieces this "
            "often, so every replica serves them live; 0 = only when the job ends."
        ),
    )
    workers: int = Field(default_factory=_default_workers, ge=0, description="Local slots.")
    worker_processes: int = Field(
        default_factory=_default_worker_processes,
        ge=0,
        le=64,
        description="Processes sharing the local slots (0 = slots inside the API process).",
    )
    pool: str = Field(default="default", description="Worker pool served by local slots.")
    worker_labels: str = Field(
        default="",
        description="Labels of the local slots' workers, k=v,k=v (e.g. gpu=1,zone=a); "
        "empty: none (they claim only jobs requiring no labels).",
    )
    server: str = Field(default="http://127.0.0.1:8080", description="API URL for the CLI.")
    api_url: str = Field(
        default="",
        description="URL jobs reach the API at (JOBYARD_API_URL); empty: http://HOST:PORT.",
    )
    token: str = Field(default="", description="Bearer token for the CLI.")

    lease_seconds: float = Field(default=15.0, gt=0, description="Lease of an acquired job.")
    heartbeat_seconds: float = Field(default=3.0, gt=0, description="Lease renewal period.")
    maintenance_seconds: float = Field(default=2.0, gt=0, description="Sweep period.")
    notify_replicas: bool = Field(
        default=True,
        description="On PostgreSQL, tell the other servers of the database about queued work, "
        "job changes, aborts and schedule changes at once (LISTEN/NOTIFY); off, they find "
        "them by polling (about a second).",
    )
    abort_grace_seconds: float = Field(default=10.0, ge=0, description="SIGTERM->SIGKILL wait.")
    db_retry_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How long a worker retries a status write, end report or lease renewal "
        "through a database outage before giving up on it.",
    )

    isolation: Literal["auto", "uid", "namespace", "none"] = Field(
        default="auto",
        description=(
            "Job sandbox: auto (uid as root, else namespace, else none with a warning), "
            "uid, namespace, or none (jobs can read the server's files)."
        ),
    )
    isolation_uid_first: int = Field(
        default=2_000_000_000,
        ge=1000,
        le=4_000_000_000,
        description="First of the uids jobs run as (root workers); no account may use them.",
    )
    isolation_uid_count: int = Field(
        default=65_536, ge=1, description="How many uids from isolation_uid_first jobs may use."
    )
    isolation_hide: list[Path] = Field(
        default_factory=list,
        description="More host paths a namespace-mode job must not see (JSON list).",
    )

    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    stats: StatsSettings = Field(default_factory=StatsSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    upload_max_bytes: int = Field(default=512 * 1024**2, gt=0, description="Largest upload.")
    upload_max_concurrent: int = Field(
        default=2,
        ge=1,
        description="Uploads one user may send at once to this server; more answer 429.",
    )
    max_json_bytes: int = Field(
        default=1024**2,
        gt=0,
        description="Largest request body outside uploads (JSON, macro files); more is 413.",
    )
    unpack_max_bytes: int = Field(default=2 * 1024**3, gt=0, description="Largest expansion.")
    unpack_max_ratio: float = Field(
        default=200.0,
        ge=1,
        description="Largest expansion as a multiple of an archive's compressed size.",
    )
    unpack_max_entries: int = Field(default=100_000, gt=0, description="Most archive entries.")
    run_macros_max_count: int = Field(
        default=100, ge=0, description="Most run-time macros a job submission may give."
    )
    run_macros_max_bytes: int = Field(
        default=64 * 1024,
        ge=0,
        description="Most bytes (names + values, UTF-8) of a submission's run-time macros.",
    )
    # Secure macros. A plain str (not SecretStr): settings travel to worker processes as
    # JSON, where SecretStr would arrive as "**********". repr=False keeps it out of logs.
    secret_key: str = Field(
        default="",
        repr=False,
        description="Base64 32-byte key of secure macros; empty: $JOBYARD_HOME/secret.key.",
    )

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("blobs_url")
    @classmethod
    def _valid_blobs_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("file:///", "s3://")):
            raise ValueError(
                "JOBYARD_BLOBS_URL must be file:///ABSOLUTE/PATH or s3://BUCKET/PREFIX"
            )
        if value.startswith("s3://") and not value[len("s3://") :].split("/", 1)[0]:
            raise ValueError("JOBYARD_BLOBS_URL names no bucket: write s3://BUCKET[/PREFIX]")
        return value

    @field_validator("worker_labels")
    @classmethod
    def _valid_worker_labels(cls, value: str) -> str:
        from jobyard.core.errors import InvalidInput
        from jobyard.core.labels import format_labels, parse_labels

        try:
            return format_labels(parse_labels(value))
        except InvalidInput as exc:
            raise ValueError(f"JOBYARD_WORKER_LABELS: {exc.message}") from None

    @property
    def worker_label_map(self) -> dict[str, str]:
        """``worker_labels`` as ``{key: value}`` (already validated)."""
        from jobyard.core.labels import parse_labels

        return parse_labels(self.worker_labels)

    @field_validator("secret_key")
    @classmethod
    def _valid_secret_key(cls, value: str) -> str:
        if value.strip():
            from jobyard.core.crypto import SecretError, decode_key

            try:
                decode_key(value, "JOBYARD_SECRET_KEY")
            except SecretError as exc:
                raise ValueError(exc.message) from None
        return value.strip()

    @property
    def effective_blobs_dir(self) -> Path:
        """The blob folder: a ``file://`` ``blobs_url``, else ``blobs_dir`` or ``home/blobs``.

        With an ``s3://`` ``blobs_url`` this folder holds the spool of growing logs.
        """
        if self.blobs_url.startswith("file://"):
            return Path(unquote(urlparse(self.blobs_url).path)).expanduser().resolve()
        return self.blobs_dir.expanduser().resolve() if self.blobs_dir else self.home / "blobs"

    @property
    def config_files(self) -> list[Path]:
        """The TOML settings file this process read (``JOBYARD_CONFIG``), if any."""
        config_file = os.environ.get("JOBYARD_CONFIG")
        return [Path(config_file)] if config_file else []

    @property
    def effective_api_url(self) -> str:
        """Where a job on a local slot reaches this server's API (``JOBYARD_API_URL``).

        ``api_url`` when set (behind a proxy or TLS); else the listening address, with a
        wildcard host (``0.0.0.0``, ``::``) replaced by the loopback address.
        """
        if self.api_url:
            return self.api_url.rstrip("/")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to an embedded SQLite file under ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'jobyard.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order: explicit arguments, environment, then the TOML file named by JOBYARD_CONFIG."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("JOBYARD_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, with explicit overrides winning."""
    return Settings(**overrides)
