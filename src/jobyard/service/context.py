"""What every use case receives: settings, the adapters and the engine's ports.

The runtime builds one :class:`Context` per server; use cases reach the engine only
through the protocols below (the engine's ``Bus`` and ``Retention`` fit them), so the
service layer imports nothing of ``jobyard.engine``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from jobyard.blobs.protocol import BlobStore
from jobyard.core.access import Policy
from jobyard.core.crypto import Keyrings
from jobyard.core.retention import JobconfigRemoved, PurgeReport
from jobyard.core.tokens import WorkerToken
from jobyard.service.log_seals import LogSeals
from jobyard.service.worker_desk import WorkerDesk
from jobyard.settings import Settings
from jobyard.store.protocol import Store

_monotonic = time.monotonic
K = TypeVar("K")
V = TypeVar("V")


class Bus(Protocol):
    """In-process wake-ups a use case sends or waits on (``jobyard.engine.bus.Bus``)."""

    def work_available(self) -> None:
        """Tell idle workers that a job may have been queued."""

    def job_changed(self, job_id: int) -> None:
        """Wake everyone waiting on ``job_id``."""

    async def wait_job(self, job_id: int, timeout: float) -> bool:
        """Return True when ``job_id`` changes, False after ``timeout`` seconds."""

    async def wait_any_job(self, timeout: float) -> bool:
        """Return True on the next submission or job change, False after ``timeout``."""

    def request_abort(self, job_id: int, reason: str) -> bool:
        """Ask local workers to stop ``job_id`` now; False if none of them holds it."""

    def schedules_changed(self) -> None:
        """Tell the scheduler that a schedule was created, changed or deleted."""


class Purger(Protocol):
    """The retention runner of a server (``jobyard.engine.retention.Retention``).

    One per server, so on-demand and background passes take turns instead of purging
    the same rows side by side.
    """

    async def purge(self, *, dry_run: bool = False) -> PurgeReport:
        """Run one purge pass (``dry_run``: report what would go, change nothing)."""

    async def remove_jobconfig_leftovers(self, removed: JobconfigRemoved) -> PurgeReport:
        """After a jobconfig's deletion: its jobs' blobs and the packages only it used."""


class TtlCache(Generic[K, V]):
    """Values trusted for a while without asking the database again, bounded in size.

    Each server keeps its own (in its :class:`Context`): two servers in one process,
    perhaps on different databases, never answer from each other's entries. ``get`` is
    one dictionary read and a clock comparison: it is on the path of every request.
    """

    __slots__ = ("_entries", "_max")

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: dict[K, tuple[V, float]] = {}
        self._max = max_entries

    def get(self, key: K) -> V | None:
        """The value kept for ``key``, or None when there is none or it has expired."""
        entry = self._entries.get(key)
        if entry is not None and entry[1] > _monotonic():
            return entry[0]
        return None

    def put(self, key: K, value: V, ttl: float) -> None:
        """Keep ``value`` for ``ttl`` seconds (everything is dropped when full)."""
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = (value, _monotonic() + ttl)

    def forget(self, key: K | None = None) -> None:
        """Drop one entry, or all of them with no key."""
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)


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
    """The adapters a use case may touch, and what its server remembers between calls."""

    settings: Settings
    store: Store
    blobs: BlobStore
    bus: Bus
    retention: Purger
    #: Verified tokens by digest (see :data:`jobyard.service.auth.TOKEN_CACHE_SECONDS`).
    tokens: TtlCache[str, Principal] = field(default_factory=TtlCache)
    #: Access policies by user id (see :data:`jobyard.service.access.POLICY_CACHE_SECONDS`).
    policies: TtlCache[int, tuple[Policy, ...]] = field(default_factory=TtlCache)
    #: Secure-macro keyrings (loaded on first use).
    keyrings: Keyrings = field(default_factory=Keyrings)
    #: Verified worker tokens by digest (trusted as long as API tokens are).
    worker_tokens: TtlCache[str, WorkerToken] = field(default_factory=TtlCache)
    #: Claims and reports of remote workers (None: this server serves none).
    desk: WorkerDesk | None = None
    #: Seals of remote workers' logs, run after their end reports.
    seals: LogSeals = field(default_factory=LogSeals)
