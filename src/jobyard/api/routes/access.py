"""Access policies of users and the audit log (admins only; 403 for everyone else).

``GET/POST /api/v1/users/{id}/policies``, ``DELETE /api/v1/users/{id}/policies/{pid}``
and ``GET /api/v1/audit``. A non-admin gets 403 with ``details.required_role: "admin"``
before any parameter or user id is looked at, so no user can be probed through them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from jobyard.api.deps import Caller, Ctx, require_principal
from jobyard.api.dto import CURSOR_HELP, MAX_ID
from jobyard.api.openapi import errors
from jobyard.core.access import AUDIT_MAX_LIMIT, AuditEntry, Policy
from jobyard.service import access, auditlog, policies


async def _admin_only(request: Request) -> None:
    """Non-admins and a job's SESSION_ID (whoever its user is) get 403 before any
    parameter is validated."""
    access.require_admin_route(await require_principal(request))


router = APIRouter(
    tags=["access"],
    dependencies=[Depends(_admin_only)],
    responses=errors(401, 403, 404, 422),
)
UserId = Annotated[int, Path(ge=1, le=MAX_ID, description="User id.")]
PolicyId = Annotated[int, Path(ge=1, le=MAX_ID, description="Policy id.")]


def client_address(request: Request) -> str | None:
    """The caller's address, as the audit log records it."""
    return request.client.host if request.client else None


class PolicyIn(BaseModel):
    """A grant: ``action`` on the ``resource`` objects matching ``selector``.

    ``selector``: an object id, ``*`` (all), or for jobconfigs ``template:<id>`` (every
    jobconfig of that template). Any action implies ``view``.
    """

    model_config = ConfigDict(extra="forbid")

    action: Literal["view", "edit", "delete", "execute"]
    resource: Literal["jobconfigs", "templates", "adhoc"] = Field(
        description="'adhoc' (ad-hoc jobs) takes only action 'execute' with selector '*'."
    )
    selector: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class PolicyOut(BaseModel):
    """A stored grant."""

    id: int
    user_id: int
    action: str
    resource: str
    selector: str
    created_at: datetime

    @classmethod
    def of(cls, p: Policy) -> PolicyOut:
        """Build from the domain record."""
        return cls.model_validate(p, from_attributes=True)


class PolicyList(BaseModel):
    """A user's policies, oldest first."""

    items: list[PolicyOut]


class AuditOut(BaseModel):
    """One audit entry (``details`` never holds a secure value)."""

    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str | None
    details: dict[str, Any] | None
    remote_addr: str | None

    @classmethod
    def of(cls, e: AuditEntry) -> AuditOut:
        """Build from the domain record."""
        return cls.model_validate(e, from_attributes=True)


class AuditPage(BaseModel):
    """A page of the audit log, newest first."""

    items: list[AuditOut]
    next_cursor: str | None


@router.get("/api/v1/users/{user_id}/policies", response_model=PolicyList)
async def list_policies(user_id: UserId, ctx: Ctx, caller: Caller) -> PolicyList:
    """A user's access policies (admins)."""
    items = await policies.list_policies(ctx, caller, user_id)
    return PolicyList(items=[PolicyOut.of(p) for p in items])


@router.post(
    "/api/v1/users/{user_id}/policies",
    status_code=201,
    response_model=PolicyOut,
    responses=errors(409),
)
async def grant_policy(
    user_id: UserId, body: PolicyIn, request: Request, ctx: Ctx, caller: Caller
) -> PolicyOut:
    """Grant a user an action on jobconfigs or templates (admins; 409 if already granted)."""
    policy = await policies.grant(
        ctx,
        caller,
        user_id,
        action=body.action,
        resource=body.resource,
        selector=body.selector,
        remote_addr=client_address(request),
    )
    return PolicyOut.of(policy)


@router.delete("/api/v1/users/{user_id}/policies/{policy_id}", status_code=204)
async def revoke_policy(
    user_id: UserId, policy_id: PolicyId, request: Request, ctx: Ctx, caller: Caller
) -> Response:
    """Revoke one of a user's policies (admins)."""
    await policies.revoke(ctx, caller, user_id, policy_id, remote_addr=client_address(request))
    return Response(status_code=204)


@router.get("/api/v1/audit", response_model=AuditPage)
async def list_audit(
    ctx: Ctx,
    caller: Caller,
    actor: Annotated[
        str | None,
        Query(max_length=200, description="Who: a user name, user:<name>, scheduler, system."),
    ] = None,
    action: Annotated[
        str | None, Query(max_length=64, description="Action prefix, e.g. jobconfig. or job.")
    ] = None,
    object_type: Annotated[str | None, Query(max_length=32)] = None,
    object_id: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[datetime | None, Query(description="At or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Before (ISO 8601).")] = None,
    cursor: Annotated[str | None, Query(description=CURSOR_HELP)] = None,
    limit: Annotated[int, Query(ge=1, le=AUDIT_MAX_LIMIT)] = 100,
) -> AuditPage:
    """Who did what to which object, when and from where; newest first (admins)."""
    flt = auditlog.audit_filter(
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        since=since,
        until=until,
    )
    page = await auditlog.audit_list(ctx, caller, flt, cursor=cursor, limit=limit)
    return AuditPage(items=[AuditOut.of(e) for e in page.items], next_cursor=page.next_cursor)
