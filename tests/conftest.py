"""Shared fixtures. The suite runs once per database: COHUB_TEST_DB=sqlite (default) or a
postgresql:// URL. For PostgreSQL every test session gets its own schema, dropped at the end,
so runs never see each other's rows."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest


def _test_db() -> str:
    return os.environ.get("COHUB_TEST_DB", "sqlite")


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str | None]:
    """A PostgreSQL URL pinned to a fresh schema, or None when testing on SQLite."""
    target = _test_db()
    if not target.startswith("postgresql"):
        yield None
        return
    schema = f"cohub_test_{os.getpid()}_{secrets.token_hex(3)}"
    plain = target.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in target else "?"
    try:
        yield f"{target}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def db_url(pg_schema_url: str | None, tmp_path: Path) -> Iterator[str]:
    """A database URL for one test: a fresh SQLite file, or a fresh PostgreSQL schema."""
    if pg_schema_url is None:
        yield f"sqlite:///{tmp_path / 'test.sqlite3'}"
        return
    plain = pg_schema_url.split("?")[0].replace("postgresql+psycopg://", "postgresql://")
    schema = f"cohub_t_{secrets.token_hex(4)}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{plain}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
