"""The storage seam of people and their rights: users, login throttling, tokens,
access policies and the audit log.

Part of :class:`jobyard.store.protocol.Store` (which inherits it); the module docstring
of :mod:`jobyard.store.protocol` states the rules every method follows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from jobyard.core.access import AuditEntry, AuditFilter, Policy
from jobyard.core.models import ApiToken, Page
from jobyard.core.users import Deactivation, TokenIdentity, User


class UserStore(Protocol):
    """Users, their tokens and policies, and the audit log."""

    # -- users, login throttling, token management ----------------------------------
    async def user_create(self, *, name: str, role: str, password_hash: str | None) -> User:
        """Create an active user; ``Conflict`` if the name is taken."""
        ...

    async def user_get(self, user_id: int) -> User:
        """A user by id, or ``NotFound``."""
        ...

    async def user_find(self, name: str) -> User | None:
        """A user by name, or None."""
        ...

    async def users_list(self, *, cursor: str | None, limit: int) -> Page[User]:
        """Users by id, cursor-paginated."""
        ...

    async def user_update(self, user_id: int, changes: dict[str, Any]) -> User:
        """Change ``role`` and/or ``password_hash``; ``Conflict`` if no admin would remain."""
        ...

    async def user_deactivate(self, user_id: int, *, actor: str) -> Deactivation:
        """Deactivate a user, revoke their tokens, cancel their not-started jobs (one tx)."""
        ...

    async def user_activate(self, user_id: int) -> User:
        """Make a user active again (their revoked tokens stay revoked)."""
        ...

    async def users_bootstrap(self, admin_token_hash: str | None) -> User | None:
        """First start: user ``admin``, owner of the bootstrap token(s)."""
        ...

    async def login_blocked_until(self, keys: list[str]) -> datetime | None:
        """The latest ``blocked_until`` still in the future among ``keys``, or None."""
        ...

    async def login_failure_record(
        self,
        keys: dict[str, int],
        *,
        base_seconds: float,
        max_seconds: float,
        forget_after_seconds: float,
    ) -> datetime | None:
        """Count one failure per key (``{key: threshold}``); the latest block, if any."""
        ...

    async def login_failures_reset(self, keys: list[str]) -> None:
        """Forget the failures of ``keys``."""
        ...

    async def token_identity(self, token_hash: str) -> TokenIdentity | None:
        """A token by hash (revoked and expired ones too), its user and its job's status.

        For a session token also its job's definers (other than its user) with their
        user records as they are now.
        """
        ...

    async def token_get(self, token_id: int) -> ApiToken:
        """A token by id, or ``NotFound``."""
        ...

    async def tokens_list(
        self, *, user_id: int | None, kinds: tuple[str, ...] | None
    ) -> list[ApiToken]:
        """Tokens (revoked included), newest first; of one user or all, of some kinds."""
        ...

    async def token_revoke(self, token_id: int) -> ApiToken:
        """Revoke a token (idempotent)."""
        ...

    async def token_touch(self, token_id: int, at: datetime) -> None:
        """Record that a token was used at ``at`` (a token that is gone: nothing)."""
        ...

    async def token_revoke_by_hash(
        self, token_hash: str, *, kind: str | None = None
    ) -> ApiToken | None:
        """Revoke the live token with this hash (and kind); None if there was none."""
        ...

    async def session_token_create(
        self, *, job_id: int, user_name: str, token_hash: str
    ) -> User | None:
        """Store a job's session token if ``user_name`` is an active user; return the user."""
        ...

    # -- access policies and the audit log ----------------------------------------
    async def policy_insert(
        self, user_id: int, *, action: str, resource: str, selector: str
    ) -> Policy:
        """Grant a policy; ``InvalidInput`` (bad fields), ``NotFound`` (user), ``Conflict``."""
        ...

    async def policies_list(self, user_id: int) -> list[Policy]:
        """A user's policies by id; ``NotFound`` if there is no such user."""
        ...

    async def policies_for_user(self, user_id: int) -> list[Policy]:
        """A user's policies (none for an unknown user): the authorization read."""
        ...

    async def policy_delete(self, user_id: int, policy_id: int) -> Policy:
        """Revoke one policy of a user; ``NotFound`` if the user has no such policy."""
        ...

    async def audit_insert(
        self,
        *,
        actor: str,
        action: str,
        object_type: str,
        object_id: str | None,
        details: dict[str, Any] | None = None,
        remote_addr: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Append one audit entry (one INSERT; ``at`` defaults to the store's clock)."""
        ...

    async def audit_list(
        self, flt: AuditFilter, *, cursor: str | None = None, limit: int = 100
    ) -> Page[AuditEntry]:
        """Audit entries matching ``flt``, newest first (cursor pagination); limit 1..500."""
        ...
