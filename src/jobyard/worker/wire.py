"""What travels between a remote worker and the server: assignments as JSON, and the
number of the protocol they speak.

Shared by both ends (the server's worker routes encode, ``jobyard worker`` decodes), so
the two cannot drift apart. A worker sends :data:`PROTOCOL_VERSION` with every heartbeat;
a server serves workers from :data:`PROTOCOL_MIN` to its own :data:`PROTOCOL_VERSION` and
refuses any other with a message saying which side to upgrade. Raise
``PROTOCOL_VERSION`` when the worker routes change in a way an older peer cannot follow;
raise ``PROTOCOL_MIN`` only when the server stops serving an older protocol.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobyard import __version__
from jobyard.core.jobs import JobStatus
from jobyard.core.models import Job
from jobyard.worker.protocol import Assignment, PayloadRef

#: The worker protocol this release speaks (worker side) and serves at most (server side).
PROTOCOL_VERSION = 1
#: The oldest worker protocol this release's server still serves.
PROTOCOL_MIN = 1
#: The protocol of a worker whose heartbeat names none: a release from before the
#: protocol was numbered, which spoke what is now protocol 1.
PROTOCOL_UNNUMBERED = 1
#: The error code of a heartbeat refused for its protocol (HTTP 409).
PROTOCOL_REFUSED = "worker_protocol_unsupported"
#: For tests only: the protocol number ``jobyard worker`` claims instead of its own, to
#: play an older or newer worker against a real server. Not a setting: never set it in
#: production (a worker claiming a protocol it does not speak would misread the server).
PROTOCOL_TEST_ENV = "JOBYARD_TEST_WORKER_PROTOCOL"


def claimed_protocol() -> int:
    """The protocol number this worker sends: :data:`PROTOCOL_VERSION`, unless a test
    overrides it through :data:`PROTOCOL_TEST_ENV`."""
    raw = os.environ.get(PROTOCOL_TEST_ENV, "").strip()
    if not raw:
        return PROTOCOL_VERSION
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{PROTOCOL_TEST_ENV} must be an integer, not {raw!r}") from exc


def protocol_refusal(
    worker_protocol: int | None,
    worker_version: str,
    *,
    low: int = PROTOCOL_MIN,
    high: int = PROTOCOL_VERSION,
    server_version: str = __version__,
) -> str | None:
    """Why a server serving protocols ``low`` to ``high`` refuses a worker, saying what
    to upgrade; None when it serves it. ``worker_protocol`` None: an unnumbered worker
    (:data:`PROTOCOL_UNNUMBERED`)."""
    protocol = PROTOCOL_UNNUMBERED if worker_protocol is None else worker_protocol
    if low <= protocol <= high:
        return None
    served = f"protocol {low}" if low == high else f"protocols {low} to {high}"
    release = worker_version or "unknown"
    worker = f"this worker (jobyard {release}) speaks worker protocol {protocol}"
    server = f"the server (jobyard {server_version}) serves {served} only"
    if protocol < low:
        return (
            f"{worker} but {server}: the worker is too old; upgrade jobyard on the worker "
            f"host to {server_version} (the server's release) and restart the worker"
        )
    return (
        f"{worker} but {server}: the worker is newer than the servers; upgrade every "
        f"server to this worker's release first (servers before workers), or run a "
        f"worker of release {server_version}"
    )


_JOB_FIELDS = {f.name: f for f in dataclasses.fields(Job)}
_JOB_TIMES = {name for name, f in _JOB_FIELDS.items() if "datetime" in str(f.type)}


@dataclass(frozen=True, slots=True)
class RemoteAssignment:
    """An assignment for a remote worker and its macro record, sealed by the server
    (opaque to the worker; it sends it back with the RUNNING report). None: no record."""

    assignment: Assignment
    record: str | None


def job_to_json(job: Job) -> dict[str, Any]:
    """A job as a JSON object (times in ISO 8601, status by name)."""
    out: dict[str, Any] = {}
    for name in _JOB_FIELDS:
        value = getattr(job, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, JobStatus):
            value = value.value
        out[name] = value
    return out


def job_from_json(data: dict[str, Any]) -> Job:
    """The job of :func:`job_to_json` (unknown fields are ignored: a newer server)."""
    values: dict[str, Any] = {}
    for name, f in _JOB_FIELDS.items():
        if name not in data:
            if f.default is dataclasses.MISSING:
                raise ValueError(f"assignment job lacks {name!r}")
            continue
        value = data[name]
        if name in _JOB_TIMES and isinstance(value, str):
            value = datetime.fromisoformat(value)
        elif name == "status":
            value = JobStatus(value)
        values[name] = value
    return Job(**values)


def assignment_to_json(remote: RemoteAssignment) -> dict[str, Any]:
    """An assignment as sent by ``POST /api/v1/worker/acquire``."""
    a = remote.assignment
    return {
        "job": job_to_json(a.job),
        "argv": list(a.argv),
        "env": dict(a.env),
        "package": None
        if a.package_sha256 is None
        else {"sha256": a.package_sha256, "kind": a.package_kind, "filename": a.package_filename},
        "payload": [{"name": p.name, "blob_key": p.blob_key} for p in a.payload],
        "timeout_seconds": a.timeout_seconds,
        "success_exit_codes": sorted(a.success_exit_codes),
        "template_id": a.template_id,
        "session_token": a.session_token,
        "secret_values": list(a.secret_values),
        "notes": list(a.notes),
        "record": remote.record,
    }


def assignment_from_json(data: dict[str, Any]) -> RemoteAssignment:
    """The assignment of :func:`assignment_to_json`."""
    package = data.get("package") or {}
    assignment = Assignment(
        job=job_from_json(data["job"]),
        argv=[str(x) for x in data["argv"]],
        env={str(k): str(v) for k, v in (data.get("env") or {}).items()},
        package_sha256=package.get("sha256"),
        package_kind=package.get("kind"),
        package_filename=package.get("filename"),
        payload=[
            PayloadRef(name=p["name"], blob_key=p["blob_key"]) for p in data.get("payload") or []
        ],
        timeout_seconds=data.get("timeout_seconds"),
        success_exit_codes=frozenset(int(c) for c in data.get("success_exit_codes") or [0]),
        template_id=data.get("template_id"),
        session_token=str(data.get("session_token") or ""),
        secret_values=[str(s) for s in data.get("secret_values") or []],
        notes=[str(n) for n in data.get("notes") or []],
    )
    record = data.get("record")
    return RemoteAssignment(
        assignment=assignment, record=record if isinstance(record, str) else None
    )
