"""The SQL implementation of :class:`~jobyard.store.protocol.Store` (SQLite and PostgreSQL).

One class, composed of one mixin per concept; the engine differences live in
:mod:`jobyard.store.sql.base` (connections, transactions) and in a few explicit
``tx.pg`` branches (sequence numbers, row locks).
"""

from __future__ import annotations

from jobyard.store.sql.access import AccessMixin
from jobyard.store.sql.apply import ApplyMixin
from jobyard.store.sql.claims import ClaimsMixin
from jobyard.store.sql.jobconfigs import JobconfigsMixin
from jobyard.store.sql.jobfiles import JobFilesMixin
from jobyard.store.sql.jobs import JobsMixin
from jobyard.store.sql.macros import MacrosMixin
from jobyard.store.sql.packages import PackagesMixin
from jobyard.store.sql.retention import RetentionMixin
from jobyard.store.sql.retries import RetriesMixin
from jobyard.store.sql.schedules import SchedulesMixin
from jobyard.store.sql.stats import StatsMixin
from jobyard.store.sql.submits import SubmitsMixin
from jobyard.store.sql.templates import TemplatesMixin
from jobyard.store.sql.tokens import TokensMixin
from jobyard.store.sql.users import UsersMixin
from jobyard.store.sql.worker_tokens import WorkerTokensMixin
from jobyard.store.sql.workers import WorkersMixin


class SqlStore(
    JobsMixin,
    SubmitsMixin,
    ClaimsMixin,
    JobconfigsMixin,
    SchedulesMixin,
    UsersMixin,
    TemplatesMixin,
    MacrosMixin,
    PackagesMixin,
    JobFilesMixin,
    TokensMixin,
    WorkersMixin,
    WorkerTokensMixin,
    AccessMixin,
    RetentionMixin,
    RetriesMixin,
    StatsMixin,
    ApplyMixin,
):
    """The store over one database URL. Build it with :func:`jobyard.store.factory.open_store`."""


__all__ = ["SqlStore"]
