"""Conat clients connected to the session's real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from cohub.conat.client import Client


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """connect(server, cookies) -> a signed-in Client, closed after the test."""
    clients: list[Client] = []

    async def make(server, cookies: dict[str, str], **kw) -> Client:  # type: ignore[no-untyped-def]
        client = Client(server.url, cookies=cookies, **kw)
        clients.append(client)
        await client.connect()
        return client

    yield make
    for c in clients:
        await c.close()
