"""Job statistics: the rollup of ended jobs, its watermark, and the jobs it waits for.

``jobstats`` holds, per grain (hour, day, all time), jobconfig (0: ad-hoc jobs) and
bucket, the counts by end status and the duration and queue-wait histograms of the
jobs that ended in it. ``jobstats_state`` (one row) is the watermark of the fold that
fills it; ``jobstats_pending`` lists the jobs below the watermark that had not ended.
An existing history is folded by the first maintenance passes after the upgrade (the
watermark starts at 0).

Written by hand; frozen once released (see 0001 for why types are spelled out).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _count(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.BigInteger(), nullable=False)


def _ms(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.Float(), nullable=False)


def upgrade() -> None:
    """Create the rollup, its watermark row (at 0) and the pending list."""
    op.create_table(
        "jobstats",
        sa.Column("grain", sa.String(1), nullable=False),
        sa.Column("jobconfig_key", sa.Integer(), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        _count("finished"),
        _count("error"),
        _count("failed"),
        _count("cancelled"),
        _count("dur_count"),
        _ms("dur_sum_ms"),
        _ms("dur_max_ms"),
        sa.Column("dur_bins", sa.LargeBinary(), nullable=False),
        _count("wait_count"),
        _ms("wait_sum_ms"),
        _ms("wait_max_ms"),
        sa.Column("wait_bins", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("grain", "jobconfig_key", "bucket_start", name="pk_jobstats"),
    )
    op.create_index("ix_jobstats_grain_bucket_start", "jobstats", ["grain", "bucket_start"])
    state = op.create_table(
        "jobstats_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("folded_through", sa.BigInteger(), nullable=False),
        sa.Column("folded_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobstats_state"),
    )
    op.bulk_insert(state, [{"id": 1, "folded_through": 0, "folded_at": None}])
    op.create_table(
        "jobstats_pending",
        sa.Column("job_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("job_id", name="pk_jobstats_pending"),
    )
