"""What the console's users, tokens and policies pages show, each from one use case.

Like :mod:`jobyard.service.overview`, every function here is made of the use cases the
API calls (:mod:`jobyard.service.users`, :mod:`jobyard.service.policies`,
:mod:`jobyard.service.jobconfigs`, :mod:`jobyard.service.templates`) with the caller's
principal, so a page shows and does exactly what the same user could through the API.
Names are accepted where the CLI accepts them (``jobyard policies grant USER ACTION
RESOURCE SELECTOR``): they are looked up with the caller's rights, and a name the caller
may not see answers the 404 of a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobyard.core.access import ADHOC, ALL, TEMPLATE_PREFIX, Policy
from jobyard.core.errors import InvalidInput, NotFound
from jobyard.core.models import ApiToken
from jobyard.core.users import User
from jobyard.core.validation import NAME_RE
from jobyard.service import access, jobconfigs, policies, templates, users
from jobyard.service.context import Context, Principal

#: Users shown on one page of the users list, and on the policies page at most.
USERS_SHOWN = 100
#: The API's bound on a policy's selector.
SELECTOR_MAX = 64


@dataclass(frozen=True, slots=True)
class UserDetail:
    """One user as the caller may see them; policies and tokens only for admins."""

    user: User
    policies: list[Policy] | None
    tokens: list[ApiToken] | None


@dataclass(frozen=True, slots=True)
class UserPolicies:
    """One user and their policies, for the policies page."""

    user: User
    policies: list[Policy]


async def user_detail(ctx: Context, principal: Principal, user_id: int) -> UserDetail:
    """A user's page: the user (404 for a non-admin's other users), and for admins
    their policies and personal tokens."""
    user = await users.get_user(ctx, principal, user_id)
    if not principal.is_admin:
        return UserDetail(user=user, policies=None, tokens=None)
    granted = await policies.list_policies(ctx, principal, user_id)
    tokens = await users.list_tokens(ctx, principal, user=user.name, all_kinds=False)
    return UserDetail(user=user, policies=granted, tokens=tokens)


async def user_named(ctx: Context, principal: Principal, name: str) -> User:
    """The user called ``name`` (admins; 403 for others before any lookup)."""
    access.require_admin_route(principal)
    text = name.strip()
    found = await ctx.store.user_find(text) if NAME_RE.match(text) else None
    if found is None:
        raise NotFound(f"no user named {text[:128]!r}", {"user": text[:128]})
    return found


async def policy_listing(
    ctx: Context, principal: Principal, user_name: str | None
) -> tuple[list[UserPolicies], bool]:
    """Policies of the user named ``user_name``, or of every user (the first
    :data:`USERS_SHOWN`; the flag says more exist). Admins only (403)."""
    access.require_admin_route(principal)
    if user_name:
        user = await user_named(ctx, principal, user_name)
        return [UserPolicies(user, await policies.list_policies(ctx, principal, user.id))], False
    page = await users.list_users(ctx, principal, cursor=None, limit=USERS_SHOWN)
    out = [UserPolicies(u, await policies.list_policies(ctx, principal, u.id)) for u in page.items]
    return out, page.next_cursor is not None


async def resolve_selector(ctx: Context, principal: Principal, resource: str, selector: str) -> str:
    """A selector as the API takes it: names of jobconfigs and templates become ids.

    ``*``, ids and ``template:<id>`` pass unchanged; ``NAME`` and ``template:NAME`` are
    looked up with the caller's rights (as ``jobyard policies grant`` does). Other
    resources (``adhoc``) pass unchanged and the store says what it accepts.
    """
    text = selector.strip()
    if text == ALL or resource == ADHOC:
        return text
    kind, sep, rest = text.partition(":")
    if sep and f"{kind}:" == TEMPLATE_PREFIX and resource == "jobconfigs":
        if rest.isdigit():
            return text
        return f"{TEMPLATE_PREFIX}{await _template_id(ctx, principal, rest)}"
    if sep or text.isdigit():
        return text
    if resource == "jobconfigs":
        page = await jobconfigs.list_(ctx, principal, name=text, cursor=None, limit=1)
        if not page.items:
            raise NotFound(f"no jobconfig named {text[:128]!r}", {"selector": text[:128]})
        return str(page.items[0].id)
    if resource == "templates":
        return str(await _template_id(ctx, principal, text))
    raise InvalidInput(
        f"unknown resource {resource[:40]!r}: use jobconfigs, templates or adhoc",
        {"field": "resource"},
    )


async def _template_id(ctx: Context, principal: Principal, name: str) -> int:
    page = await templates.list_(ctx, principal, name=name, cursor=None, limit=1)
    if not page.items:
        raise NotFound(f"no template named {name[:128]!r}", {"selector": name[:128]})
    return page.items[0].id


async def grant_named(
    ctx: Context,
    principal: Principal,
    *,
    user_name: str,
    action: str,
    resource: str,
    selector: str,
    remote_addr: str | None = None,
) -> tuple[User, Policy]:
    """Grant a policy with names accepted for the user and the selector (admins only:
    403 before anything is looked up); the grant is :func:`policies.grant`."""
    access.require_admin_route(principal)
    user = await user_named(ctx, principal, user_name)
    resolved = await resolve_selector(ctx, principal, resource, selector)
    if len(resolved) > SELECTOR_MAX:
        raise InvalidInput(
            f"the selector is too long: at most {SELECTOR_MAX} characters", {"field": "selector"}
        )
    policy = await policies.grant(
        ctx,
        principal,
        user.id,
        action=action,
        resource=resource,
        selector=resolved,
        remote_addr=remote_addr,
    )
    return user, policy
