"""``GET /api/v1/jobstats`` (statistics of ended jobs) and ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from jobyard.api.deps import Caller, Ctx, require_principal
from jobyard.api.dto import MAX_ID, ErrorBody
from jobyard.service import metrics, stats

router = APIRouter(
    tags=["stats"],
    dependencies=[Depends(require_principal)],
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)


class DurationOut(BaseModel):
    """Run durations (seconds) of the jobs that started: ``ended_at - started_at``."""

    count: int
    mean: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


class WaitOut(BaseModel):
    """Queue waits (seconds) of the jobs a worker acquired: ``acquired_at - queued_at``."""

    count: int
    mean: float | None
    p50: float | None
    p95: float | None
    max: float | None


class SummaryOut(BaseModel):
    """Counts by end status and duration / queue-wait figures of a set of ended jobs.

    Percentiles are nearest-rank estimates within 4.5 % (or 1 ms) of the exact value;
    counts, means and maxima are exact.
    """

    total: int = Field(description="Jobs that ended.")
    counts: dict[str, int] = Field(description="By end status: FINISHED, ERROR, FAILED, CANCELLED.")
    duration_seconds: DurationOut
    queue_wait_seconds: WaitOut


class JobconfigStatsOut(SummaryOut):
    """Statistics of one jobconfig (``jobconfig_id`` null: ad-hoc jobs)."""

    jobconfig_id: int | None
    name: str | None


class BucketStatsOut(SummaryOut):
    """Statistics of one time bucket (every counted jobconfig)."""

    start: datetime


class JobStatsOut(BaseModel):
    """The answer of ``GET /api/v1/jobstats``."""

    bucket: Literal["hour", "day"]
    since: datetime = Field(description="Start of the first bucket (since, rounded down).")
    until: datetime = Field(description="End of the last bucket (until, rounded up).")
    folded_at: datetime | None = Field(
        description="When jobs were last folded into the statistics (they lag by that much)."
    )
    overall: SummaryOut
    jobconfigs: list[JobconfigStatsOut]
    buckets: list[BucketStatsOut] = Field(description="Every bucket of the range, oldest first.")


@router.get("/api/v1/jobstats", response_model=JobStatsOut)
async def jobstats(
    ctx: Ctx,
    caller: Caller,
    jobconfig_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Only this jobconfig.")
    ] = None,
    since: Annotated[
        datetime | None,
        Query(description="ISO 8601 with a zone; default: 24 h (hour) or 30 days (day) ago."),
    ] = None,
    until: Annotated[
        datetime | None, Query(description="ISO 8601 with a zone; default: now.")
    ] = None,
    bucket: Annotated[Literal["hour", "day"], Query(description="Time bucket (UTC).")] = "hour",
) -> Response:
    """Counts by end status, durations and queue waits of the ended jobs you may view.

    Overall, per jobconfig and per bucket of the range (whole buckets: ``since`` is
    rounded down, ``until`` up). Jobconfigs you may not view are never counted; ad-hoc
    jobs only by those who see every jobconfig. Jobs appear once the maintenance loop
    has folded them (``folded_at``), seconds after they end.
    """
    result = await stats.jobstats(
        ctx, caller, jobconfig_id=jobconfig_id, since=since, until=until, bucket=bucket
    )
    # Serialised directly (JobStatsOut documents the shape): an answer holds up to
    # hundreds of buckets, and validating them again costs more than computing them.
    body = {
        "bucket": result.bucket,
        "since": _iso(result.since),
        "until": _iso(result.until),
        "folded_at": _iso(result.folded_at),
        "overall": result.overall.as_dict(),
        "jobconfigs": [
            {"jobconfig_id": j.jobconfig_id, "name": j.name, **j.summary.as_dict()}
            for j in result.jobconfigs
        ],
        "buckets": [{"start": _iso(b.start), **b.summary.as_dict()} for b in result.buckets],
    }
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition."},
        403: {"model": ErrorBody},
    },
)
async def prometheus_metrics(ctx: Ctx, caller: Caller, request: Request) -> Response:
    """Prometheus metrics (admins' tokens, or the ``metrics.token`` bearer; 403 otherwise)."""
    body = await metrics.scrape(ctx, caller, extra=[request.app.state.http_metrics.registry])
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
