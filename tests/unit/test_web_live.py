"""Pure parts of the live console: sorting a page of jobs, worker health states, the
jobs list's sort links, and SSE framing."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from jobyard.core.errors import InvalidInput
from jobyard.core.jobs import JobStatus
from jobyard.core.models import Job, WorkerInfo
from jobyard.service.overview import sort_jobs
from jobyard.service.worker_health import state_of
from jobyard.web.live import jobs_list_extras
from jobyard.web.streams import frame

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _job(job_id: int, ran: float | None, ended_after: float | None = None) -> Job:
    base = Job(  # type: ignore[call-arg]
        **{f: None for f in Job.__dataclass_fields__},
    )
    started = T0 if ran is not None else None
    ended = T0 + timedelta(seconds=ran) if ran is not None else None
    if ended_after is not None:
        ended = T0 + timedelta(seconds=ended_after)
    return replace(base, id=job_id, status=JobStatus.FINISHED, started_at=started, ended_at=ended)


def test_a_page_sorts_by_duration_and_end_with_the_unknown_last() -> None:
    jobs = [_job(1, 5.0), _job(2, None), _job(3, 1.0), _job(4, 9.0)]
    assert [j.id for j in sort_jobs(jobs, "-duration")] == [4, 1, 3, 2]
    assert [j.id for j in sort_jobs(jobs, "duration")] == [3, 1, 4, 2]
    assert [j.id for j in sort_jobs(jobs, "id")] == [1, 2, 3, 4]
    assert [j.id for j in sort_jobs(jobs, "-ended")] == [4, 1, 3, 2]
    assert sort_jobs(jobs, None) == jobs  # the listing's own order: newest first


def test_an_unknown_sort_says_which_exist() -> None:
    with pytest.raises(InvalidInput, match="one of -id, id, -ended"):
        sort_jobs([], "submitted; drop table")


def test_worker_states_follow_heartbeat_age() -> None:
    info = WorkerInfo(
        id="w",
        name="w",
        pool="default",
        host="h",
        pid=1,
        slots=2,
        kind="local",
        started_at=T0,
        heartbeat_at=T0,
        draining=False,
    )
    assert state_of(info, 2.0, heartbeat=3.0, lease=15.0) == "healthy"
    assert state_of(info, 10.0, heartbeat=3.0, lease=15.0) == "late"
    assert state_of(info, 16.0, heartbeat=3.0, lease=15.0) == "lost"
    assert state_of(replace(info, draining=True), 1.0, 3.0, 15.0) == "draining"


def test_sort_links_flip_the_current_column_and_keep_the_filters() -> None:
    extras = jobs_list_extras({"status": "ERROR", "sort": "-duration"})
    url, state = extras["sort_links"]["duration"]
    assert state == "descending" and "sort=duration" in url and "status=ERROR" in url
    assert extras["sort_links"]["id"][1] == "none"
    assert extras["live_url"] == "/events/jobs?status=ERROR&sort=-duration"


def test_a_frame_is_one_event_with_one_data_line() -> None:
    raw = frame("log", "two\nlines\n\ndata: fake").decode()
    assert raw.endswith("\n\n") and raw.count("\n") == 3
    event, data = raw.strip().split("\n")
    assert event == "event: log"
    assert json.loads(data.removeprefix("data: ")) == "two\nlines\n\ndata: fake"
