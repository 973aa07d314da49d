"""Helpers for the project runner tests: hub API calls over a real Conat connection, the
project's home on disk, and waiting for a recorded state."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cohub.conat.client import Client
from cohub.conat.errors import ConatError
from tests.conftest import Server, User, sign_up, start_server, stop_server

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="project users need the hub to run as root")


@pytest.fixture(scope="session")
def server(pg_schema_url: str | None) -> Iterator[Server]:
    """These tests' own server: as root, with each project a user of its own (required, not
    'auto'), so every test here runs isolated. Its data dir is not under pytest's tmp dir,
    which is 0700: project users could not reach their homes through it."""
    data_dir = Path(tempfile.mkdtemp(prefix="cohub-projects-")) / "data"
    os.chmod(data_dir.parent, 0o755)  # mkdtemp makes it 0700
    db = pg_schema_url or f"sqlite:///{data_dir / 'cohub.sqlite3'}"
    srv = start_server(data_dir, db, *(["--project-isolation", "uid"] if ROOT else []))
    yield srv
    stop_server(srv)
    if srv.process.returncode not in (0, -15):
        print(srv.log())
    shutil.rmtree(data_dir.parent, ignore_errors=True)


class Hub:
    """Calls ``hub.account.<id>.api`` as one signed-in account."""

    def __init__(self, client: Client, user: User) -> None:
        self.client = client
        self.user = user

    async def __call__(self, name: str, **opts: Any) -> Any:
        subject = f"hub.account.{self.user.account_id}.api"
        # the hub API may still be subscribing right after the server came up
        reply = await self.client.request(
            subject, {"name": name, "args": [opts]}, timeout=60, wait_for_interest=True
        )
        data = reply.data
        # a hub API error is exactly {error, code}; a project's state may hold an "error" too
        if isinstance(data, dict) and "error" in data and set(data) <= {"error", "code"}:
            raise ConatError(data["error"], data.get("code"))
        return data

    async def error(self, name: str, **opts: Any) -> ConatError:
        with pytest.raises(ConatError) as e:
            await self(name, **opts)
        return e.value


@pytest.fixture
def hub_for(
    server: Server, connect: Callable[..., Awaitable[Client]]
) -> Callable[[User | None], Awaitable[Hub]]:
    async def make(user: User | None = None) -> Hub:
        user = user or sign_up(server)
        return Hub(await connect(server, {"remember_me": user.cookie}), user)

    return make


def home(server: Server, project_id: str) -> Path:
    return server.data_dir / "projects" / project_id


def secret(server: Server, project_id: str) -> str:
    return (home(server, project_id) / ".smc" / "secret_token").read_text()


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.1)


async def gone(pid: int, timeout: float = 20) -> bool:
    async def check() -> bool:
        return not alive(pid)

    return bool(await until(check, f"process {pid} to end", timeout))


def kill(pid: int) -> None:
    os.kill(pid, 9)
