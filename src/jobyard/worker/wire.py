"""What travels between a remote worker and the server: assignments as JSON, and the
number of the protocol they speak.

Shared by both ends (the server's worker routes encode, ``jobyard worker`` decodes), so
the two cannot drift apart. The protocol's number and the range a server serves are in
:mod:`jobyard.core.workerprotocol`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobyard.core.jobs import JobStatus
from jobyard.core.models import Job
from jobyard.worker.protocol import Assignment, PayloadRef

_JOB_FIELDS = {f.name: f for f in dataclasses.fields(Job)}
_JOB_TIMES = {name for name, f in _JOB_FIELDS.items() if "datetime" in str(f.type)}
#: Field names in declaration order; those holding times; those without a default.
_NAMES = tuple(_JOB_FIELDS)
_TIME_NAMES = tuple(name for name in _NAMES if name in _JOB_TIMES)
_REQUIRED = tuple(name for name, f in _JOB_FIELDS.items() if f.default is dataclasses.MISSING)


@dataclass(frozen=True, slots=True)
class RemoteAssignment:
    """An assignment for a remote worker and its macro record, sealed by the server
    (opaque to the worker; it sends it back with the RUNNING report). None: no record."""

    assignment: Assignment
    record: str | None


def job_to_json(job: Job) -> dict[str, Any]:
    """A job as a JSON object (times in ISO 8601, status by name)."""
    out = {name: getattr(job, name) for name in _NAMES}
    for name in _TIME_NAMES:
        value = out[name]
        if isinstance(value, datetime):
            out[name] = value.isoformat()
    status = out["status"]
    if isinstance(status, JobStatus):
        out["status"] = status.value
    return out


def job_from_json(data: dict[str, Any]) -> Job:
    """The job of :func:`job_to_json` (unknown fields are ignored: a newer server)."""
    values = {name: data[name] for name in _NAMES if name in data}
    if len(values) < len(_NAMES):
        for name in _REQUIRED:
            if name not in values:
                raise ValueError(f"assignment job lacks {name!r}")
    for name in _TIME_NAMES:
        value = values.get(name)
        if isinstance(value, str):
            values[name] = datetime.fromisoformat(value)
    if "status" in values:
        values["status"] = JobStatus(values["status"])
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
