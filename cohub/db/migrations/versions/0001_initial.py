"""Initial schema: accounts, sessions, api keys, projects, shares, sync history, blobs, logs.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Self-contained on purpose: a revision must not import cohub.db.models, which describes
only the newest schema.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _uuid(name: str, *args: Any, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.String(36), *args, nullable=nullable)


def _ts(name: str, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _flag(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Boolean(), server_default=sa.false(), nullable=False)


def _text(name: str, type_: Any = None) -> sa.Column[Any]:
    return sa.Column(
        name, type_ if type_ is not None else sa.Text(), server_default="", nullable=False
    )


def _fk(column: str, target: str, table: str) -> sa.ForeignKeyConstraint:
    ref_table = target.split(".")[0]
    return sa.ForeignKeyConstraint(
        [column], [target], ondelete="CASCADE", name=f"fk_{table}_{column}_{ref_table}"
    )


def _index(table: str, *columns: str) -> None:
    op.create_index(f"ix_{table}_{'_'.join(columns)}", table, list(columns))


def upgrade() -> None:
    op.create_table(
        "accounts",
        _uuid("account_id"),
        sa.Column("email_address", sa.String(254), nullable=True),
        sa.Column("password_hash", sa.String(255), nullable=True),
        _ts("created", nullable=False),
        _flag("deleted"),
        _flag("banned"),
        sa.Column("groups", JSON, nullable=False),
        _text("first_name", sa.String(254)),
        _text("last_name", sa.String(254)),
        sa.Column("name", sa.String(39), nullable=True),
        _ts("last_active"),
        sa.PrimaryKeyConstraint("account_id", name="pk_accounts"),
        sa.UniqueConstraint("email_address", name="uq_accounts_email_address"),
        sa.UniqueConstraint("name", name="uq_accounts_name"),
    )
    _index("accounts", "created")
    _index("accounts", "last_active")

    op.create_table(
        "remember_me",
        sa.Column("hash", sa.String(64), nullable=False),
        _uuid("account_id"),
        _ts("expire", nullable=False),
        sa.PrimaryKeyConstraint("hash", name="pk_remember_me"),
        _fk("account_id", "accounts.account_id", "remember_me"),
    )
    _index("remember_me", "account_id")
    _index("remember_me", "expire")

    op.create_table(
        "projects",
        _uuid("project_id"),
        _text("title"),
        _text("description"),
        sa.Column("name", sa.String(100), nullable=True),
        _flag("deleted"),
        _ts("created", nullable=False),
        _ts("last_edited"),
        sa.Column("state", JSON, nullable=True),
        sa.Column("status", JSON, nullable=True),
        sa.Column("secret_token", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("project_id", name="pk_projects"),
    )
    _index("projects", "created")
    _index("projects", "last_edited")

    op.create_table(
        "project_users",
        _uuid("project_id"),
        _uuid("account_id"),
        sa.Column("group", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "account_id", name="pk_project_users"),
        sa.CheckConstraint(
            "\"group\" IN ('owner', 'collaborator', 'viewer')", name="ck_project_users_group_valid"
        ),
        _fk("project_id", "projects.project_id", "project_users"),
        _fk("account_id", "accounts.account_id", "project_users"),
    )
    _index("project_users", "account_id")

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _uuid("account_id"),
        _uuid("project_id", nullable=True),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("trunc", sa.String(32), nullable=False),
        _text("name", sa.String(255)),
        _ts("created", nullable=False),
        _ts("expire"),
        _ts("last_active"),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        _fk("account_id", "accounts.account_id", "api_keys"),
        _fk("project_id", "projects.project_id", "api_keys"),
    )
    _index("api_keys", "account_id")
    _index("api_keys", "project_id")
    _index("api_keys", "expire")

    op.create_table(
        "public_paths",
        sa.Column("id", sa.String(40), nullable=False),
        _uuid("project_id"),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("name", sa.String(100), nullable=True),
        _text("description"),
        _flag("disabled"),
        _flag("unlisted"),
        _flag("authenticated"),
        sa.Column("vhost", sa.String(255), nullable=True),
        sa.Column("counter", sa.Integer(), server_default="0", nullable=False),
        _ts("created", nullable=False),
        _ts("last_edited"),
        sa.PrimaryKeyConstraint("id", name="pk_public_paths"),
        _fk("project_id", "projects.project_id", "public_paths"),
    )
    _index("public_paths", "project_id")
    _index("public_paths", "vhost")
    _index("public_paths", "last_edited")

    op.create_table(
        "mentions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _ts("time", nullable=False),
        _uuid("project_id"),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("source", sa.String(36), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        _text("description"),
        sa.Column("fragment_id", sa.Text(), nullable=True),
        sa.Column("action", sa.String(32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("expire"),
        sa.PrimaryKeyConstraint("id", name="pk_mentions"),
    )
    _index("mentions", "time")
    _index("mentions", "expire")
    _index("mentions", "project_id", "path", "target")

    op.create_table(
        "stats",
        _uuid("id"),
        _ts("time", nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stats"),
    )
    _index("stats", "time")

    op.create_table(
        "hub_servers",
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("clients", sa.Integer(), server_default="0", nullable=False),
        _ts("expire"),
        sa.PrimaryKeyConstraint("host", "port", name="pk_hub_servers"),
    )
    _index("hub_servers", "expire")

    op.create_table(
        "server_settings",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_server_settings"),
    )

    op.create_table(
        "syncstrings",
        sa.Column("string_id", sa.String(40), nullable=False),
        _uuid("project_id"),
        sa.Column("path", sa.Text(), nullable=False),
        _ts("last_active"),
        sa.Column("archived", sa.String(36), nullable=True),
        _flag("huge"),
        sa.PrimaryKeyConstraint("string_id", name="pk_syncstrings"),
    )
    _index("syncstrings", "project_id")
    _index("syncstrings", "last_active")

    op.create_table(
        "patches",
        sa.Column("string_id", sa.String(40), nullable=False),
        _ts("time", nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        _flag("is_snapshot"),
        sa.Column("patch", sa.Text(), nullable=True),
        sa.Column("snapshot", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("string_id", "time", "user_id", name="pk_patches"),
    )

    op.create_table(
        "blobs",
        _uuid("id"),
        sa.Column("blob", sa.LargeBinary(), nullable=False),
        _ts("expire"),
        _ts("created", nullable=False),
        _uuid("project_id", nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("compress", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_blobs"),
    )
    _index("blobs", "expire")

    op.create_table(
        "central_log",
        _uuid("id"),
        sa.Column("event", sa.String(255), nullable=False),
        sa.Column("value", JSON, nullable=True),
        _ts("time", nullable=False),
        _ts("expire"),
        sa.PrimaryKeyConstraint("id", name="pk_central_log"),
    )
    _index("central_log", "time")
    _index("central_log", "expire")


def downgrade() -> None:
    # Children before parents; dropping a table drops its indexes.
    for table in (
        "central_log",
        "blobs",
        "patches",
        "syncstrings",
        "server_settings",
        "hub_servers",
        "stats",
        "mentions",
        "public_paths",
        "api_keys",
        "project_users",
        "projects",
        "remember_me",
        "accounts",
    ):
        op.drop_table(table)
