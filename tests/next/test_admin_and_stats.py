"""system.banUser over the hub API (on the ``site`` server: base path /hub/, a first admin)
closes the banned account's open Conat connection at once, and /stats lists the hub API
server that registered itself in hub_servers."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import socketio

from cohub.conat.client import Client
from cohub.conat.errors import ConatError
from tests.conftest import Server, start_server, stop_server
from tests.next.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    Site,
    api,
    drop_schema,
    fresh_database,
    new_email,
)

COOKIE = "%2Fhubremember_me"  # remember_me with the base path /hub/ as prefix


def _sign_up(site: Site) -> tuple[str, str]:
    r = api(
        site.base, "auth/sign-up", {"email": new_email(), "password": "password123", "terms": True}
    )
    assert r.status_code == 200, r.text
    return r.json()["account_id"], r.cookies[COOKIE]


def _admin_cookie(site: Site) -> tuple[str, str]:
    r = api(site.base, "auth/sign-in", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()["account_id"], r.cookies[COOKIE]


async def _hub(site: Site, cookie: str) -> Client:
    return await Client(site.server.url + "/hub", cookies={COOKIE: cookie}).connect()


class _Socket:
    """A plain python-socketio connection to /hub/conat that notes when the router ends it."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.gone = asyncio.Event()
        self.info: list[Any] = []
        self.sio.on("info", self.info.append)
        self.sio.on("disconnect", lambda *a: self.gone.set())


@pytest.fixture
async def open_socket() -> AsyncIterator[Any]:
    sockets: list[_Socket] = []

    async def make(site: Site, cookie: str) -> _Socket:
        s = _Socket()
        sockets.append(s)
        await s.sio.connect(
            site.server.url,
            headers={"Cookie": f"{COOKIE}={cookie}"},
            transports=["websocket"],
            socketio_path="hub/conat",
        )
        return s

    yield make
    for s in sockets:
        await s.sio.disconnect()


async def test_ban_closes_the_open_connection_at_once(site: Site, open_socket: Any) -> None:
    victim, victim_cookie = _sign_up(site)
    admin, admin_cookie = _admin_cookie(site)
    sock = await open_socket(site, victim_cookie)
    await asyncio.sleep(0.5)  # signed in: the info event arrived and nothing ended it
    assert sock.info and sock.info[0]["user"] == {"account_id": victim}, sock.info
    assert not sock.gone.is_set()
    client = await _hub(site, admin_cookie)
    try:
        await client.call(
            f"hub.account.{admin}.api", "system.banUser", {"account_id": victim, "banned": True}
        )
        # The periodic re-authentication comes much later (~76 s); the announcement makes the
        # router check now. The timeout is generous, not a speed claim.
        await asyncio.wait_for(sock.gone.wait(), 30)
        # the session is gone and sign-in is refused while banned
        r = api(site.base, "api/v2/projects/get", {}, cookies={COOKIE: victim_cookie})
        assert r.status_code == 401, r.text
        await client.call(
            f"hub.account.{admin}.api", "system.banUser", {"account_id": victim, "banned": False}
        )
    finally:
        await client.close()


async def test_only_admins_may_ban(site: Site) -> None:
    victim, _ = _sign_up(site)
    someone, cookie = _sign_up(site)
    client = await _hub(site, cookie)
    try:
        with pytest.raises(ConatError) as e:
            await client.call(
                f"hub.account.{someone}.api", "system.banUser", {"account_id": victim}
            )
        assert e.value.code == 403 and "only admins" in e.value.message
    finally:
        await client.close()


@pytest.fixture(scope="module")
def stats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own taking a statistics snapshot every half second: the first snapshot
    may come before hub-conat-api has registered (the roles start concurrently)."""
    data_dir = tmp_path_factory.mktemp("stats")
    db_url, schema = fresh_database(data_dir)
    srv = start_server(data_dir, db_url, "--stats-interval-s", "0.5")
    try:
        yield srv
    finally:
        stop_server(srv)
        drop_schema(schema)


def test_stats_lists_this_hub_server(stats_server: Server) -> None:
    me = {"host": socket.gethostname(), "port": stats_server.port}
    deadline = time.monotonic() + 30  # generous: a few snapshots, not a speed claim
    while True:
        r = httpx.get(stats_server.url + "/stats", timeout=30)
        assert r.status_code == 200, r.text
        servers = (r.json() or {}).get("hub_servers", [])
        if me in [{"host": s["host"], "port": s["port"]} for s in servers]:
            break
        assert time.monotonic() < deadline, f"{me} never showed up in /stats: {r.json()}"
        time.sleep(0.2)
    assert all(isinstance(s["clients"], int) and s["clients"] >= 0 for s in servers)
