"""``job_events`` without its foreign key to ``jobs``.

The job path writes five events per job, and PostgreSQL checked each against its job
(a look-up and a ``FOR KEY SHARE`` lock of the job's row, the row the same transactions
update). Nothing needs the check: events are written only in the transactions that
create or move their job, and the one place that deletes jobs (retention) deletes their
events first, in the same transaction. Without it the remote burst ran ~9 % faster
(docs/benchmarks.md, "One thread for the job path, and events without a foreign key").

On SQLite the table is rebuilt (a copy of its rows), as SQLite cannot drop a constraint.

Written by hand; frozen once released (see 0001 for why types are spelled out).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_FK = "fk_job_events_job_id_jobs"


def upgrade() -> None:
    """Drop the foreign key."""
    with op.batch_alter_table("job_events") as batch:
        batch.drop_constraint(_FK, type_="foreignkey")


def downgrade() -> None:
    """Put the foreign key back (events whose job is gone are deleted first)."""
    op.execute("DELETE FROM job_events WHERE job_id NOT IN (SELECT id FROM jobs)")
    with op.batch_alter_table("job_events") as batch:
        batch.create_foreign_key(_FK, "jobs", ["job_id"], ["id"], ondelete="CASCADE")
