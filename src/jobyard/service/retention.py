"""Retention use cases: a purge pass on demand (admins), and the background pass's runner."""

from __future__ import annotations

import weakref

from jobyard.core.errors import Forbidden
from jobyard.core.retention import PurgeReport
from jobyard.engine.retention import Retention
from jobyard.service import access
from jobyard.service.context import Context, Principal

#: One :class:`Retention` per store: on-demand and background passes of a process take
#: turns (its lock) instead of purging the same rows side by side.
_PASSES: weakref.WeakKeyDictionary[object, Retention] = weakref.WeakKeyDictionary()


def retention_of(ctx: Context) -> Retention:
    """The purge runner of this server's store (created on first use)."""
    runner = _PASSES.get(ctx.store)
    if runner is None:
        runner = Retention(ctx.store, ctx.blobs, ctx.settings.retention)
        _PASSES[ctx.store] = runner
    return runner


async def purge(
    ctx: Context, principal: Principal, *, dry_run: bool, remote_addr: str | None = None
) -> PurgeReport:
    """Run a purge pass now (admins only; a job's SESSION_ID never).

    ``dry_run`` answers what would go and changes nothing (not even the audit log).
    """
    access.refuse_job_token(principal, "purge")
    if not principal.unbounded_admin:
        raise Forbidden("only an admin may purge", {"required_role": "admin"})
    report = await retention_of(ctx).purge(dry_run=dry_run)
    if not dry_run:
        await access.record(
            ctx, principal, "retention.purge", "retention", None, report.as_dict(), remote_addr
        )
    return report
