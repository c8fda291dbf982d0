"""What every use case receives: settings and the adapters, built once by the server."""

from __future__ import annotations

from dataclasses import dataclass

from jobyard.blobs.protocol import BlobStore
from jobyard.engine.bus import Bus
from jobyard.settings import Settings
from jobyard.store.protocol import Store


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token's owner."""

    name: str
    role: str  # "admin" | "user"
    user_id: int | None = None  # None: the bootstrap admin token (before users existed)
    token_kind: str = "admin"  # admin | personal | access | refresh | session
    job_id: int | None = None  # a session token's job (SESSION_ID)

    @property
    def is_admin(self) -> bool:
        """Admins see and may do everything."""
        return self.role == "admin"

    @property
    def actor(self) -> str:
        """How this caller is written in job events and records."""
        return f"user:{self.name}"


@dataclass(frozen=True, slots=True)
class Context:
    """The adapters a use case may touch."""

    settings: Settings
    store: Store
    blobs: BlobStore
    bus: Bus
