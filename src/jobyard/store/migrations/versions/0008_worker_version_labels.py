"""The version each worker runs and its labels, for the workers listing.

``workers.version`` (NULL until the worker's next heartbeat) and ``workers.labels``
(a JSON object of ``key -> value``; NULL is read as no labels) are written by each
heartbeat; nothing reads them on the job path.

Written by hand; frozen once released (see 0001 for why types are spelled out).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the two nullable columns (existing rows: unknown version, no labels)."""
    op.add_column("workers", sa.Column("version", sa.String(64), nullable=True))
    op.add_column("workers", sa.Column("labels", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    """Drop the columns."""
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("labels")
        batch.drop_column("version")
