"""Time helpers (UTC everywhere)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Aware current UTC time."""
    return datetime.now(UTC)
