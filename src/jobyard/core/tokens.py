"""Bearer tokens as values: their prefixes and the digest they are stored and found by."""

from __future__ import annotations

import hashlib

#: Personal, access and refresh tokens.
TOKEN_PREFIX = "jy_"
#: SESSION_ID values (job-scoped tokens) are told apart at a glance.
SESSION_TOKEN_PREFIX = "jys_"


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings, so a plain SHA-256 is a safe, fast verifier."""
    return hashlib.sha256(token.encode()).hexdigest()
