"""Assignments as JSON between the server and a remote worker (``worker/wire.py``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from worker_fakes import make_assignment, make_job

from jobyard.core.jobs import JobStatus
from jobyard.worker.wire import (
    RemoteAssignment,
    assignment_from_json,
    assignment_to_json,
    job_from_json,
    job_to_json,
)


def test_a_job_round_trips_through_json_with_times_and_status() -> None:
    job = make_job(
        3,
        scheduled_for=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        labels={"gpu": "yes"},
        definers=["bob"],
        started_at=None,
    )
    data = json.loads(json.dumps(job_to_json(job)))
    assert data["status"] == "INITIALIZING"
    assert data["created_at"] == job.created_at.isoformat()
    assert data["started_at"] is None
    assert job_from_json(data) == job


def test_fields_a_newer_server_adds_are_ignored_and_missing_defaults_apply() -> None:
    data = job_to_json(make_job(4, template_id=9))
    data["from_the_future"] = 1
    del data["template_id"]  # a field with a default: an older server may not send it
    back = job_from_json(data)
    assert back.template_id is None and back.status is JobStatus.INITIALIZING


def test_a_job_lacking_a_required_field_is_refused() -> None:
    data = job_to_json(make_job(5))
    del data["pool"]
    with pytest.raises(ValueError, match="pool"):
        job_from_json(data)


def test_an_assignment_round_trips_with_its_record() -> None:
    remote = RemoteAssignment(make_assignment(6, ["true"]), record="{}")
    back = assignment_from_json(json.loads(json.dumps(assignment_to_json(remote))))
    assert back == remote
