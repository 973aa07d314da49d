"""Site statistics: computed by hub-stats every few minutes, served at /stats."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cohub.db.engine import Database
from cohub.db.models import accounts, hub_servers, projects, stats

_CREATED_WINDOWS = {
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
_ACTIVE_WINDOWS = {"5min": timedelta(minutes=5), **_CREATED_WINDOWS}


async def _count(
    conn: AsyncConnection, table: sa.FromClause, *where: sa.ColumnElement[bool]
) -> int:
    return int(await conn.scalar(sa.select(sa.func.count()).select_from(table).where(*where)) or 0)


async def _windows(
    conn: AsyncConnection,
    column: sa.Column[datetime],
    windows: dict[str, timedelta],
    now: datetime,
) -> dict[str, int]:
    return {
        label: await _count(conn, column.table, column >= now - span)
        for label, span in windows.items()
    }


async def compute_stats(db: Database) -> dict[str, Any]:
    """Current figures: totals, recent sign-ups and activity, hub servers, running projects."""
    now = datetime.now(UTC)
    async with db.connect() as conn:
        servers = await conn.execute(
            sa.select(hub_servers.c.host, hub_servers.c.port, hub_servers.c.clients)
            .where(sa.or_(hub_servers.c.expire.is_(None), hub_servers.c.expire > now))
            .order_by(hub_servers.c.host, hub_servers.c.port)
        )
        return {
            "accounts": await _count(conn, accounts),
            "projects": await _count(conn, projects),
            "accounts_created": await _windows(conn, accounts.c.created, _CREATED_WINDOWS, now),
            "projects_created": await _windows(conn, projects.c.created, _CREATED_WINDOWS, now),
            "accounts_active": await _windows(conn, accounts.c.last_active, _ACTIVE_WINDOWS, now),
            "projects_edited": await _windows(conn, projects.c.last_edited, _ACTIVE_WINDOWS, now),
            "hub_servers": [dict(row._mapping) for row in servers],
            "running_projects": await _count(
                conn,
                projects,
                projects.c.state["state"].as_string() == "running",
                projects.c.deleted.is_(False),
            ),
        }


async def register_hub_server(
    db: Database, host: str, port: int, clients: int, ttl: timedelta
) -> None:
    """Say that a hub API server runs on host:port with ``clients`` recent clients, until
    ``ttl`` from now (the server refreshes it well before then; a dead one drops out)."""
    async with db.begin() as conn:
        where = (hub_servers.c.host == host, hub_servers.c.port == port)
        await conn.execute(hub_servers.delete().where(*where))
        await conn.execute(
            hub_servers.insert().values(
                host=host, port=port, clients=clients, expire=datetime.now(UTC) + ttl
            )
        )


async def unregister_hub_server(db: Database, host: str, port: int) -> None:
    async with db.begin() as conn:
        await conn.execute(
            hub_servers.delete().where(hub_servers.c.host == host, hub_servers.c.port == port)
        )


async def insert_stats(db: Database, data: dict[str, Any]) -> None:
    """Store one snapshot of figures (as returned by compute_stats)."""
    async with db.begin() as conn:
        await conn.execute(
            stats.insert().values(id=str(uuid.uuid4()), time=datetime.now(UTC), data=data)
        )


async def newest_stats(db: Database) -> dict[str, Any] | None:
    """The newest snapshot as ``{"id", "time" (ISO 8601), **figures}``, or None."""
    async with db.connect() as conn:
        row = (await conn.execute(sa.select(stats).order_by(stats.c.time.desc()).limit(1))).first()
    if row is None:
        return None
    return {**row.data, "id": row.id, "time": row.time.isoformat()}
