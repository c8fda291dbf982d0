"""Worker tokens: the credentials of remote workers (``jobyard worker``).

Their own table, apart from ``api_tokens``: a worker token is never found by the lookup
that authenticates API calls, so it opens no route but the worker routes.

Written by hand; frozen once released (see 0001 for why types are spelled out).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``worker_tokens`` and its unique hash index."""
    op.create_table(
        "worker_tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(128), nullable=False),
        sa.Column("pool", sa.String(100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ux_worker_tokens_token_hash", "worker_tokens", ["token_hash"], unique=True)


def downgrade() -> None:
    """Drop the table."""
    op.drop_index("ux_worker_tokens_token_hash", table_name="worker_tokens")
    op.drop_table("worker_tokens")
