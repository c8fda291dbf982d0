"""Retry policies on jobconfigs and templates, and the retries decided for ended jobs.

``jobconfigs.retries`` / ``retry_delay_seconds`` / ``retry_backoff`` / ``retry_on`` are
the policy (existing rows: no retries; the same columns on ``templates`` give the policy
of their jobconfigs that set none); ``retry_since`` is when ``retries`` last went
above 0 (jobs ended before it are not retried). ``job_retries`` holds one row per ended
job the maintenance pass decided about, keyed by that job (``retry_of``) so no second
decision can be written, with the retry job it submitted (NULL: attempts exhausted).
Nothing on the job path reads or writes any of it.

Written by hand; frozen once released (see 0001 for why types are spelled out).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


_POLICY = ("retry_since", "retry_on", "retry_backoff", "retry_delay_seconds", "retries")


def upgrade() -> None:
    """Add the policy columns (jobconfigs and templates) and the ``job_retries`` table."""
    for table in ("jobconfigs", "templates"):
        op.add_column(table, sa.Column("retries", sa.Integer(), nullable=False, server_default="0"))
        op.add_column(
            table,
            sa.Column("retry_delay_seconds", sa.Float(), nullable=False, server_default="30"),
        )
        op.add_column(
            table, sa.Column("retry_backoff", sa.Float(), nullable=False, server_default="2")
        )
        op.add_column(table, sa.Column("retry_on", sa.JSON(none_as_null=True), nullable=True))
        op.add_column(table, sa.Column("retry_since", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "job_retries",
        sa.Column("retry_of", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ux_job_retries_job_id", "job_retries", ["job_id"], unique=True)


def downgrade() -> None:
    """Drop the table and the columns."""
    op.drop_index("ux_job_retries_job_id", table_name="job_retries")
    op.drop_table("job_retries")
    for table in ("templates", "jobconfigs"):
        with op.batch_alter_table(table) as batch:
            for name in _POLICY:
                batch.drop_column(name)
