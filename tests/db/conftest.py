"""Fixtures for the database tests: a migrated database per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cohub.db.accounts import create_account
from cohub.db.engine import Database, migrate


@pytest.fixture
def migrated_url(db_url: str) -> str:
    migrate(db_url)
    return db_url


@pytest.fixture
async def db(migrated_url: str) -> AsyncIterator[Database]:
    database = Database(migrated_url)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def account_id(db: Database) -> str:
    return await create_account(db, email="owner@example.com", password="owner-password")
