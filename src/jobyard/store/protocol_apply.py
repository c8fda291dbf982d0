"""The storage seam of ``apply``: a whole document's writes in one transaction.

Part of :class:`jobyard.store.protocol.Store` (which inherits it). See
:mod:`jobyard.core.applywrites`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from jobyard.core.applywrites import ApplyWrite


class ApplyStore(Protocol):
    """Writes of templates, jobconfigs and schedules that succeed or fail together."""

    async def apply_writes(self, writes: Sequence[ApplyWrite]) -> list[int | None]:
        """Run ``writes`` in order in ONE transaction, with their audit notes; answer the
        id each wrote (``None``: a schedule to delete was already gone).

        A refused write (taken name, unknown package, template or jobconfig, a schedule
        changed meanwhile...) raises :class:`~jobyard.core.applywrites.WriteRefused`
        naming it, and nothing of the list is written. On PostgreSQL the rows it changes
        are locked first, in one fixed order (templates, then the schedules of the
        jobconfigs, then the jobconfigs, each by id), so concurrent applies cannot
        deadlock and serialise on the database.
        """
        ...
