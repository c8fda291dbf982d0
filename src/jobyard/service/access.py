"""Access decisions: who may do what to which jobconfig or template.

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

**Job tokens** (a job's ``SESSION_ID``): when people other than the job's user decided
what the job runs (``Principal.bounded_by``: the definers of its jobconfig and
template, snapshot at submission), every decision here is taken for each of them too
and the caller may only do what *all* of them may do (a deactivated or deleted definer
grants nothing). Job tokens never administer: :func:`refuse_job_token` answers 403 on
users, tokens, policies, macro writes, audit and on creating or changing definitions.

Policies are read once per user and cached for :data:`POLICY_CACHE_SECONDS`; a change
made through this server drops the cache at once (:func:`forget_policies`), one made
through another replica takes effect within that time.

Granting and revoking policies: :mod:`jobyard.service.policies`; the audit log:
:mod:`jobyard.service.auditlog`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from jobyard.core.access import (
    ADHOC,
    ALL,
    TEMPLATE_PREFIX,
    Policy,
)
from jobyard.core.errors import Forbidden, NotFound
from jobyard.core.models import Job
from jobyard.service.context import Context, Principal

#: How long a user's policies are trusted without reading them again.
POLICY_CACHE_SECONDS = 5.0

#: What each granted action allows (besides itself): any grant allows ``view``.
IMPLIES: dict[str, frozenset[str]] = {
    "view": frozenset({"view"}),
    "edit": frozenset({"edit", "view"}),
    "delete": frozenset({"delete", "view"}),
    "execute": frozenset({"execute", "view"}),
}
#: Singular object type of each resource (error messages and audit entries).
OBJECT_TYPE = {"jobconfigs": "jobconfig", "templates": "template"}


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

    Only ``policies`` of the principal's own user count (others are ignored). This is
    one principal's own right: :func:`can` intersects it with the principals bounding a
    job token.
    """
    if not principal.active:
        return False
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
    jobconfigs) its template is in ``template_ids``; with ``everything``, every object
    is (an admin bounded by others, a user with a ``*`` grant). A job listing keeps
    the jobs whose jobconfig passes (use the jobconfig's owner and template), plus the
    jobs the caller submitted (``submitted_by == owner``). An inactive definer's
    filter (``active`` False) admits nothing.
    """

    owner: str
    ids: frozenset[int]
    template_ids: frozenset[int]
    everything: bool = False
    active: bool = True

    def admits(self, obj_id: int, owner: str | None, template_id: int | None = None) -> bool:
        """Whether one object passes the filter."""
        if not self.active:
            return False
        return (
            self.everything
            or owner == self.owner
            or obj_id in self.ids
            or (template_id is not None and template_id in self.template_ids)
        )

    def admits_submitter(self, submitted_by: str | None) -> bool:
        """Whether jobs submitted by ``submitted_by`` pass whatever their jobconfig."""
        return self.active and submitted_by is not None and submitted_by == self.owner

    def admits_job(self, submitted_by: str | None, jobconfig: Guarded | None) -> bool:
        """Whether a job passes: submitted by the caller, or its jobconfig passes."""
        if self.admits_submitter(submitted_by):
            return True
        if jobconfig is None:
            return self.active and self.everything
        return self.admits(jobconfig.id, jobconfig.owner, _template_of(jobconfig))


@dataclass(frozen=True, slots=True)
class Intersection:
    """A listing filter of a bounded job token: an object passes when every part admits it."""

    parts: tuple[Visibility, ...]

    def admits(self, obj_id: int, owner: str | None, template_id: int | None = None) -> bool:
        """Whether one object passes every part."""
        return all(p.admits(obj_id, owner, template_id) for p in self.parts)

    def admits_submitter(self, submitted_by: str | None) -> bool:
        """Whether jobs of ``submitted_by`` pass every part whatever their jobconfig."""
        return all(p.admits_submitter(submitted_by) for p in self.parts)

    def admits_job(self, submitted_by: str | None, jobconfig: Guarded | None) -> bool:
        """Whether a job passes every part."""
        return all(p.admits_job(submitted_by, jobconfig) for p in self.parts)


#: What a listing is restricted to; None: nothing is hidden.
ListFilter = Visibility | Intersection


def visibility(
    principal: Principal, policies: Iterable[Policy], resource: str
) -> Visibility | None:
    """The listing filter of ``resource`` for ``principal``; None: everything.

    None for admins and for users with any grant on ``*`` (every grant implies view).
    """
    if not principal.active:
        return Visibility(principal.name, frozenset(), frozenset(), active=False)
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
    cached = ctx.policies.get(user_id)
    if cached is not None:
        return cached
    found = tuple(await ctx.store.policies_for_user(user_id))
    ctx.policies.put(user_id, found, POLICY_CACHE_SECONDS)
    return found


def forget_policies(ctx: Context, user_id: int | None = None) -> None:
    """Drop this server's cached policies (of one user, or all): after every policy change."""
    ctx.policies.forget(user_id)


async def _can_one(
    ctx: Context, principal: Principal, action: str, resource: str, obj: Guarded
) -> bool:
    if not principal.active:
        return False
    if principal.is_admin or (obj.owner is not None and obj.owner == principal.name):
        return True
    policies = await policies_of(ctx, principal)
    return allowed(principal, policies, action, resource, obj.id, obj.owner, _template_of(obj))


async def can(ctx: Context, principal: Principal, action: str, resource: str, obj: Guarded) -> bool:
    """Whether ``principal`` may ``action`` this jobconfig or template.

    A bounded job token may only when every principal bounding it may too.
    """
    for one in principal.everyone:
        if not await _can_one(ctx, one, action, resource, obj):
            return False
    return True


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
    view it; ``Forbidden`` when it may view it but not do ``action``. A bounded job
    token needs the right for each principal bounding it as well.
    """
    cache: list[Guarded | None] = []
    if await _may_job(ctx, principal, action, job, cache):
        return
    if action != "view" and await _may_job(ctx, principal, "view", job, cache):
        raise Forbidden(
            f"you may view job {job.id} but not {action} it", {"job_id": job.id, "action": action}
        )
    raise NotFound(f"job {job.id} does not exist", {"job_id": job.id})


async def _may_job(
    ctx: Context, principal: Principal, action: str, job: Job, cache: list[Guarded | None]
) -> bool:
    """Whether every principal of ``principal.everyone`` may ``action`` the job.

    ``cache`` holds the job's jobconfig once read ([None]: none, or deleted).
    """
    for one in principal.everyone:
        if not one.active:
            return False
        if one.is_admin or (job.submitted_by is not None and job.submitted_by == one.name):
            continue
        if job.jobconfig_id is None:
            return False
        if not cache:
            try:
                cache.append(await ctx.store.jobconfig_get(job.jobconfig_id))
            except NotFound:
                cache.append(None)
        jobconfig = cache[0]
        if jobconfig is None or not await _can_one(ctx, one, action, "jobconfigs", jobconfig):
            return False
    return True


async def _filter(ctx: Context, principal: Principal, resource: str) -> ListFilter | None:
    parts: list[Visibility] = []
    for one in principal.everyone:
        part = visibility(one, await policies_of(ctx, one), resource)
        if part is None and one is principal and not principal.bounded_by:
            return None  # the common case: an unbounded caller who sees everything
        if part is None:
            part = Visibility(one.name, frozenset(), frozenset(), everything=True)
        parts.append(part)
    if all(p.everything and p.active for p in parts):
        return None
    return parts[0] if len(parts) == 1 else Intersection(tuple(parts))


async def visible_jobconfig_filter(ctx: Context, principal: Principal) -> ListFilter | None:
    """What a jobconfig (or job) listing must be restricted to; None: everything."""
    if principal.is_admin and not principal.bounded_by:
        return None
    return await _filter(ctx, principal, "jobconfigs")


async def visible_template_filter(ctx: Context, principal: Principal) -> ListFilter | None:
    """What a template listing must be restricted to; None: everything."""
    if principal.is_admin and not principal.bounded_by:
        return None
    return await _filter(ctx, principal, "templates")


# -- job tokens and ad-hoc jobs ------------------------------------------------------


def refuse_job_token(principal: Principal, what: str) -> None:
    """403 when ``principal`` is a job's SESSION_ID: job tokens never do ``what``.

    A job token reads what its user may read and runs jobs of jobconfigs its user may
    execute; it never administers nor creates or changes definitions, whoever its user
    is, so code a job runs cannot grow the authority of those who shaped it.
    """
    if principal.is_job:
        raise Forbidden(
            f"a job's SESSION_ID cannot {what}: it may only read and run jobs; "
            "use a token of your own for this",
            {"token_kind": "session"},
        )


async def require_adhoc(ctx: Context, principal: Principal) -> None:
    """Ad-hoc jobs (any command or package) need admin or ``execute`` on ``adhoc`` ``*``.

    A job token never submits one (it creates no definitions), whoever its user is.
    """
    refuse_job_token(principal, "submit ad-hoc jobs")
    if principal.is_admin:
        return
    for policy in await policies_of(ctx, principal):
        if (
            policy.user_id == principal.user_id
            and policy.resource == ADHOC
            and policy.action == "execute"
            and policy.selector == ALL
        ):
            return
    raise Forbidden(
        "ad-hoc jobs (a command or package outside any jobconfig) need admin or the policy "
        '{"action": "execute", "resource": "adhoc", "selector": "*"}: ask an admin to run '
        f"`jobyard policies grant {principal.name} execute adhoc '*'`, or run a jobconfig "
        "you may execute instead",
        {"action": "execute", "resource": ADHOC, "selector": ALL},
    )


def require_admin_route(principal: Principal) -> None:
    """Policies and audit: 403 for a job token and for non-admins.

    These are admin-only *routes*, not objects a caller may not see: their existence is
    public (the OpenAPI document lists them), so a 403 that says an admin is needed
    hides nothing and tells the caller what to do. ``details.required_role`` lets
    clients recognise the case, as for the purge route.
    """
    refuse_job_token(principal, "read or change access policies or the audit log")
    if not principal.is_admin:
        raise Forbidden(
            "access policies and the audit log are for admins only: ask an admin, or use "
            "an admin's token",
            {"required_role": "admin"},
        )
