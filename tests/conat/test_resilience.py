"""Clients survive a router restart: iterators keep going, requests end with a reply or an error."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cohub.conat.client import Client
from cohub.conat.errors import ConatError
from tests.conftest import sign_up, start_server, stop_server


async def _wait_connected(client: Client, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (client.connected and client.identity is not None):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("client did not reconnect")
        await asyncio.sleep(0.05)


@pytest.mark.timeout(120)
async def test_router_restart_keeps_subscriptions(tmp_path: Path, db_url: str) -> None:
    srv = start_server(tmp_path / "d", db_url)
    port = srv.port
    user = sign_up(srv)
    subject = f"account.{user.account_id}.events"
    subscriber = Client(srv.url, cookies={"remember_me": user.cookie})
    publisher = Client(srv.url, cookies={"remember_me": user.cookie})
    try:
        await subscriber.connect()
        await publisher.connect()
        sub = await subscriber.subscribe(subject)
        received: list[int] = []

        async def consume() -> None:
            async for msg in sub:
                received.append(msg.data)

        consumer = asyncio.ensure_future(consume())
        assert (await publisher.publish(subject, 1)).count == 1

        stop_server(srv)
        await asyncio.sleep(0.5)
        srv = start_server(tmp_path / "d", db_url, port=port)
        await _wait_connected(subscriber)
        await _wait_connected(publisher)
        # the subscriber re-syncs after its info; wait until the router knows the interest
        assert await publisher.wait_for_interest(subject, 20)
        assert (await publisher.publish(subject, 2)).count == 1
        for _ in range(100):
            if received == [1, 2]:
                break
            await asyncio.sleep(0.05)
        assert received == [1, 2]
        assert not consumer.done(), "the iterator must not end across a restart"
        consumer.cancel()
    finally:
        await subscriber.close()
        await publisher.close()
        stop_server(srv)


@pytest.mark.timeout(120)
async def test_request_in_flight_during_restart_ends(tmp_path: Path, db_url: str) -> None:
    srv = start_server(tmp_path / "d", db_url)
    port = srv.port
    user = sign_up(srv)
    client = Client(srv.url, cookies={"remember_me": user.cookie})
    responder = Client(srv.url, cookies={"remember_me": user.cookie})
    try:
        await client.connect()
        await responder.connect()
        subject = f"account.{user.account_id}.slow"

        async def slow(msg):  # type: ignore[no-untyped-def]
            await asyncio.sleep(2)
            return "late"

        await responder.service(subject, slow)
        request = asyncio.ensure_future(client.request(subject, 1, timeout=8))
        await asyncio.sleep(0.3)
        stop_server(srv)
        srv = start_server(tmp_path / "d", db_url, port=port)
        try:
            result = await asyncio.wait_for(request, 20)
            assert result.data == "late"  # a reply that made it through the new router
        except ConatError as e:
            assert e.code in (408, 503, -1)  # or a clear error; never a hang
    finally:
        await client.close()
        await responder.close()
        stop_server(srv)
