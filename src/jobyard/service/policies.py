"""Access policies of users: list, grant, revoke (admins only; SPEC §8).

A grant or a revocation is audited and forgets the user's cached policies at once, so
the next request is decided on the new ones.
"""

from __future__ import annotations

from jobyard.core.access import Policy
from jobyard.service import auditlog
from jobyard.service.access import forget_policies, require_admin_route
from jobyard.service.context import Context, Principal


def _admin_only(principal: Principal, user_id: int) -> None:
    """Admins only (403 otherwise, before the user is looked up: no id can be probed)."""
    del user_id  # the refusal never depends on which user was named
    require_admin_route(principal)


async def list_policies(ctx: Context, principal: Principal, user_id: int) -> list[Policy]:
    """A user's policies (admins only; 403 for others)."""
    _admin_only(principal, user_id)
    return await ctx.store.policies_list(user_id)


async def grant(
    ctx: Context,
    principal: Principal,
    user_id: int,
    *,
    action: str,
    resource: str,
    selector: str,
    remote_addr: str | None = None,
) -> Policy:
    """Grant a policy (admins only; 403 for others); audited as ``policy.grant``."""
    _admin_only(principal, user_id)
    policy = await ctx.store.policy_insert(
        user_id, action=action, resource=resource, selector=selector
    )
    forget_policies(ctx, user_id)
    details = {"user_id": user_id, "action": action, "resource": resource, "selector": selector}
    await auditlog.record(ctx, principal, "policy.grant", "policy", policy.id, details, remote_addr)
    return policy


async def revoke(
    ctx: Context,
    principal: Principal,
    user_id: int,
    policy_id: int,
    *,
    remote_addr: str | None = None,
) -> Policy:
    """Revoke a policy (admins only; 403 for others); audited as ``policy.revoke``."""
    _admin_only(principal, user_id)
    policy = await ctx.store.policy_delete(user_id, policy_id)
    forget_policies(ctx, user_id)
    details = {
        "user_id": user_id,
        "action": policy.action,
        "resource": policy.resource,
        "selector": policy.selector,
    }
    await auditlog.record(
        ctx, principal, "policy.revoke", "policy", policy.id, details, remote_addr
    )
    return policy
