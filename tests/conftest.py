"""Shared fixtures. The suite runs once per database: COHUB_TEST_DB=sqlite (default) or a
postgresql:// URL. For PostgreSQL every test session gets its own schema, dropped at the end,
so runs never see each other's rows."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from cohub.conat.client import Client


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


# ---- a real server ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    port: int
    data_dir: Path
    db_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def hub_password(self) -> str:
        return (self.data_dir / "secrets" / "conat-password").read_text().strip()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(data_dir: Path, db_url: str, *extra: str, port: int | None = None) -> Server:
    """Start ``cohub serve`` in a subprocess and wait until /alive answers and, when it runs
    the hub API, until that answers too."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "cohub",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--db-url",
        db_url,
        *extra,
    ]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", port, data_dir, db_url, process, log_path)
    base = extra[extra.index("--base-path") + 1].strip("/") + "/" if "--base-path" in extra else ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cohub serve exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/{base}alive", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    else:
        process.kill()
        process.wait(5)
        raise RuntimeError(f"cohub serve did not come up:\n{server.log()}")
    roles = [extra[i + 1] for i, a in enumerate(extra) if a == "--role"]
    if not roles or {"hub-conat-api", "hub-conat-router"} <= set(roles):
        # /alive answers once the server listens; the hub API subscribes a moment later
        _wait_for_hub_api(server, base, deadline)
    return server


def _wait_for_hub_api(server: Server, base: str, deadline: float) -> None:
    import asyncio
    import threading

    async def ping() -> bool:
        url = f"{server.url}/{base}".rstrip("/")
        try:
            async with Client(url, cookies={_hub_cookie(base): server.hub_password}) as nc:
                while time.monotonic() < deadline:
                    try:
                        await nc.call(f"hub.account.{uuid.UUID(int=0)}.api", "system.ping")
                        return True
                    except Exception:
                        await asyncio.sleep(0.1)
        except Exception:
            return False
        return False

    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(ping())))  # any loop
    thread.start()
    thread.join()
    if not result or not result[0]:
        raise RuntimeError(f"the hub API did not answer after start:\n{server.log()}")


def _hub_cookie(base: str) -> str:
    from cohub.cookies import HUB_PASSWORD, cookie_name

    return cookie_name("/" + base if base else "/", HUB_PASSWORD)


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(5)


@pytest.fixture(scope="session")
def server(pg_schema_url: str | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("server")
    db = pg_schema_url or f"sqlite:///{data_dir / 'cohub.sqlite3'}"
    srv = start_server(data_dir, db)
    yield srv
    stop_server(srv)
    if srv.process.returncode not in (0, -15):
        print(srv.log())


@dataclass
class User:
    account_id: str
    email: str
    password: str
    cookie: str  # the remember_me value


def sign_up(server: Server, email: str | None = None, password: str = "correct horse 1") -> User:
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    r = httpx.post(
        server.url + "/api/v2/auth/sign-up",
        json={
            "email": email,
            "password": password,
            "firstName": "Test",
            "lastName": "User",
            "terms": True,
        },
    )
    assert r.status_code == 200, r.text
    return User(r.json()["account_id"], email, password, r.cookies["remember_me"])


@pytest.fixture
def user(server: Server) -> User:
    return sign_up(server)


@pytest.fixture
def other_user(server: Server) -> User:
    return sign_up(server)


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """connect(server, cookies, **options) -> a signed-in Conat client, closed after the test."""
    clients: list[Client] = []

    async def make(server: Server, cookies: dict[str, str], **options: Any) -> Client:
        client = Client(server.url, cookies=cookies, **options)
        clients.append(client)
        await client.connect()
        return client

    yield make
    for c in clients:
        await c.close()
