"""Users, tokens with owners and kinds, templates, layered macros, policies, audit.

Written by hand; frozen once released (see 0001 for why types are spelled out). Tokens
that exist before this revision are bootstrap admin tokens (``admin.token``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Add the tables and columns of access control, templates and macros."""
    op.add_column("jobconfigs", sa.Column("template_id", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("template_id", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("resolved_macros", sa.JSON(none_as_null=True), nullable=True))
    op.add_column("api_tokens", sa.Column("user_id", sa.Integer(), nullable=True))
    op.add_column(
        "api_tokens",
        sa.Column("kind", sa.String(16), nullable=False, server_default="personal"),
    )
    op.add_column("api_tokens", _ts("expires_at", True))
    op.add_column("api_tokens", sa.Column("job_id", sa.BigInteger(), nullable=True))
    op.execute("UPDATE api_tokens SET kind = 'admin'")
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _ts("created_at", False),
        _ts("updated_at", False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.CheckConstraint("role IN ('admin', 'user')", name="ck_users_role_known"),
        sqlite_autoincrement=True,
    )
    op.create_index("ux_users_name", "users", ["name"], unique=True)

    op.create_table(
        "login_failures",
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        _ts("last_failure_at", False),
        _ts("blocked_until", True),
        sa.PrimaryKeyConstraint("key", name="pk_login_failures"),
    )

    op.create_table(
        "templates",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("package_id", sa.Integer(), nullable=True),
        sa.Column("entrypoint", sa.String(200), nullable=True),
        sa.Column("command", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        _ts("created_at", False),
        _ts("updated_at", False),
        sa.PrimaryKeyConstraint("id", name="pk_templates"),
        sa.ForeignKeyConstraint(
            ["package_id"], ["packages.id"], name="fk_templates_package_id_packages"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ux_templates_name", "templates", ["name"], unique=True)

    op.create_table(
        "macros",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("scope_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("secure", sa.Boolean(), nullable=False),
        _ts("updated_at", False),
        sa.Column("updated_by", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_macros"),
        sa.CheckConstraint(
            "scope IN ('account', 'template', 'user', 'jobconfig')", name="ck_macros_scope_known"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ux_macros_scope_scope_id_name", "macros", ["scope", "scope_id", "name"], unique=True
    )

    op.create_table(
        "policies",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("resource", sa.String(16), nullable=False),
        sa.Column("selector", sa.String(64), nullable=False),
        _ts("created_at", False),
        sa.PrimaryKeyConstraint("id", name="pk_policies"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_policies_user_id_users", ondelete="CASCADE"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ux_policies_user_id_action_resource_selector",
        "policies",
        ["user_id", "action", "resource", "selector"],
        unique=True,
    )

    op.create_table(
        "audit",
        sa.Column("id", _big_id(), primary_key=True, autoincrement=True),
        _ts("at", False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("object_type", sa.String(32), nullable=False),
        sa.Column("object_id", sa.String(200), nullable=True),
        sa.Column("details", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("remote_addr", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_index("ix_audit_object_type_object_id", "audit", ["object_type", "object_id"])
    op.create_index("ix_audit_actor_at", "audit", ["actor", "at"])


def downgrade() -> None:
    """Drop what this revision added."""
    for table in ("audit", "policies", "macros", "templates", "login_failures", "users"):
        op.drop_table(table)
    op.drop_index("ix_api_tokens_user_id", table_name="api_tokens")
    with op.batch_alter_table("api_tokens") as batch:
        for column in ("job_id", "expires_at", "kind", "user_id"):
            batch.drop_column(column)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("resolved_macros")
        batch.drop_column("template_id")
    with op.batch_alter_table("jobconfigs") as batch:
        batch.drop_column("template_id")
