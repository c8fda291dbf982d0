"""Example bodies shown in ``/docs`` and ``/redoc``, by the name of their schema.

Kept beside the models rather than inside them so that one file holds every example
(easy to review as a whole) and a model file gains no noise. :mod:`jobyard.api.openapi`
puts each under its schema's ``examples`` (Swagger UI fills "Try it out" with the
first); ``tests/integration/test_api_docs.py`` validates every one against its schema,
so an example that drifts from its model fails the tests. A new route adds the examples
of its request and response schemas here (or ``json_schema_extra`` on its model).
"""

from __future__ import annotations

from typing import Any

_AT = "2026-01-05T09:30:00Z"
_SHA = "9f2c4be8f6b1a4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9"

JOB: dict[str, Any] = {
    "id": 17,
    "jobconfig_id": 3,
    "package_id": 2,
    "entrypoint": "main",
    "command": None,
    "macros": {"TARGET": "eu"},
    "status": "FINISHED",
    "status_reason": None,
    "exit_code": 0,
    "trigger": "api",
    "submitted_by": "alice",
    "rerun_of": None,
    "worker_id": "host-a/1",
    "pool": "default",
    "labels": None,
    "priority": 0,
    "timeout": 0,
    "success_exit_codes": [0],
    "created_at": _AT,
    "sequenced_at": _AT,
    "queued_at": _AT,
    "acquired_at": _AT,
    "started_at": _AT,
    "ended_at": "2026-01-05T09:30:04Z",
    "abort_requested_at": None,
    "schedule_id": None,
    "scheduled_for": None,
    "template_id": None,
    "definers": [],
    "effective_timeout": {"minutes": 30, "source": "entrypoint", "entrypoint": "main"},
}

JOBCONFIG: dict[str, Any] = {
    "id": 3,
    "name": "orders-etl",
    "description": "Nightly load of the orders export",
    "package_id": 2,
    "entrypoint": "main",
    "command": None,
    "macros": {"TARGET": "eu"},
    "max_concurrent": 1,
    "timeout": 0,
    "success_exit_codes": [0],
    "enabled": True,
    "pool": "default",
    "labels": {},
    "owner": "alice",
    "template_id": None,
    "parameters": ["TARGET"],
    "created_at": _AT,
    "updated_at": _AT,
    "definition_changed_by": "alice",
    "definition_changed_at": _AT,
    "retention": {"max_age_days": None, "max_jobs": None},
}

PACKAGE: dict[str, Any] = {
    "id": 2,
    "sha256": _SHA,
    "filename": "etl.zip",
    "size": 48213,
    "kind": "zip",
    "entrypoints": ["main", "report"],
    "created_at": _AT,
}

TEMPLATE: dict[str, Any] = {
    "id": 1,
    "name": "etl",
    "description": "What every ETL jobconfig runs",
    "package_id": 2,
    "entrypoint": "main",
    "command": None,
    "owner": "alice",
    "created_at": _AT,
    "updated_at": _AT,
    "definition_changed_by": "alice",
    "definition_changed_at": _AT,
}

USER: dict[str, Any] = {
    "id": 2,
    "name": "alice",
    "role": "user",
    "active": True,
    "has_password": True,
    "created_at": _AT,
    "updated_at": _AT,
}

SCHEDULE: dict[str, Any] = {
    "id": 5,
    "jobconfig_id": 3,
    "name": "nightly",
    "kind": "cron",
    "cron": "0 30 2 * * ?",
    "every": None,
    "interval_minutes": None,
    "start_at": None,
    "timezone": "Europe/Paris",
    "misfire_policy": "fire_once",
    "paused": False,
    "macros": {},
    "description": "",
    "next_fire_at": "2026-01-06T01:30:00Z",
    "next_fire_at_local": "2026-01-06T02:30:00+01:00",
    "last_fire_at": None,
    "last_result": None,
    "version": 1,
    "created_at": _AT,
    "updated_at": _AT,
}

MACRO: dict[str, Any] = {
    "name": "DB_URL",
    "value": None,
    "secure": True,
    "level": "jobconfig",
    "updated_at": _AT,
    "updated_by": "alice",
}

#: Statistics of 12 ended jobs (see ``JobStatsOut``).
STATS_SUMMARY: dict[str, Any] = {
    "total": 12,
    "counts": {"FINISHED": 10, "ERROR": 1, "FAILED": 1, "CANCELLED": 0},
    "duration_seconds": {
        "count": 12,
        "mean": 41.5,
        "p50": 38.2,
        "p95": 70.1,
        "p99": 70.1,
        "max": 71.0,
    },
    "queue_wait_seconds": {"count": 12, "mean": 0.4, "p50": 0.01, "p95": 2.9, "max": 3.0},
}
EMPTY_STATS: dict[str, Any] = {
    "total": 0,
    "counts": {"FINISHED": 0, "ERROR": 0, "FAILED": 0, "CANCELLED": 0},
    "duration_seconds": {
        "count": 0,
        "mean": None,
        "p50": None,
        "p95": None,
        "p99": None,
        "max": None,
    },
    "queue_wait_seconds": {"count": 0, "mean": None, "p50": None, "p95": None, "max": None},
}

#: A personal token as listed (its secret value is shown once, at creation).
TOKEN: dict[str, Any] = {
    "id": 9,
    "name": "ci",
    "kind": "personal",
    "user_id": 2,
    "role": "user",
    "created_at": _AT,
    "expires_at": "2026-04-05T09:30:00Z",
    "revoked": False,
    "job_id": None,
}

#: Schema name -> its example.
_WORKER_TOKEN: dict[str, Any] = {
    "id": 2,
    "name": "gpu-hosts",
    "pool": "gpu",
    "created_at": _AT,
    "created_by": "admin",
    "revoked": False,
    "last_used_at": _AT,
}

EXAMPLES: dict[str, dict[str, Any]] = {
    # Request bodies
    "ApplyDocument": {
        "packages": {"etl": {"sha256": _SHA}},
        "jobconfigs": [
            {"name": "nightly-etl", "package": "etl", "entrypoint": "main", "timeout": 30}
        ],
    },
    "AdhocJobIn": {"command": ["/bin/sh", "-c", "echo hello"], "timeout": 5},
    "RunIn": {"macros": {"TARGET": "eu"}, "hold": False},
    "JobConfigIn": {
        "name": "orders-etl",
        "package_id": 2,
        "entrypoint": "main",
        "macros": {"TARGET": "eu"},
        "parameters": ["TARGET"],
        "timeout": 30,
        "max_concurrent": 1,
    },
    "JobConfigPatch": {"timeout": 45, "enabled": False},
    "TemplateIn": {"name": "etl", "package_id": 2, "entrypoint": "main"},
    "TemplatePatch": {"description": "What every ETL jobconfig runs"},
    "CloneIn": {"name": "etl-v2", "with_jobconfigs": True},
    "TemplateExport": {
        "format": "jobyard.template/1",
        "template": {"name": "etl", "package": {"sha256": _SHA}, "entrypoint": "main"},
        "jobconfigs": [
            {
                "name": "orders-etl",
                "macros": {"TARGET": "eu"},
                "schedules": [{"name": "nightly", "cron": "0 30 2 * * ?"}],
            }
        ],
    },
    "LoginIn": {"name": "alice", "password": "correct horse battery staple"},
    "RefreshIn": {"refresh_token": "jy_8Qm2Lk..."},
    "LogoutIn": {"refresh_token": "jy_8Qm2Lk..."},
    "UserIn": {"name": "alice", "role": "user", "password": "correct horse battery staple"},
    "UserPatch": {"role": "admin"},
    "TokenIn": {"name": "ci", "expires_in_days": 90},
    "MacroIn": {"value": "postgresql://etl@db/orders", "secure": True},
    "MacroDefs": {
        "macros": [
            {"name": "TARGET", "value": "eu", "secure": False},
            {"name": "DB_URL", "value": None, "secure": True},
        ]
    },
    "ScheduleIn": {"name": "nightly", "cron": "0 30 2 * * ?", "timezone": "Europe/Paris"},
    "SchedulePatch": {"paused": True},
    "PolicyIn": {"action": "execute", "resource": "jobconfigs", "selector": "3"},
    "PurgeIn": {"dry_run": True},
    # Answers
    "JobOut": JOB,
    "JobStatsOut": {
        "bucket": "hour",
        "since": "2026-01-05T09:00:00Z",
        "until": "2026-01-05T11:00:00Z",
        "folded_at": "2026-01-05T10:59:55Z",
        "overall": STATS_SUMMARY,
        "jobconfigs": [{**STATS_SUMMARY, "jobconfig_id": 3, "name": "orders-etl"}],
        "buckets": [
            {**STATS_SUMMARY, "start": "2026-01-05T09:00:00Z"},
            {**EMPTY_STATS, "start": "2026-01-05T10:00:00Z"},
        ],
    },
    "JobConfigOut": JOBCONFIG,
    "JobConfigSaved": {
        **JOBCONFIG,
        "pool": "gpu",
        "warnings": [
            {
                "code": "pool_unserved",
                "message": "no worker serves pool 'gpu': jobs of jobconfig 'orders-etl' will "
                "wait QUEUED until a worker of that pool registers (see GET /api/v1/workers)",
                "details": {"pool": "gpu", "jobconfigs": ["orders-etl"]},
            }
        ],
    },
    "WorkerPage": {
        "items": [
            {
                "id": "host-a:4242:1f0c9a7e",
                "name": "host-a:4242:1f0c9a7e",
                "kind": "local",
                "pool": "default",
                "labels": {},
                "slots": 4,
                "slots_busy": 2,
                "health": "healthy",
                "draining": False,
                "drain_requested": False,
                "started_at": _AT,
                "heartbeat_at": "2026-01-05T09:41:07Z",
                "heartbeat_age_seconds": 1.204,
                "jobs": [{"id": 17, "status": "RUNNING", "jobconfig_id": 3}],
                "jobs_hidden": 1,
                "host": "host-a",
                "pid": 4242,
                "version": "0.1.0",
            }
        ],
        "next_cursor": None,
        "at": "2026-01-05T09:41:08Z",
        "slots_total": 4,
        "slots_busy": 2,
        "older_lost": 0,
    },
    "PackageOut": PACKAGE,
    "TemplateOut": TEMPLATE,
    "UserOut": USER,
    "ScheduleOut": SCHEDULE,
    "MacroOut": MACRO,
    "EventOut": {"status": "RUNNING", "at": _AT, "actor": "worker host-a/1", "reason": None},
    "FileOut": {"name": "totals.json", "size": 512, "created_at": _AT},
    "Health": {"status": "ok", "version": "0.1.0"},
    "TokenPairOut": {
        "access_token": "jy_Xr4Tn...",
        "refresh_token": "jy_8Qm2Lk...",
        "token_type": "bearer",
        "expires_in": 900,
        "refresh_expires_in": 1209600,
    },
    "NewTokenOut": {**TOKEN, "token": "jy_Q3vWp..."},
    "MeOut": {
        "name": "alice",
        "role": "user",
        "user": USER,
        "token_kind": "personal",
        "job_id": None,
    },
    "CronNextOut": {
        "expr": "0 30 2 * * ?",
        "tz": "Europe/Paris",
        "next": ["2026-01-06T01:30:00Z", "2026-01-07T01:30:00Z"],
    },
    "PolicyOut": {
        "id": 4,
        "user_id": 2,
        "action": "execute",
        "resource": "jobconfigs",
        "selector": "3",
        "created_at": _AT,
    },
    "DrainOut": {
        "id": "host-b:5151:7d2e0b4c",
        "pool": "gpu",
        "drain_requested": True,
        "draining": False,
    },
    "PurgeOut": {
        "dry_run": True,
        "jobs": 120,
        "events": 600,
        "tokens": 120,
        "log_files": 120,
        "files": 8,
        "packages": 1,
        "blobs": 129,
        "bytes": 5242880,
        "audit_rows": 0,
        "orphans": 0,
    },
    "ImportReport": {
        "template": {"name": "etl", "id": 1, "action": "updated", "schedules": None},
        "jobconfigs": [
            {
                "name": "orders-etl",
                "id": 3,
                "action": "created",
                "schedules": [{"name": "nightly", "id": 5, "action": "created"}],
            }
        ],
    },
    "CloneOut": {
        "template": {**TEMPLATE, "id": 2, "name": "etl-v2"},
        "jobconfigs": [{**JOBCONFIG, "id": 8, "name": "etl-v2.orders-etl", "template_id": 2}],
        "secure_macros_skipped": {"etl-v2.orders-etl": ["DB_URL"]},
    },
    "TokenOut": TOKEN,
    "ResolvedOut": {"name": "DB_URL", "value": "*****", "level": "jobconfig", "secure": True},
    "ResolvedList": {
        "jobconfig_id": 3,
        "template_id": None,
        "user": "alice",
        "items": [
            {"name": "TARGET", "value": "eu", "level": "jobconfig", "secure": False},
            {"name": "DB_URL", "value": "*****", "level": "jobconfig", "secure": True},
        ],
    },
    "JobMacrosOut": {
        "job_id": 17,
        "resolved": True,
        "items": [
            {"name": "TARGET", "value": "eu", "level": "job", "secure": False},
            {"name": "DB_URL", "value": None, "level": "jobconfig", "secure": True},
        ],
    },
    "AuditOut": {
        "id": 311,
        "at": _AT,
        "actor": "alice",
        "action": "job.submit",
        "object_type": "job",
        "object_id": "17",
        "details": {"jobconfig_id": 3, "macros": ["TARGET"], "hold": False},
        "remote_addr": "192.0.2.10",
    },
    "DeactivationOut": {
        "user": {**USER, "active": False},
        "tokens_revoked": 2,
        "jobs_cancelled": [21],
    },
    # Worker tokens and the worker routes
    "WorkerTokenIn": {"name": "gpu-hosts", "pool": "gpu"},
    "WorkerTokenOut": _WORKER_TOKEN,
    "WorkerTokenCreated": {**_WORKER_TOKEN, "token": "jyw_0Xq3…"},
    "HeartbeatIn": {
        "worker_id": "gpu-7:5120:9c1e44aa",
        "host": "gpu-7",
        "pid": 5120,
        "version": "0.1.0 (CPython)",
        "protocol": 1,
        "pool": "gpu",
        "slots": 8,
        "started_at": _AT,
        "labels": {"gpu": "a100"},
        "running": 3,
        "draining": False,
    },
    "HeartbeatOut": {
        "drain": False,
        "lease_seconds": 15.0,
        "heartbeat_seconds": 3.0,
        "protocol_min": 1,
        "protocol_max": 1,
        "server_version": "0.1.0",
    },
    "AcquireIn": {
        "worker_id": "gpu-7:5120:9c1e44aa",
        "pool": "gpu",
        "labels": {"gpu": "a100"},
        "free": 5,
        "wait_seconds": 25.0,
    },
    "RunningIn": {
        "worker_id": "gpu-7:5120:9c1e44aa",
        "pid": 5188,
        "started_at": _AT,
        "record": "k1:opaque…",
    },
    "EndIn": {
        "worker_id": "gpu-7:5120:9c1e44aa",
        "status": "FINISHED",
        "exit_code": 0,
        "reason": None,
    },
    "ReportOut": {"job_id": 17, "moved": True},
    "BatchedIn": {"job_id": 17, "kind": "end", "status": "FINISHED", "exit_code": 0},
    "ReportsIn": {
        "worker_id": "gpu-7:5120:9c1e44aa",
        "reports": [
            {"job_id": 18, "kind": "running", "pid": 5190, "started_at": _AT},
            {"job_id": 17, "kind": "end", "status": "FINISHED", "exit_code": 0},
        ],
    },
    "BatchedOut": {"job_id": 17, "kind": "end", "moved": True, "error": None},
    "ReportsOut": {
        "results": [
            {"job_id": 18, "kind": "running", "moved": True, "error": None},
            {"job_id": 17, "kind": "end", "moved": True, "error": None},
        ]
    },
    "RenewIn": {"worker_id": "gpu-7:5120:9c1e44aa", "job_ids": [17, 18]},
}
