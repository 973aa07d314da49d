"""The migrated schema has every table of hubs.md, with the columns the hubs rely on."""

from __future__ import annotations

import sqlalchemy as sa

from cohub.db.engine import sync_url

# hubs.md "Database": table -> the columns named there (a normalized collaborators table,
# project_users, stands for projects.users)
HUBS_MD_TABLES = {
    "accounts": {
        "account_id", "email_address", "password_hash", "created", "deleted", "banned",
        "groups", "first_name", "last_name", "name", "last_active",
    },
    "remember_me": {"hash", "account_id", "expire"},
    "api_keys": {
        "id", "account_id", "project_id", "hash", "trunc", "name", "created", "expire",
        "last_active",
    },
    "projects": {
        "project_id", "title", "description", "name", "deleted", "created", "last_edited",
        "state", "status", "secret_token",
    },
    "project_users": {"project_id", "account_id", "group"},
    "syncstrings": {"string_id", "project_id", "path", "last_active", "archived", "huge"},
    "patches": {"string_id", "time", "is_snapshot", "user_id", "patch", "snapshot"},
    "blobs": {"id", "blob", "expire", "created", "project_id", "size", "compress"},
    "public_paths": {
        "id", "project_id", "path", "name", "description", "disabled", "unlisted",
        "authenticated", "vhost", "counter", "created", "last_edited",
    },
    "mentions": {
        "time", "project_id", "path", "source", "target", "description", "fragment_id",
        "action", "error", "expire",
    },
    "stats": {"id", "time"},
    "hub_servers": {"host", "port", "clients", "expire"},
    "central_log": {"id", "event", "value", "time", "expire"},
    "server_settings": {"name", "value"},
}  # fmt: skip


def test_every_hubs_md_table_and_column_exists(migrated_url: str) -> None:
    engine = sa.create_engine(sync_url(migrated_url))
    try:
        inspector = sa.inspect(engine)
        tables = set(inspector.get_table_names())
        missing = set(HUBS_MD_TABLES) - tables
        assert not missing, f"tables missing after migration: {sorted(missing)}"
        for table, wanted in HUBS_MD_TABLES.items():
            columns = {c["name"] for c in inspector.get_columns(table)}
            assert wanted <= columns, f"{table} lacks {sorted(wanted - columns)}"
    finally:
        engine.dispose()
