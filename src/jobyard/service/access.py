"""Access policies (who may do what to which jobconfig or template) and the audit log.

The rule, in order (first match wins):

1. **Admins** may do everything.
2. The **owner** of an object (``principal.name == object.owner``) may do everything
   to it.
3. Otherwise a **policy** of the caller's user allows ``action`` on ``resource`` when
   its selector is the object's id, ``*``, or (jobconfigs) ``template:<id>`` of the
   jobconfig's template, and its action **implies** the one asked for: every action
   implies itself; ``edit``, ``delete`` and ``execute`` each also imply ``view`` (you
   cannot change, delete or run what you may not see) and nothing else (``edit`` does
   not allow ``delete`` or ``execute``, and so on).
4. Everything else is refused.

A caller who may not even *view* an object gets the same 404 as for a missing one
(ids cannot be probed); one who may view it but not do the action gets 403.

Policies are read once per user and cached for :data:`POLICY_CACHE_SECONDS`; a change
made through this server drops the cache at once (:func:`forget_policies`), one made
through another replica takes effect within that time.

**Audit**: :func:`record` appends one entry per change. It never raises into the
caller (a failure is logged) and must never receive a secret: callers pass macro
**names** only, never values; as a second line of defence, ``details`` keys that look
like secrets (``value``, ``password``, ``token``, ``secret``...) are replaced by
``"***"``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from jobyard.core.access import ALL, TEMPLATE_PREFIX, AuditEntry, AuditFilter, Policy
from jobyard.core.errors import Forbidden, NotFound
from jobyard.core.models import Job, Page
from jobyard.service.context import Context, Principal

log = logging.getLogger("jobyard.audit")

#: How long a user's policies are trusted without reading them again.
POLICY_CACHE_SECONDS = 5.0
_CACHE_MAX = 10_000
_CACHE: dict[int, tuple[tuple[Policy, ...], float]] = {}

#: What each granted action allows (besides itself): any grant allows ``view``.
IMPLIES: dict[str, frozenset[str]] = {
    "view": frozenset({"view"}),
    "edit": frozenset({"edit", "view"}),
    "delete": frozenset({"delete", "view"}),
    "execute": frozenset({"execute", "view"}),
}
#: Singular object type of each resource (error messages and audit entries).
OBJECT_TYPE = {"jobconfigs": "jobconfig", "templates": "template"}
#: ``details`` keys whose values are never stored (a second line of defence).
SECRET_KEYS = frozenset(
    {"value", "values", "password", "secret", "token", "access_token", "refresh_token"}
)
MASK = "***"
#: What an unknown API route answers (the audit log does not exist for non-admins).
NO_ROUTE = "no such API route: see /api/v1/openapi.json"


class Guarded(Protocol):
    """What an authorization decision needs of a jobconfig or a template."""

    @property
    def id(self) -> int: ...

    @property
    def owner(self) -> str | None: ...


# -- the policy engine (pure) ------------------------------------------------------------


def _selectors(resource: str, obj_id: int, template_id: int | None) -> frozenset[str]:
    names = {ALL, str(obj_id)}
    if resource == "jobconfigs" and template_id is not None:
        names.add(f"{TEMPLATE_PREFIX}{template_id}")
    return frozenset(names)


def allowed(
    principal: Principal,
    policies: Iterable[Policy],
    action: str,
    resource: str,
    obj_id: int,
    owner: str | None,
    template_id: int | None = None,
) -> bool:
    """Whether ``principal`` may ``action`` the object (see the module docstring).

    Only ``policies`` of the principal's own user count (others are ignored).
    """
    if principal.is_admin:
        return True
    if owner is not None and principal.name == owner:
        return True
    if principal.user_id is None:
        return False
    matching = _selectors(resource, obj_id, template_id)
    for policy in policies:
        if (
            policy.user_id == principal.user_id
            and policy.resource == resource
            and action in IMPLIES.get(policy.action, ())
            and policy.selector in matching
        ):
            return True
    return False


def _template_of(obj: Guarded) -> int | None:
    value = getattr(obj, "template_id", None)
    return value if isinstance(value, int) else None


def not_found(resource: str, obj_id: int) -> NotFound:
    """Exactly what the store raises for a missing object of ``resource``."""
    kind = OBJECT_TYPE.get(resource, resource)
    return NotFound(f"{kind} {obj_id} does not exist", {f"{kind}_id": obj_id})


@dataclass(frozen=True, slots=True)
class Visibility:
    """What a listing of jobconfigs (or templates) is restricted to for a non-admin.

    An object is visible when it is owned by ``owner``, its id is in ``ids``, or (for
    jobconfigs) its template is in ``template_ids``. A job listing keeps the jobs whose
    jobconfig passes (use the jobconfig's owner and template), plus the jobs the caller
    submitted (``submitted_by == owner``).
    """

    owner: str
    ids: frozenset[int]
    template_ids: frozenset[int]

    def admits(self, obj_id: int, owner: str | None, template_id: int | None = None) -> bool:
        """Whether one object passes the filter."""
        return (
            owner == self.owner
            or obj_id in self.ids
            or (template_id is not None and template_id in self.template_ids)
        )


def visibility(
    principal: Principal, policies: Iterable[Policy], resource: str
) -> Visibility | None:
    """The listing filter of ``resource`` for ``principal``; None: everything.

    None for admins and for users with any grant on ``*`` (every grant implies view).
    """
    if principal.is_admin:
        return None
    ids: set[int] = set()
    template_ids: set[int] = set()
    for policy in policies:
        if policy.user_id != principal.user_id or policy.resource != resource:
            continue
        if "view" not in IMPLIES.get(policy.action, ()):
            continue
        if policy.selector == ALL:
            return None
        if policy.selector.startswith(TEMPLATE_PREFIX):
            template_ids.add(int(policy.selector[len(TEMPLATE_PREFIX) :]))
        elif policy.selector.isdigit():
            ids.add(int(policy.selector))
    return Visibility(principal.name, frozenset(ids), frozenset(template_ids))


# -- with the store: cached policies, route helpers -----------------------------------


async def policies_of(ctx: Context, principal: Principal) -> tuple[Policy, ...]:
    """The caller's policies (cached for :data:`POLICY_CACHE_SECONDS`); none for admins."""
    user_id = principal.user_id
    if principal.is_admin or user_id is None:
        return ()
    now = time.monotonic()
    cached = _CACHE.get(user_id)
    if cached is not None and cached[1] > now:
        return cached[0]
    found = tuple(await ctx.store.policies_for_user(user_id))
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[user_id] = (found, now + POLICY_CACHE_SECONDS)
    return found


def forget_policies(user_id: int | None = None) -> None:
    """Drop cached policies (of one user, or all): call after every policy change."""
    if user_id is None:
        _CACHE.clear()
    else:
        _CACHE.pop(user_id, None)


async def can(ctx: Context, principal: Principal, action: str, resource: str, obj: Guarded) -> bool:
    """Whether ``principal`` may ``action`` this jobconfig or template."""
    if principal.is_admin or (obj.owner is not None and obj.owner == principal.name):
        return True
    policies = await policies_of(ctx, principal)
    return allowed(principal, policies, action, resource, obj.id, obj.owner, _template_of(obj))


async def require(
    ctx: Context, principal: Principal, action: str, resource: str, obj: Guarded
) -> None:
    """Raise unless ``principal`` may ``action`` ``obj`` (a JobConfig or a Template).

    ``NotFound`` (404, the very message of a missing object) when the caller may not
    even view it; ``Forbidden`` (403) when it may view it but not do ``action``.
    """
    if await can(ctx, principal, action, resource, obj):
        return
    if action != "view" and await can(ctx, principal, "view", resource, obj):
        kind = OBJECT_TYPE.get(resource, resource)
        raise Forbidden(
            f"you may view {kind} {obj.id} but not {action} it",
            {f"{kind}_id": obj.id, "action": action},
        )
    raise not_found(resource, obj.id)


async def require_job(ctx: Context, principal: Principal, action: str, job: Job) -> None:
    """Raise unless ``principal`` may ``action`` (view, execute...) this job.

    A job follows its jobconfig (the jobconfig's owner and policies); its submitter
    may always view it and act on it. An ad-hoc job (no jobconfig) belongs to its
    submitter. ``NotFound`` with the message of a missing job when the caller may not
    view it; ``Forbidden`` when it may view it but not do ``action``.
    """
    if principal.is_admin or (job.submitted_by is not None and job.submitted_by == principal.name):
        return
    missing = NotFound(f"job {job.id} does not exist", {"job_id": job.id})
    if job.jobconfig_id is None:
        raise missing
    try:
        jobconfig = await ctx.store.jobconfig_get(job.jobconfig_id)
    except NotFound:
        raise missing from None
    if await can(ctx, principal, action, "jobconfigs", jobconfig):
        return
    if action != "view" and await can(ctx, principal, "view", "jobconfigs", jobconfig):
        raise Forbidden(
            f"you may view job {job.id} but not {action} it", {"job_id": job.id, "action": action}
        )
    raise missing


async def visible_jobconfig_filter(ctx: Context, principal: Principal) -> Visibility | None:
    """What a jobconfig (or job) listing must be restricted to; None: everything."""
    if principal.is_admin:
        return None
    return visibility(principal, await policies_of(ctx, principal), "jobconfigs")


async def visible_template_filter(ctx: Context, principal: Principal) -> Visibility | None:
    """What a template listing must be restricted to; None: everything."""
    if principal.is_admin:
        return None
    return visibility(principal, await policies_of(ctx, principal), "templates")


# -- audit -----------------------------------------------------------------------------


def actor_of(principal: Principal | str | None) -> str:
    """How a caller is written in the audit log: ``user:<name>``, or a given system name."""
    if principal is None:
        return "system"
    if isinstance(principal, str):
        return principal
    return principal.actor


def scrub(details: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``details`` with every secret-looking key's value replaced by ``***`` (recursive)."""
    if details is None:
        return None
    out: dict[str, Any] = {}
    for key, value in details.items():
        if str(key).lower() in SECRET_KEYS:
            out[str(key)] = MASK
        elif isinstance(value, Mapping):
            out[str(key)] = scrub(value)
        else:
            out[str(key)] = value
    return out


async def record(
    ctx: Context,
    principal: Principal | str | None,
    action: str,
    object_type: str,
    object_id: int | str | None,
    details: Mapping[str, Any] | None = None,
    remote_addr: str | None = None,
) -> None:
    """Append one audit entry; never raises (a failure is logged and swallowed).

    ``action`` is ``<object>.<verb>`` (``jobconfig.create``, ``job.cancel``,
    ``macro.set``...). ``details`` must never hold a secure value: pass macro NAMES.
    """
    try:
        await ctx.store.audit_insert(
            actor=actor_of(principal),
            action=action,
            object_type=object_type,
            object_id=None if object_id is None else str(object_id),
            details=scrub(details),
            remote_addr=remote_addr,
        )
    except Exception:  # the audited change is done: do not fail it afterwards
        log.exception("could not record audit entry %s %s %s", action, object_type, object_id)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def audit_filter(
    *,
    actor: str | None = None,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditFilter:
    """An :class:`AuditFilter`; a bare user name as ``actor`` means ``user:<name>``.

    Times without a zone are taken as UTC.
    """
    if actor is not None and ":" not in actor and actor not in ("system", "scheduler"):
        actor = f"user:{actor}"
    return AuditFilter(
        actor=actor,
        action=action or None,
        object_type=object_type,
        object_id=object_id,
        since=_aware(since),
        until=_aware(until),
    )


async def audit_list(
    ctx: Context,
    principal: Principal,
    flt: AuditFilter,
    *,
    cursor: str | None,
    limit: int,
) -> Page[AuditEntry]:
    """The audit log, newest first (admins; 404 for anyone else: it does not exist)."""
    if not principal.is_admin:
        raise NotFound(NO_ROUTE)
    return await ctx.store.audit_list(flt, cursor=cursor, limit=limit)


# -- policy management (admins) ----------------------------------------------------------


def _admin_or_404(principal: Principal, user_id: int) -> None:
    if not principal.is_admin:
        raise NotFound(f"user {user_id} does not exist", {"user_id": user_id})


async def list_policies(ctx: Context, principal: Principal, user_id: int) -> list[Policy]:
    """A user's policies (admins only; 404 for others)."""
    _admin_or_404(principal, user_id)
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
    """Grant a policy (admins only; 404 for others); audited as ``policy.grant``."""
    _admin_or_404(principal, user_id)
    policy = await ctx.store.policy_insert(
        user_id, action=action, resource=resource, selector=selector
    )
    forget_policies(user_id)
    details = {"user_id": user_id, "action": action, "resource": resource, "selector": selector}
    await record(ctx, principal, "policy.grant", "policy", policy.id, details, remote_addr)
    return policy


async def revoke(
    ctx: Context,
    principal: Principal,
    user_id: int,
    policy_id: int,
    *,
    remote_addr: str | None = None,
) -> Policy:
    """Revoke a policy (admins only; 404 for others); audited as ``policy.revoke``."""
    _admin_or_404(principal, user_id)
    policy = await ctx.store.policy_delete(user_id, policy_id)
    forget_policies(user_id)
    details = {
        "user_id": user_id,
        "action": policy.action,
        "resource": policy.resource,
        "selector": policy.selector,
    }
    await record(ctx, principal, "policy.revoke", "policy", policy.id, details, remote_addr)
    return policy
