"""Connection factory, schema migrations and the startup schema check.

URLs are accepted in their plain form (``sqlite:///path``, ``postgresql://...``) and mapped to
the drivers cohub uses: the stdlib sqlite3 / aiosqlite and psycopg 3. Query parameters pass
through untouched, e.g. ``?options=-csearch_path%3Dmyschema`` pins a PostgreSQL schema (and
Alembic's version table lands in that schema too, since it follows the search_path).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from cohub.db.errors import SchemaMismatch

UPGRADE_COMMAND = "cohub db upgrade"
_PING_TIMEOUT_S = 2.0
_MIGRATION_LOCK = 0x636F687562  # "cohub"; arbitrary but fixed advisory lock key
_MIGRATIONS = Path(__file__).parent / "migrations"

_SYNC_SCHEMES = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite",
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}
_ASYNC_SCHEMES = {
    **_SYNC_SCHEMES,
    **{scheme: "sqlite+aiosqlite" for scheme in _SYNC_SCHEMES if scheme.startswith("sqlite")},
}


def _map_scheme(url: str, schemes: dict[str, str]) -> str:
    # Plain string surgery so that the rest of the URL (query options) stays byte for byte.
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in schemes:
        known = ", ".join(sorted({s.split("+")[0] for s in schemes}))
        raise ValueError(f"unsupported database URL {scheme}://...; use one of: {known}")
    return f"{schemes[scheme.lower()]}://{rest}"


def sync_url(url: str) -> str:
    """The URL for a synchronous engine (migrations, schema checks)."""
    return _map_scheme(url, _SYNC_SCHEMES)


def async_url(url: str) -> str:
    """The URL for the async engine used at run time."""
    return _map_scheme(url, _ASYNC_SCHEMES)


def _is_sqlite(url: str) -> bool:
    return url.partition("://")[0].lower().startswith("sqlite")


def _sqlite_path(url: str) -> Path | None:
    database = make_url(sync_url(url)).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def _sync_engine(url: str) -> sa.Engine:
    return sa.create_engine(sync_url(url), poolclass=NullPool)


def current_revision(url: str) -> str | None:
    """The database's schema revision, or None when it has never been migrated."""
    path = _sqlite_path(url) if _is_sqlite(url) else None
    if path is not None and not path.exists():
        return None  # connecting would create an empty file as a side effect
    engine = _sync_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def _backup_sqlite(path: Path, revision: str | None) -> Path:
    target = path.with_name(f"{path.name}.bak-{revision or 'base'}")
    n = 1
    while target.exists():  # never overwrite an earlier backup: it may be the only good copy
        target = path.with_name(f"{path.name}.bak-{revision or 'base'}.{n}")
        n += 1
    # The backup API copies a consistent snapshot, WAL contents included.
    src, dst = sqlite3.connect(path), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return target


def _has_tables(conn: sa.Connection) -> bool:
    return bool(sa.inspect(conn).get_table_names())


def migrate(url: str, revision: str = "head") -> Path | None:
    """Upgrade the database to ``revision`` (default: head); idempotent.

    A non-empty SQLite database that is behind is first copied to ``<file>.bak-<revision>``;
    the path of that copy is returned (None when nothing was backed up).
    """
    path = _sqlite_path(url) if _is_sqlite(url) else None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    backup: Path | None = None
    engine = _sync_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # Replicas starting together: one migrates, the rest wait and then find head.
                # A session lock, released when NullPool really closes the connection.
                conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
            current = MigrationContext.configure(conn).get_current_revision()
            if current == head_revision() and revision == "head":
                return None
            if path is not None and path.exists() and _has_tables(conn):
                backup = _backup_sqlite(path, current)
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
    finally:
        engine.dispose()
    return backup


def downgrade(url: str, revision: str) -> None:
    """Downgrade the database to ``revision`` ("base" removes every table)."""
    engine = _sync_engine(url)
    try:
        with engine.connect() as conn:
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
            conn.commit()
    finally:
        engine.dispose()


def check_schema(url: str) -> None:
    """Raise SchemaMismatch unless the database is at this code's head revision."""
    current, head = current_revision(url), head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaMismatch(
            f"the database has no cohub schema yet (expected revision {head}); "
            f"create it with `{UPGRADE_COMMAND}`"
        )
    known = {s.revision for s in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}
    if current not in known:
        raise SchemaMismatch(
            f"the database schema is at revision {current}, which this cohub does not know "
            f"(its newest is {head}); the database was upgraded by a newer cohub: upgrade cohub"
        )
    raise SchemaMismatch(
        f"the database schema is at revision {current} but this cohub needs {head}; "
        f"run `{UPGRADE_COMMAND}` (SQLite databases are backed up first)"
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    try:
        # WAL lets readers run during a write; busy_timeout waits for a writer's lock
        # instead of failing at once; NORMAL is durable enough with WAL and much faster.
        for pragma in (
            "journal_mode=WAL",
            "foreign_keys=ON",
            "busy_timeout=5000",
            "synchronous=NORMAL",
        ):
            cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


class Database:
    """The async engine for one database. Use as ``async with Database(url) as db:`` or call
    :meth:`close` when done."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(async_url(url), echo=echo)
        if _is_sqlite(url):
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self.engine.dialect.name

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection without an implicit commit (reads; or commit yourself)."""
        async with self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed on success and rolled back on error."""
        async with self.engine.begin() as conn:
            yield conn

    async def ping(self) -> bool:
        """True when the database answers ``SELECT 1`` within a couple of seconds."""
        try:
            async with asyncio.timeout(_PING_TIMEOUT_S), self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
            return True
        except (TimeoutError, OSError, sa.exc.SQLAlchemyError):
            return False

    async def close(self) -> None:
        await self.engine.dispose()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
