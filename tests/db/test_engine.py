from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from cohub.db import models
from cohub.db.engine import (
    Database,
    SchemaMismatch,
    async_url,
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    migrate,
    sync_url,
)

PG_OPTS = "?options=-csearch_path%3Dmyschema"


@pytest.mark.parametrize(
    ("url", "sync", "async_"),
    [
        ("sqlite:///data/x.db", "sqlite:///data/x.db", "sqlite+aiosqlite:///data/x.db"),
        ("sqlite:////abs/x.db", "sqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        (
            f"postgresql://u:p@h:5432/d{PG_OPTS}",
            f"postgresql+psycopg://u:p@h:5432/d{PG_OPTS}",
            f"postgresql+psycopg://u:p@h:5432/d{PG_OPTS}",
        ),
        ("postgres://h/d", "postgresql+psycopg://h/d", "postgresql+psycopg://h/d"),
        ("postgresql+psycopg://h/d", "postgresql+psycopg://h/d", "postgresql+psycopg://h/d"),
    ],
)
def test_url_mapping_keeps_the_rest_of_the_url(url: str, sync: str, async_: str) -> None:
    assert sync_url(url) == sync
    assert async_url(url) == async_


@pytest.mark.parametrize("url", ["mysql://h/d", "not a url", "postgresql+asyncpg://h/d"])
def test_unsupported_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        sync_url(url)


def test_migrate_to_head_is_idempotent(db_url: str) -> None:
    assert current_revision(db_url) is None
    migrate(db_url)
    assert current_revision(db_url) == head_revision()
    assert migrate(db_url) is None
    assert current_revision(db_url) == head_revision()
    check_schema(db_url)


def test_migrated_schema_matches_models(migrated_url: str) -> None:
    engine = sa.create_engine(sync_url(migrated_url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), models.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_downgrade_to_base_and_back(migrated_url: str) -> None:
    downgrade(migrated_url, "base")
    assert current_revision(migrated_url) is None
    engine = sa.create_engine(sync_url(migrated_url))
    try:
        with engine.connect() as conn:
            assert set(sa.inspect(conn).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    migrate(migrated_url)
    check_schema(migrated_url)


def test_check_schema_on_empty_database_names_upgrade_command(db_url: str) -> None:
    with pytest.raises(SchemaMismatch, match="cohub db upgrade"):
        check_schema(db_url)
    if db_url.startswith("sqlite"):
        assert not Path(db_url.removeprefix("sqlite:///")).exists(), "check must not create a file"


def test_check_schema_when_behind(migrated_url: str) -> None:
    downgrade(migrated_url, "base")
    with pytest.raises(SchemaMismatch, match="cohub db upgrade"):
        check_schema(migrated_url)


def test_check_schema_on_database_from_newer_cohub(migrated_url: str) -> None:
    engine = sa.create_engine(sync_url(migrated_url))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    finally:
        engine.dispose()
    with pytest.raises(SchemaMismatch, match="upgrade cohub"):
        check_schema(migrated_url)


def _sqlite_only(url: str) -> Path:
    if not url.startswith("sqlite"):
        pytest.skip("SQLite only")
    return Path(url.removeprefix("sqlite:///"))


def test_sqlite_parent_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "cohub.sqlite3"
    migrate(f"sqlite:///{path}")
    assert path.exists()


def test_sqlite_is_backed_up_before_migrating_an_older_database(migrated_url: str) -> None:
    path = _sqlite_only(migrated_url)
    downgrade(migrated_url, "base")
    with sqlite3.connect(path) as conn:  # stands in for data from an older schema
        conn.execute("CREATE TABLE legacy (x INTEGER)")
        conn.execute("INSERT INTO legacy VALUES (42)")
    conn.close()

    backup = migrate(migrated_url)

    assert backup == path.with_name(f"{path.name}.bak-base")
    copy = sqlite3.connect(backup)
    try:
        assert copy.execute("SELECT x FROM legacy").fetchall() == [(42,)]
    finally:
        copy.close()
    check_schema(migrated_url)
    assert migrate(migrated_url) is None  # at head: no new backup


def test_new_sqlite_database_is_not_backed_up(db_url: str) -> None:
    path = _sqlite_only(db_url)
    assert migrate(db_url) is None
    assert list(path.parent.glob("*.bak-*")) == []


async def test_sqlite_pragmas(db: Database) -> None:
    _sqlite_only(db.url)
    async with db.connect() as conn:
        values = [
            (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
        ]
    assert values == ["wal", 1, 5000, 1]


async def test_ping(db: Database, tmp_path: Path) -> None:
    assert await db.ping()
    async with Database(f"sqlite:///{tmp_path}/missing/dir/x.sqlite3") as broken:
        assert not await broken.ping()


async def test_timestamps_come_back_as_utc(db: Database, account_id: str) -> None:
    plus_two = timezone(timedelta(hours=2))
    when = datetime(2024, 5, 1, 14, 0, tzinfo=plus_two)
    async with db.begin() as conn:
        await conn.execute(
            models.accounts.update()
            .where(models.accounts.c.account_id == account_id)
            .values(last_active=when)
        )
    async with db.connect() as conn:
        stored = await conn.scalar(
            sa.select(models.accounts.c.last_active).where(
                models.accounts.c.account_id == account_id
            )
        )
        later = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(models.accounts)
            .where(models.accounts.c.last_active > datetime(2024, 5, 1, 11, 59, tzinfo=UTC))
        )
    assert stored == when
    assert stored.utcoffset() == timedelta(0)
    assert later == 1


async def test_deleting_an_account_cascades(db: Database, account_id: str) -> None:
    from cohub.db.accounts import account_for_session, create_session

    token = await create_session(db, account_id)
    async with db.begin() as conn:
        await conn.execute(
            models.accounts.delete().where(models.accounts.c.account_id == account_id)
        )
        remaining = await conn.scalar(sa.select(sa.func.count()).select_from(models.remember_me))
    assert remaining == 0
    assert await account_for_session(db, token) is None


@pytest.mark.timeout(60)
def test_concurrent_migrations(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL only: several hub replicas migrate at start-up")
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(migrate, [db_url] * 4))
    check_schema(db_url)
