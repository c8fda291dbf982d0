"""``/api/v1/cron``: previews of Quartz cron expressions (next fire times), for the UI."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from jobyard.api.deps import require_principal
from jobyard.api.openapi import errors
from jobyard.core.cron.preview import DEFAULT_COUNT, DEFAULT_TZ, MAX_COUNT, iso, preview

router = APIRouter(
    prefix="/api/v1/cron",
    tags=["cron"],
    dependencies=[Depends(require_principal)],
    responses=errors(401, 422),
)


class CronNextOut(BaseModel):
    """The next fire times of a cron expression."""

    expr: str = Field(description="The expression, as given.")
    tz: str = Field(description="The time zone it was evaluated in.")
    next: list[str] = Field(
        description="Fire times, ISO 8601 with the zone's offset, e.g. "
        "2026-12-01T00:00:00+01:00; fewer than count when the expression stops firing."
    )


@router.get("/next", response_model=CronNextOut)
def cron_next(
    expr: Annotated[
        str,
        Query(
            max_length=1000,
            description="Quartz cron expression, e.g. '0 0 12 ? * MON-FRI'.",
        ),
    ],
    tz: Annotated[
        str, Query(max_length=255, description="IANA time zone, e.g. Europe/Berlin.")
    ] = DEFAULT_TZ,
    count: Annotated[
        int, Query(ge=1, le=MAX_COUNT, description="How many fire times.")
    ] = DEFAULT_COUNT,
    after: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Fire times strictly after this ISO 8601 date-time (without an "
            "offset: a wall time in tz); empty or absent: now.",
        ),
    ] = None,
) -> CronNextOut:
    """The next ``count`` fire times of ``expr`` in ``tz`` (422 names what to fix).

    A plain ``def``: up to a thousand evaluations run in the thread pool, not on the loop.
    """
    times = preview(expr, after=after or None, tz=tz, count=count)
    return CronNextOut(expr=expr, tz=tz, next=iso(times))
