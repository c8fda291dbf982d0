"""Scheduling: the schedules table, the firing columns of jobs, the owner of jobconfigs.

Written by hand; frozen once released (see 0001 for why types are spelled out).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Add schedules, jobs.schedule_id/scheduled_for (unique per firing), jobconfigs.owner."""
    op.add_column("jobconfigs", sa.Column("owner", sa.String(200), nullable=True))
    op.add_column("jobs", sa.Column("schedule_id", sa.Integer(), nullable=True))
    op.add_column("jobs", _ts("scheduled_for", True))
    op.create_index(
        "ux_jobs_schedule_firing",
        "jobs",
        ["schedule_id", "scheduled_for"],
        unique=True,
        postgresql_where=sa.text("schedule_id IS NOT NULL"),
        sqlite_where=sa.text("schedule_id IS NOT NULL"),
    )
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("jobconfig_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("cron", sa.String(400), nullable=True),
        sa.Column("interval_minutes", sa.Integer(), nullable=True),
        _ts("start_at", True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("misfire_policy", sa.String(16), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("macros", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        _ts("next_fire_at", True),
        _ts("last_fire_at", True),
        sa.Column("last_result", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        _ts("created_at", False),
        _ts("updated_at", False),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
        sa.ForeignKeyConstraint(
            ["jobconfig_id"],
            ["jobconfigs.id"],
            name="fk_schedules_jobconfig_id_jobconfigs",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "(cron IS NULL) <> (interval_minutes IS NULL)", name="ck_schedules_cron_xor_interval"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ux_schedules_jobconfig_id_name", "schedules", ["jobconfig_id", "name"], unique=True
    )
    op.create_index("ix_schedules_next_fire_at", "schedules", ["next_fire_at"])


def downgrade() -> None:
    """Drop what this revision added."""
    op.drop_table("schedules")
    op.drop_index("ux_jobs_schedule_firing", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("scheduled_for")
        batch.drop_column("schedule_id")
    with op.batch_alter_table("jobconfigs") as batch:
        batch.drop_column("owner")
