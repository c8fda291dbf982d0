"""The storage seam of worker tokens (the credentials of remote workers)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from jobyard.core.tokens import WorkerToken


class WorkerTokenStore(Protocol):
    """Worker tokens, stored by hash in their own table (never found as API tokens)."""

    async def worker_token_insert(
        self, *, name: str, token_hash: str, pool: str | None, created_by: str
    ) -> WorkerToken:
        """Store a worker token by its hash; ``Conflict`` if that hash is stored already."""
        ...

    async def worker_tokens_list(self) -> list[WorkerToken]:
        """Every worker token, revoked ones included, by id."""
        ...

    async def worker_token_revoke(self, token_id: int) -> WorkerToken | None:
        """Revoke a worker token (idempotent); None when there is no such token."""
        ...

    async def worker_token_lookup(self, token_hash: str) -> WorkerToken | None:
        """The non-revoked worker token with this hash, or None."""
        ...

    async def worker_token_touch(self, token_id: int, at: datetime) -> None:
        """Record that a worker token was used at ``at``."""
        ...
