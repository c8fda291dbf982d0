"""Retention: per-jobconfig overrides and the indexes the purge pass reads.

``jobconfigs.retention_max_age_days`` / ``retention_max_jobs`` override the global
``retention.*`` settings for a jobconfig's ended jobs (NULL: the global value).
``ix_jobs_ended`` lists a jobconfig's ended jobs by id (partial: live jobs are not in
it), so the purge finds the oldest ones and the N-th newest without a sort;
``ix_jobs_package_id`` tells whether a job still uses a package;
``ix_api_tokens_job_id`` finds a job's session tokens when the job is purged.

Written by hand; frozen once released (see 0001 for why types are spelled out).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: Every end sets ``ended_at``; a predicate on the status would let a listing filtered
#: by an end status pick this (jobconfig, id) index and sort (PostgreSQL, small tables).
_ENDED = "ended_at IS NOT NULL"


def upgrade() -> None:
    """Add the override columns and the three indexes."""
    op.add_column("jobconfigs", sa.Column("retention_max_age_days", sa.Float(), nullable=True))
    op.add_column("jobconfigs", sa.Column("retention_max_jobs", sa.Integer(), nullable=True))
    op.create_index(
        "ix_jobs_ended",
        "jobs",
        ["jobconfig_id", "id"],
        postgresql_where=sa.text(_ENDED),
        sqlite_where=sa.text(_ENDED),
    )
    op.create_index(
        "ix_jobs_package_id",
        "jobs",
        ["package_id"],
        postgresql_where=sa.text("package_id IS NOT NULL"),
        sqlite_where=sa.text("package_id IS NOT NULL"),
    )
    op.create_index("ix_api_tokens_job_id", "api_tokens", ["job_id"])
