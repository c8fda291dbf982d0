"""Retention use cases: a purge pass on demand (admins).

The pass itself is the server's retention runner (``ctx.retention``), the same one its
background loop uses, so the two take turns.
"""

from __future__ import annotations

from jobyard.core.errors import Forbidden
from jobyard.core.retention import PurgeReport
from jobyard.service import access, auditlog
from jobyard.service.context import Context, Principal


async def purge(
    ctx: Context, principal: Principal, *, dry_run: bool, remote_addr: str | None = None
) -> PurgeReport:
    """Run a purge pass now (admins only; a job's SESSION_ID never).

    ``dry_run`` answers what would go and changes nothing (not even the audit log).
    """
    access.refuse_job_token(principal, "purge")
    if not principal.unbounded_admin:
        raise Forbidden("only an admin may purge", {"required_role": "admin"})
    report = await ctx.retention.purge(dry_run=dry_run)
    if not dry_run:
        await auditlog.record(
            ctx, principal, "retention.purge", "retention", None, report.as_dict(), remote_addr
        )
    return report
