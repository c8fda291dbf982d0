"""Health use cases."""

from __future__ import annotations

from jobyard.core.errors import DatabaseUnavailable
from jobyard.service.context import Context


async def check_database(ctx: Context) -> None:
    """Readiness: one cheap query proves the database answers.

    ``DatabaseUnavailable`` (503) while it does not: a load balancer then sends
    requests elsewhere, while ``/healthz`` still says the process lives.
    """
    try:
        await ctx.store.tokens_count()
    except DatabaseUnavailable as exc:
        raise DatabaseUnavailable(
            f"not ready: {exc.message}",
            exc.details,
            committed=exc.committed,
            retry_after=exc.retry_after,
        ) from exc
