"""Health use cases."""

from __future__ import annotations

from jobyard.service.context import Context


async def check_database(ctx: Context) -> None:
    """Readiness: one cheap query proves the database answers (raises if it does not)."""
    await ctx.store.tokens_count()
