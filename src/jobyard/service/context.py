"""What every use case receives: settings and the adapters, built once by the server."""

from __future__ import annotations

from dataclasses import dataclass

from jobyard.blobs.protocol import BlobStore
from jobyard.engine.bus import Bus
from jobyard.settings import Settings
from jobyard.store.protocol import Store


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token's owner.

    A job's SESSION_ID (``token_kind == "session"``) is a *job token*: it never
    administers (users, tokens, policies, macro writes, audit, definitions), and when
    other people decided what the job runs (``bounded_by``: its jobconfig's and
    template's definers) it may only do what all of them may do as well.
    """

    name: str
    role: str  # "admin" | "user"
    user_id: int | None = None  # None: the bootstrap admin token (before users existed)
    token_kind: str = "admin"  # admin | personal | access | refresh | session
    job_id: int | None = None  # a session token's job (SESSION_ID)
    #: Job tokens: the other users whose rights bound this caller's (intersection).
    bounded_by: tuple[Principal, ...] = ()
    #: False for a definer who is deactivated or no longer exists: grants nothing.
    active: bool = True

    @property
    def is_admin(self) -> bool:
        """Admins see and may do everything (an inactive definer nothing)."""
        return self.role == "admin" and self.active

    @property
    def is_job(self) -> bool:
        """Whether this is a job's SESSION_ID (a job token)."""
        return self.token_kind == "session"

    @property
    def everyone(self) -> tuple[Principal, ...]:
        """This caller and every principal bounding it: an action needs all of them."""
        return (self, *self.bounded_by)

    @property
    def unbounded_admin(self) -> bool:
        """An admin whose rights no definer narrows: may read and do everything."""
        return all(p.is_admin for p in self.everyone)

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
