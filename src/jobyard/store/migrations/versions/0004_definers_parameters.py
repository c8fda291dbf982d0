"""Least authority for jobs: definers of jobconfigs and templates, run-time parameters.

``jobconfigs.parameters`` lists the macro names a caller with only ``execute`` may set
at run time (none before this revision). ``definition_changed_by``/``_at`` on jobconfigs
and templates say who last changed what they run; existing rows start with their owner
and their last update. ``jobs.definers`` snapshots, at submission, the users besides the
submitter whose authority bounds the job's SESSION_ID (NULL for older jobs: unbounded,
as they were).

Written by hand; frozen once released (see 0001 for why types are spelled out).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Add the parameter and definer columns; existing definitions belong to their owner."""
    op.add_column("jobconfigs", sa.Column("parameters", sa.JSON(none_as_null=True), nullable=True))
    op.execute("UPDATE jobconfigs SET parameters = '[]'")
    for table in ("jobconfigs", "templates"):
        op.add_column(table, sa.Column("definition_changed_by", sa.String(200), nullable=True))
        op.add_column(table, _ts("definition_changed_at", True))
        op.execute(
            f"UPDATE {table} SET definition_changed_by = owner, definition_changed_at = updated_at"
        )
    op.add_column("jobs", sa.Column("definers", sa.JSON(none_as_null=True), nullable=True))
