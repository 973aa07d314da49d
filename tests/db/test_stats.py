from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from cohub.db import stats as st
from cohub.db.accounts import create_account
from cohub.db.engine import Database
from cohub.db.models import accounts, hub_servers, projects
from cohub.db.projects import create_project


async def test_empty_database(db: Database) -> None:
    figures = await st.compute_stats(db)
    assert figures["accounts"] == 0
    assert figures["projects"] == 0
    assert figures["accounts_created"] == {"1h": 0, "1d": 0, "7d": 0, "30d": 0}
    assert figures["projects_edited"] == {"5min": 0, "1h": 0, "1d": 0, "7d": 0, "30d": 0}
    assert figures["hub_servers"] == []
    assert figures["running_projects"] == 0
    assert await st.newest_stats(db) is None


async def test_figures(db: Database) -> None:
    now = datetime.now(UTC)
    ages = [timedelta(minutes=1), timedelta(minutes=30), timedelta(hours=5), timedelta(days=3)]
    ages.append(timedelta(days=60))
    ids = []
    for i, age in enumerate(ages):
        account_id = await create_account(db, email=f"u{i}@example.com", password=None)
        project_id = await create_project(db, owner_id=account_id, title=f"p{i}")
        ids.append(project_id)
        async with db.begin() as conn:
            await conn.execute(
                accounts.update()
                .where(accounts.c.account_id == account_id)
                .values(created=now - age, last_active=now - age)
            )
            await conn.execute(
                projects.update()
                .where(projects.c.project_id == project_id)
                .values(created=now - age, last_edited=now - age)
            )
    async with db.begin() as conn:
        states = ["running", "running", "opened", None, "running"]
        for project_id, state in zip(ids, states, strict=True):
            value = {"state": state, "ip": "10.0.0.1"} if state else None
            await conn.execute(
                projects.update().where(projects.c.project_id == project_id).values(state=value)
            )
        await conn.execute(  # a deleted project does not count as running
            projects.update().where(projects.c.project_id == ids[-1]).values(deleted=True)
        )
        await conn.execute(
            sa.insert(hub_servers),
            [
                {"host": "hub-b", "port": 5000, "clients": 7, "expire": now + timedelta(minutes=1)},
                {"host": "hub-a", "port": 5000, "clients": 3, "expire": None},
                {"host": "gone", "port": 5000, "clients": 9, "expire": now - timedelta(minutes=1)},
            ],
        )

    figures = await st.compute_stats(db)

    assert figures["accounts"] == 5
    assert figures["projects"] == 5
    assert figures["accounts_created"] == {"1h": 2, "1d": 3, "7d": 4, "30d": 4}
    assert figures["projects_created"] == {"1h": 2, "1d": 3, "7d": 4, "30d": 4}
    expected_active = {"5min": 1, "1h": 2, "1d": 3, "7d": 4, "30d": 4}
    assert figures["accounts_active"] == expected_active
    assert figures["projects_edited"] == expected_active
    assert figures["hub_servers"] == [
        {"host": "hub-a", "port": 5000, "clients": 3},
        {"host": "hub-b", "port": 5000, "clients": 7},
    ]
    assert figures["running_projects"] == 2


async def test_newest_stats(db: Database) -> None:
    await st.insert_stats(db, {"accounts": 1})
    await st.insert_stats(db, {"accounts": 2})
    newest = await st.newest_stats(db)
    assert newest is not None
    assert newest["accounts"] == 2
    assert datetime.now(UTC) - datetime.fromisoformat(newest["time"]) < timedelta(minutes=1)
    assert isinstance(newest["id"], str)


async def test_hub_servers_register_refresh_and_expire(db: Database) -> None:
    await st.register_hub_server(db, "hub-a", 5000, 0, timedelta(seconds=90))
    await st.register_hub_server(db, "hub-b", 5000, 3, timedelta(seconds=90))
    await st.register_hub_server(db, "hub-a", 5000, 7, timedelta(seconds=90))  # a refresh
    servers = (await st.compute_stats(db))["hub_servers"]
    assert servers == [
        {"host": "hub-a", "port": 5000, "clients": 7},
        {"host": "hub-b", "port": 5000, "clients": 3},
    ]
    await st.register_hub_server(db, "hub-b", 5000, 3, timedelta(seconds=-1))  # went quiet
    await st.unregister_hub_server(db, "hub-a", 5000)
    assert (await st.compute_stats(db))["hub_servers"] == []
