"""Labels a job requires of its worker, and drain requests of workers.

``jobconfigs.labels`` / ``templates.labels``: the worker labels their jobs require (a
JSON object; NULL: none; a jobconfig with none takes its template's). ``jobs.labels``:
the copy a job took when it was submitted, so a claim tests it without reading
jobconfigs (NULL: any worker of the pool may claim it). ``workers.drain_requested``: an
admin asked the worker to drain; its next heartbeat answers so.

Written by hand; frozen once released (see 0001 for why types are spelled out).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the label columns and the drain flag (existing rows: no labels, no drain)."""
    for table in ("jobconfigs", "templates", "jobs"):
        op.add_column(table, sa.Column("labels", sa.JSON(none_as_null=True), nullable=True))
    op.add_column(
        "workers",
        sa.Column("drain_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("drain_requested")
    for table in ("jobs", "templates", "jobconfigs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("labels")
