"""Sign-in throttling, password resets, registration tokens and messages.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

Self-contained like 0001: it does not import cohub.db.models.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def _uuid(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.String(36), nullable=nullable)


def _ts(name: str, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _fk(column: str, target: str, table: str) -> sa.ForeignKeyConstraint:
    ref_table = target.split(".")[0]
    return sa.ForeignKeyConstraint(
        [column], [target], ondelete="CASCADE", name=f"fk_{table}_{column}_{ref_table}"
    )


def _index(table: str, *columns: str) -> None:
    op.create_index(f"ix_{table}_{'_'.join(columns)}", table, list(columns))


def upgrade() -> None:
    op.create_table(
        "auth_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(254), nullable=False),
        _ts("time", nullable=False),
        _ts("expire"),
        sa.PrimaryKeyConstraint("id", name="pk_auth_attempts"),
    )
    _index("auth_attempts", "expire")
    _index("auth_attempts", "kind", "key", "time")

    op.create_table(
        "password_resets",
        sa.Column("hash", sa.String(64), nullable=False),
        _uuid("account_id"),
        _ts("expire", nullable=False),
        sa.PrimaryKeyConstraint("hash", name="pk_password_resets"),
        _fk("account_id", "accounts.account_id", "password_resets"),
    )
    _index("password_resets", "account_id")
    _index("password_resets", "expire")

    op.create_table(
        "registration_tokens",
        sa.Column("token", sa.String(255), nullable=False),
        sa.Column("descr", sa.Text(), server_default="", nullable=False),
        _ts("expire"),
        sa.Column("limit", sa.Integer(), nullable=True),
        sa.Column("counter", sa.Integer(), server_default="0", nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("token", name="pk_registration_tokens"),
    )

    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _ts("sent", nullable=False),
        _uuid("from_id"),
        sa.Column("subject", sa.Text(), server_default="", nullable=False),
        sa.Column("body", sa.Text(), server_default="", nullable=False),
        sa.Column("reply_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        _fk("from_id", "accounts.account_id", "messages"),
    )
    _index("messages", "sent")
    _index("messages", "from_id")

    op.create_table(
        "message_recipients",
        sa.Column("message_id", sa.Integer(), nullable=False),
        _uuid("account_id"),
        _ts("read"),
        sa.PrimaryKeyConstraint("message_id", "account_id", name="pk_message_recipients"),
        _fk("message_id", "messages.id", "message_recipients"),
        _fk("account_id", "accounts.account_id", "message_recipients"),
    )
    _index("message_recipients", "account_id")


def downgrade() -> None:
    for table in (
        "message_recipients",
        "messages",
        "registration_tokens",
        "password_resets",
        "auth_attempts",
    ):
        op.drop_table(table)
