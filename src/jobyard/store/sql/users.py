"""Users, login throttling and token management."""

from __future__ import annotations

from jobyard.store.sql.base import SqlBase


class UsersMixin(SqlBase):
    """Users, login throttling and token management."""
