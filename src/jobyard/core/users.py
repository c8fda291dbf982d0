"""Users, token kinds and what a presented token resolves to (records, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jobyard.core.models import ApiToken

ROLES: frozenset[str] = frozenset({"admin", "user"})

#: Token kinds: the bootstrap ``admin.token``, personal API tokens, the pair a login
#: hands out, and the job-scoped ``SESSION_ID``.
TOKEN_KINDS: frozenset[str] = frozenset({"admin", "personal", "access", "refresh", "session"})
#: Kinds listed by ``GET /api/v1/tokens`` unless every kind is asked for.
LISTED_KINDS: tuple[str, ...] = ("admin", "personal")

#: The user created at first start; ``$JOBYARD_HOME/admin.token`` is their token.
BOOTSTRAP_ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class User:
    """A person (or robot) who calls the API."""

    id: int
    name: str
    password_hash: str | None  # argon2; None: cannot log in with a password
    role: str  # admin | user
    active: bool
    created_at: datetime
    updated_at: datetime

    @property
    def has_password(self) -> bool:
        """Whether the user can log in with a password."""
        return self.password_hash is not None


@dataclass(frozen=True, slots=True)
class TokenIdentity:
    """A stored token with everything authentication needs, read in one go."""

    token: ApiToken
    user: User | None  # None: an unlinked bootstrap token (or its user was removed)
    job_status: str | None  # session tokens: the status of their job (None: no such job)
    #: Session tokens: the job's definers other than its submitter, each with their user
    #: record as it is now (None: no such user any more).
    definers: tuple[tuple[str, User | None], ...] = ()


@dataclass(frozen=True, slots=True)
class Deactivation:
    """What deactivating a user did."""

    user: User
    tokens_revoked: int
    jobs_cancelled: list[int]
