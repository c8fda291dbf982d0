"""Health endpoints: the only routes open without a token."""

from __future__ import annotations

from fastapi import APIRouter

from jobyard import __version__
from jobyard.api.deps import Ctx
from jobyard.api.dto import Health
from jobyard.service import health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok", version=__version__)


@router.get("/readyz", response_model=Health)
async def readyz(ctx: Ctx) -> Health:
    """Readiness: the database answers."""
    await health.check_database(ctx)
    return Health(status="ready", version=__version__)
