"""Following a job: the log copied as it grows, resumed where it stopped, then the end."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from jobyard.cli.follow import LineWriter, StatusLine, final_line, follow_job, stream_log
from jobyard.client import ApiClient


class Script:
    """A job whose status and log advance as the client asks for them."""

    def __init__(self, steps: list[tuple[str, int, bytes]]) -> None:
        # each step: status reported by GET job, HTTP status of the log call, its body
        self.steps = steps
        self.log_calls: list[dict[str, str]] = []
        self.position = 0
        self.status = steps[0][0]

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/log"):
            status, code, body = self.steps[min(self.position, len(self.steps) - 1)]
            self.position += 1
            self.status = status
            self.log_calls.append(dict(request.url.params))
            if code == 404:
                return httpx.Response(404, json={"error": {"code": "not_found", "message": "x"}})
            return httpx.Response(200, content=body)
        job: dict[str, Any] = {"id": 1, "status": self.status, "exit_code": None}
        if self.status == "FINISHED":
            job.update(
                exit_code=0, started_at="2025-01-01T00:00:00Z", ended_at="2025-01-01T00:00:02Z"
            )
        return httpx.Response(200, json=job)


def api_for(script: Script) -> ApiClient:
    return ApiClient("http://t", "k", transport=httpx.MockTransport(script.handler))


def test_line_writer_writes_whole_lines(capsys: pytest.CaptureFixture[str]) -> None:
    writer = LineWriter()
    writer.feed("a\nb")
    assert capsys.readouterr().out == "a\n"
    writer.feed("c\nd")
    writer.finish()
    assert capsys.readouterr().out == "bc\nd\n"


async def test_waits_for_the_log_then_resumes_at_the_offset(
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = Script(
        [
            ("QUEUED", 404, b""),  # no log yet: wait
            ("RUNNING", 200, "a\nb é".encode()),  # stream stops early: resume
            ("FINISHED", 200, b"c\n"),
        ]
    )
    async with api_for(script) as api:
        job = await follow_job(api, 1, poll_seconds=0.001)
    assert job["status"] == "FINISHED"
    assert capsys.readouterr().out == "a\nb éc\n"
    assert [c.get("offset") for c in script.log_calls] == [None, None, "6"]
    assert all(c["follow"] == "true" for c in script.log_calls)


async def test_a_job_without_a_log_ends_the_copy(capsys: pytest.CaptureFixture[str]) -> None:
    script = Script([("CANCELLED", 404, b"")])
    async with api_for(script) as api:
        await stream_log(api, 1, LineWriter(), poll_seconds=0.001)
    assert capsys.readouterr().out == ""


def test_final_line() -> None:
    job = {
        "id": 12,
        "status": "ERROR",
        "exit_code": 3,
        "status_reason": "exit code 3 not in [0]",
        "started_at": "2025-01-01T00:00:00Z",
        "ended_at": "2025-01-01T00:01:05Z",
    }
    assert final_line(job).plain == (
        "job 12  ERROR  exit code 3  ran 1m05s  reason: exit code 3 not in [0]"
    )
    assert final_line({"id": 1, "status": "CANCELLED"}).plain == "job 1  CANCELLED"


def test_the_live_line_says_when_no_worker_serves_the_pool() -> None:
    waiting = {
        "code": "pool_unserved",
        "message": "no worker serves pool 'gpu': the job waits QUEUED …",
        "details": {"pool": "gpu"},
    }
    queued = {"id": 4, "status": "QUEUED", "created_at": "2025-01-01T00:00:00Z"}
    now = datetime(2025, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert StatusLine(queued).text(now).plain == "job 4  QUEUED  waiting 5.0s"
    line = StatusLine({**queued, "waiting_reason": waiting}).text(now)
    assert line.plain == "job 4  QUEUED  waiting 5.0s  no worker serves pool 'gpu'"
