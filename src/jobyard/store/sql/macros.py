"""Macros of the account, template, user and jobconfig levels (secure ones encrypted)."""

from __future__ import annotations

from jobyard.store.sql.base import SqlBase


class MacrosMixin(SqlBase):
    """Macros of the account, template, user and jobconfig levels (secure ones encrypted)."""
