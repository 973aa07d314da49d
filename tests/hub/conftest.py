"""Hub API functions called in-process: a migrated database and a Context per caller (no
sockets; the Conat parts are in-memory fakes)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from cohub.db.accounts import create_account
from cohub.db.engine import Database, migrate
from cohub.hub import api
from cohub.hub.context import ApiError, Caller, Context


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    migrate(db_url)
    database = Database(db_url)
    try:
        yield database
    finally:
        await database.close()


class Hub:
    """Calls hub API functions the way the service does, as a given caller."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.notified: list[tuple[str, Any]] = []
        self.requests: list[tuple[str, Any]] = []
        self.project_api: Callable[[str, Any], Awaitable[Any]] | None = None

    def context(self, kind: str, ident: str) -> Context:
        async def notify(subject: str, data: Any) -> None:
            self.notified.append((subject, data))

        async def request(subject: str, data: Any, timeout: float) -> Any:
            from cohub.conat.errors import NoSubscribers

            self.requests.append((subject, data))
            if self.project_api is None:
                raise NoSubscribers(f"no subscribers matching '{subject}'")
            return await self.project_api(subject, data)

        return Context(self.db, Caller(kind, ident), notify, request)  # type: ignore[arg-type]

    async def call(self, who: str, name: str, *args: Any, kind: str = "account") -> Any:
        return await api.call(self.context(kind, who), name, list(args))

    async def error(self, who: str, name: str, *args: Any, kind: str = "account") -> ApiError:
        with pytest.raises(ApiError) as e:
            await self.call(who, name, *args, kind=kind)
        return e.value


@pytest.fixture
def hub(db: Database) -> Hub:
    return Hub(db)


@pytest.fixture
def make_account(db: Database) -> Callable[..., Awaitable[str]]:
    n = 0

    async def make(name: str = "", groups: list[str] | None = None) -> str:
        nonlocal n
        n += 1
        return await create_account(
            db,
            email=f"{name or 'user'}{n}@example.com",
            password="password123",
            first_name=name.capitalize() or "User",
            last_name=f"N{n}",
            groups=groups,
        )

    return make


@pytest.fixture(autouse=True)
def _fast_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests create many accounts; hashing is not what they test."""
    from argon2 import PasswordHasher

    from cohub.db import accounts

    monkeypatch.setattr(
        accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )
