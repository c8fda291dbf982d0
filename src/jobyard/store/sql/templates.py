"""Templates: shared package, entry point and macros of jobconfigs."""

from __future__ import annotations

from jobyard.store.sql.base import SqlBase


class TemplatesMixin(SqlBase):
    """Templates: shared package, entry point and macros of jobconfigs."""
