"""Table definitions only; queries live in the per-aggregate modules (accounts.py, ...).

Schema changes go through a new revision in migrations/versions/; tests/db/test_engine.py
checks that the migrated schema matches these definitions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware timestamps stored as UTC.

    SQLite has no timezone type and would hand back naive values; this makes both databases
    return aware UTC datetimes. Naive input is taken to be UTC already.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        # SQLite compares timestamps as text: keep one format, without an offset suffix.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL (comparable, indexable); JSON text elsewhere.
JSONType: sa.types.TypeEngine[Any] = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

UUID_LEN = 36  # uuids are stored as canonical strings so SQLite and PostgreSQL agree
SHA1_LEN = 40

COLLABORATOR_GROUPS = ("owner", "collaborator", "viewer")


def _uuid(name: str, *args: Any, **kw: Any) -> sa.Column[str]:
    return sa.Column(name, sa.String(UUID_LEN), *args, **kw)


def _ts(name: str, **kw: Any) -> sa.Column[datetime]:
    return sa.Column(name, UTCDateTime(), **kw)


def _flag(name: str) -> sa.Column[bool]:
    return sa.Column(name, sa.Boolean(), nullable=False, default=False, server_default=sa.false())


accounts = sa.Table(
    "accounts",
    metadata,
    _uuid("account_id", primary_key=True),
    sa.Column("email_address", sa.String(254), unique=True),
    sa.Column("password_hash", sa.String(255)),
    _ts("created", nullable=False, index=True),
    _flag("deleted"),
    _flag("banned"),
    sa.Column("groups", JSONType, nullable=False, default=list),
    sa.Column("first_name", sa.String(254), nullable=False, default="", server_default=""),
    sa.Column("last_name", sa.String(254), nullable=False, default="", server_default=""),
    sa.Column("name", sa.String(39), unique=True),
    _ts("last_active", index=True),
)

remember_me = sa.Table(
    "remember_me",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    _uuid(
        "account_id",
        sa.ForeignKey("accounts.account_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    _ts("expire", nullable=False, index=True),
)

projects = sa.Table(
    "projects",
    metadata,
    _uuid("project_id", primary_key=True),
    sa.Column("title", sa.Text(), nullable=False, default="", server_default=""),
    sa.Column("description", sa.Text(), nullable=False, default="", server_default=""),
    sa.Column("name", sa.String(100)),
    _flag("deleted"),
    _ts("created", nullable=False, index=True),
    _ts("last_edited", index=True),
    sa.Column("state", JSONType),
    sa.Column("status", JSONType),
    sa.Column("secret_token", sa.String(255)),
)

project_users = sa.Table(
    "project_users",
    metadata,
    _uuid(
        "project_id",
        sa.ForeignKey("projects.project_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    _uuid(
        "account_id",
        sa.ForeignKey("accounts.account_id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
    sa.Column("group", sa.String(16), nullable=False),
    sa.CheckConstraint("\"group\" IN ('owner', 'collaborator', 'viewer')", name="group_valid"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    _uuid(
        "account_id",
        sa.ForeignKey("accounts.account_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    _uuid("project_id", sa.ForeignKey("projects.project_id", ondelete="CASCADE"), index=True),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("trunc", sa.String(32), nullable=False),
    sa.Column("name", sa.String(255), nullable=False, default="", server_default=""),
    _ts("created", nullable=False),
    _ts("expire", index=True),
    _ts("last_active"),
)

public_paths = sa.Table(
    "public_paths",
    metadata,
    sa.Column("id", sa.String(SHA1_LEN), primary_key=True),  # sha1(project_id + path)
    _uuid(
        "project_id",
        sa.ForeignKey("projects.project_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("path", sa.Text(), nullable=False),
    sa.Column("name", sa.String(100)),
    sa.Column("description", sa.Text(), nullable=False, default="", server_default=""),
    _flag("disabled"),
    _flag("unlisted"),
    _flag("authenticated"),
    sa.Column("vhost", sa.String(255), index=True),
    sa.Column("counter", sa.Integer(), nullable=False, default=0, server_default="0"),
    _ts("created", nullable=False),
    _ts("last_edited", index=True),
)

mentions = sa.Table(
    "mentions",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    _ts("time", nullable=False, index=True),
    _uuid("project_id", nullable=False),
    sa.Column("path", sa.Text(), nullable=False),
    sa.Column("source", sa.String(UUID_LEN), nullable=False),
    sa.Column("target", sa.String(255), nullable=False),
    sa.Column("description", sa.Text(), nullable=False, default="", server_default=""),
    sa.Column("fragment_id", sa.Text()),
    sa.Column("action", sa.String(32)),
    sa.Column("error", sa.Text()),
    _ts("expire", index=True),
    # The mentions service throttles per (project, path, target).
    sa.Index("ix_mentions_project_id_path_target", "project_id", "path", "target"),
)

stats = sa.Table(
    "stats",
    metadata,
    _uuid("id", primary_key=True),
    _ts("time", nullable=False, index=True),
    sa.Column("data", JSONType, nullable=False),
)

hub_servers = sa.Table(
    "hub_servers",
    metadata,
    sa.Column("host", sa.String(255), primary_key=True),
    sa.Column("port", sa.Integer(), primary_key=True),
    sa.Column("clients", sa.Integer(), nullable=False, default=0, server_default="0"),
    _ts("expire", index=True),
)

server_settings = sa.Table(
    "server_settings",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text()),
)

syncstrings = sa.Table(
    "syncstrings",
    metadata,
    sa.Column("string_id", sa.String(SHA1_LEN), primary_key=True),  # sha1(project_id + path)
    _uuid("project_id", nullable=False, index=True),
    sa.Column("path", sa.Text(), nullable=False),
    _ts("last_active", index=True),
    sa.Column("archived", sa.String(UUID_LEN)),  # blob id holding the archived patches
    _flag("huge"),
)

patches = sa.Table(
    "patches",
    metadata,
    sa.Column("string_id", sa.String(SHA1_LEN), primary_key=True),
    _ts("time", primary_key=True),
    sa.Column("user_id", sa.Integer(), primary_key=True),  # index into the document's users
    _flag("is_snapshot"),
    sa.Column("patch", sa.Text()),
    sa.Column("snapshot", sa.Text()),
)

blobs = sa.Table(
    "blobs",
    metadata,
    _uuid("id", primary_key=True),  # uuid derived from sha1(content)
    sa.Column("blob", sa.LargeBinary(), nullable=False),
    _ts("expire", index=True),
    _ts("created", nullable=False),
    _uuid("project_id"),
    sa.Column("size", sa.Integer(), nullable=False),
    sa.Column("compress", sa.String(16)),
)

central_log = sa.Table(
    "central_log",
    metadata,
    _uuid("id", primary_key=True),
    sa.Column("event", sa.String(255), nullable=False),
    sa.Column("value", JSONType),
    _ts("time", nullable=False, index=True),
    _ts("expire", index=True),
)

auth_attempts = sa.Table(
    "auth_attempts",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),  # "email", "ip", "reset-email", ...
    sa.Column("key", sa.String(254), nullable=False),
    _ts("time", nullable=False),
    _ts("expire", index=True),
    # Throttling counts recent rows per (kind, key).
    sa.Index("ix_auth_attempts_kind_key_time", "kind", "key", "time"),
)

password_resets = sa.Table(
    "password_resets",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),  # sha256 of the emailed token
    _uuid(
        "account_id",
        sa.ForeignKey("accounts.account_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    _ts("expire", nullable=False, index=True),
)

registration_tokens = sa.Table(
    "registration_tokens",
    metadata,
    sa.Column("token", sa.String(255), primary_key=True),
    sa.Column("descr", sa.Text(), nullable=False, default="", server_default=""),
    _ts("expire"),  # the token stops working then (the row stays, for the record)
    sa.Column("limit", sa.Integer()),  # at most this many sign-ups; NULL means no limit
    sa.Column("counter", sa.Integer(), nullable=False, default=0, server_default="0"),
    _flag("disabled"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    _ts("sent", nullable=False, index=True),
    _uuid(
        "from_id",
        sa.ForeignKey("accounts.account_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("subject", sa.Text(), nullable=False, default="", server_default=""),
    sa.Column("body", sa.Text(), nullable=False, default="", server_default=""),
    sa.Column("reply_id", sa.Integer()),
)

message_recipients = sa.Table(
    "message_recipients",
    metadata,
    sa.Column(
        "message_id",
        sa.Integer(),
        sa.ForeignKey("messages.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    _uuid(
        "account_id",
        sa.ForeignKey("accounts.account_id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
    _ts("read"),
)

# Tables swept by hub-maintenance-expired.
EXPIRING_TABLES: tuple[sa.Table, ...] = (
    remember_me,
    api_keys,
    mentions,
    hub_servers,
    blobs,
    central_log,
    auth_attempts,
    password_resets,
)
