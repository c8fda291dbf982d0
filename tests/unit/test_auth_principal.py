"""What a stored token resolves to, and the 401 message for each kind of refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobyard.core.errors import Unauthorized
from jobyard.core.models import ApiToken
from jobyard.core.users import TokenIdentity, User
from jobyard.service.auth import TOKEN_CACHE_SECONDS, principal_of

NOW = datetime.now(UTC)
ALICE = User(1, "alice", None, "user", True, NOW, NOW)


def _identity(
    kind: str = "personal",
    *,
    user: User | None = ALICE,
    revoked: bool = False,
    expires_at: datetime | None = None,
    job_id: int | None = None,
    job_status: str | None = None,
) -> TokenIdentity:
    token = ApiToken(
        id=7,
        name="t",
        role="user",
        created_at=NOW,
        revoked=revoked,
        user_id=user.id if user is not None else None,
        kind=kind,
        expires_at=expires_at,
        job_id=job_id,
    )
    return TokenIdentity(token=token, user=user, job_status=job_status)


def _refused(found: TokenIdentity | None) -> str:
    with pytest.raises(Unauthorized) as info:
        principal_of(found)
    return info.value.message


def test_a_personal_token_is_its_user() -> None:
    principal, ttl = principal_of(_identity())
    assert (principal.name, principal.role, principal.user_id) == ("alice", "user", 1)
    assert principal.token_kind == "personal" and ttl == TOKEN_CACHE_SECONDS


def test_the_role_comes_from_the_user_not_the_token() -> None:
    admin = User(1, "alice", None, "admin", True, NOW, NOW)
    assert principal_of(_identity(user=admin))[0].is_admin


def test_refusals_say_why() -> None:
    assert "no such token" in _refused(None)
    assert "revoked" in _refused(_identity(revoked=True))
    assert "expired" in _refused(_identity(expires_at=NOW - timedelta(seconds=1)))
    assert "refresh" in _refused(_identity("refresh", expires_at=NOW + timedelta(days=1)))
    inactive = User(1, "alice", None, "user", False, NOW, NOW)
    assert "deactivated" in _refused(_identity(user=inactive, revoked=True))
    orphan = TokenIdentity(token=_identity().token, user=None, job_status=None)
    assert "no longer exists" in _refused(orphan)


def test_an_expiring_token_is_cached_no_longer_than_it_lives() -> None:
    _, ttl = principal_of(_identity(expires_at=datetime.now(UTC) + timedelta(seconds=2)))
    assert 0 < ttl <= 2


def test_session_tokens_live_with_their_job_and_are_never_cached() -> None:
    principal, ttl = principal_of(_identity("session", job_id=5, job_status="RUNNING"))
    assert (principal.name, principal.token_kind, principal.job_id, ttl) == (
        "alice",
        "session",
        5,
        0.0,
    )
    for status in ("FINISHED", "FAILED", "ERROR", "CANCELLED", None):
        message = _refused(_identity("session", job_id=5, job_status=status))
        assert message.startswith("session of job 5 ended")


def test_an_unlinked_bootstrap_token_is_the_admin() -> None:
    token = ApiToken(id=1, name="admin", role="admin", created_at=NOW, revoked=False, kind="admin")
    principal, _ = principal_of(TokenIdentity(token=token, user=None, job_status=None))
    assert principal.is_admin and principal.user_id is None and principal.name == "admin"
