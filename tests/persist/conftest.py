"""Persist fixtures: Conat clients on the session's server, and a server of our own."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

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


def persist_pid(server: Server, server_id: str, timeout: float = 20.0) -> int:
    """The pid of a running persist process (from its pid file)."""
    pid_file = server.data_dir / "run" / f"persist-{server_id}.pid"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, ValueError, ProcessLookupError):
            time.sleep(0.05)
    raise AssertionError(f"no running persist process {server_id}")


def kill_persist(server: Server, server_id: str) -> int:
    pid = persist_pid(server, server_id)
    os.kill(pid, signal.SIGKILL)
    return pid


def sync_dir(server: Server) -> Path:
    return server.data_dir / "sync"
