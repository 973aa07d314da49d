"""Persist fixtures: Conat clients on the session's server, and a server of our own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from cohub.conat.client import Client
from tests.conftest import Server, start_server, stop_server


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """connect(server, cookies) -> a signed-in Client, closed after the test."""
    clients: list[Client] = []

    async def make(server: Server, cookies: dict[str, str]) -> Client:
        client = Client(server.url, cookies=cookies)
        clients.append(client)
        await client.connect()
        return client

    yield make
    for c in clients:
        await c.close()


@pytest.fixture(scope="module")
def persist_server(
    pg_schema_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server of our own (its persist processes get killed): two persist processes."""
    data_dir = tmp_path_factory.mktemp("persist")
    db = pg_schema_url or f"sqlite:///{data_dir / 'cohub.sqlite3'}"
    srv = start_server(data_dir, db, "--persist-count", "2", "--persist-server-id-prefix", "test")
    yield srv
    stop_server(srv)
