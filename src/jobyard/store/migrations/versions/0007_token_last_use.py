"""When each API token was last used (to within a minute), for the token listings.

``api_tokens.last_used_at`` is NULL until a personal or bootstrap admin token is next
used; authentication writes it at most once a minute per token (see
:func:`jobyard.service.auth.authenticate`).

Written by hand; frozen once released (see 0001 for why types are spelled out).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable column (existing tokens: never used since the upgrade)."""
    op.add_column(
        "api_tokens", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    """Drop the column."""
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("last_used_at")
