"""Servers and helpers for the /api/v2 tests.

``site`` is a second real server with a base path (/hub/), a first admin from
COHUB_ADMIN_EMAIL/COHUB_ADMIN_PASSWORD and SMTP pointed at a real aiosmtpd server on loopback.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiosmtpd.controller import Controller

from tests.conftest import Server, free_port, start_server, stop_server

ADMIN_EMAIL = "root@example.com"
ADMIN_PASSWORD = "the admin password"


@dataclass
class Mailbox:
    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture(scope="session")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def fresh_database(tmp: Path) -> tuple[str, str | None]:
    """A database URL for one extra server, and the PostgreSQL schema to drop (if any)."""
    target = os.environ.get("COHUB_TEST_DB", "sqlite")
    if not target.startswith("postgresql"):
        return f"sqlite:///{tmp / 'cohub.sqlite3'}", None
    plain = target.replace("postgresql+psycopg://", "postgresql://").split("?")[0]
    schema = f"cohub_n_{secrets.token_hex(4)}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{plain}?options=-csearch_path%3D{schema}", schema


def drop_schema(schema: str | None) -> None:
    if schema is None:
        return
    target = os.environ["COHUB_TEST_DB"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(target.split("?")[0], autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@dataclass
class Site:
    server: Server
    base: str  # the URL up to and including the base path, e.g. http://127.0.0.1:1234/hub/
    mailbox: Mailbox


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory, mailbox: tuple[Mailbox, int]) -> Iterator[Site]:
    box, smtp_port = mailbox
    data_dir = tmp_path_factory.mktemp("site")
    db_url, schema = fresh_database(data_dir)
    port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COHUB_ADMIN_EMAIL", ADMIN_EMAIL)
        mp.setenv("COHUB_ADMIN_PASSWORD", ADMIN_PASSWORD)
        srv = start_server(
            data_dir,
            db_url,
            "--base-path",
            "/hub/",
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            str(smtp_port),
            "--public-url",
            f"http://127.0.0.1:{port}/hub/",
            port=port,
        )
    try:
        yield Site(srv, f"{srv.url}/hub/", box)
    finally:
        stop_server(srv)
        drop_schema(schema)


def api(base: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
    """POST a JSON body to ``<base>api/v2/<path>`` (or another path under base)."""
    url = base + (path if path.startswith("api/") else "api/v2/" + path)
    return httpx.post(url, json={} if body is None else body, timeout=30, **kw)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_email() -> str:
    return f"u-{uuid.uuid4().hex[:10]}@example.com"
