"""Bearer tokens as values: their prefixes and the digest they are stored and found by."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

#: Personal, access and refresh tokens.
TOKEN_PREFIX = "jy_"
#: SESSION_ID values (job-scoped tokens) are told apart at a glance.
SESSION_TOKEN_PREFIX = "jys_"


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings, so a plain SHA-256 is a safe, fast verifier."""
    return hashlib.sha256(token.encode()).hexdigest()


#: Worker tokens: their own kind, valid on the worker routes only.
WORKER_TOKEN_PREFIX = "jyw_"


@dataclass(frozen=True, slots=True)
class WorkerToken:
    """A stored worker token (its value is shown once, at creation, and never kept)."""

    id: int
    name: str
    #: The one pool a worker holding it may serve (None: any pool).
    pool: str | None
    created_at: datetime
    created_by: str
    revoked: bool
    last_used_at: datetime | None = None
