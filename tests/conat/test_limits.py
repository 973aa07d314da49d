"""Router limits, publish options and operator visibility (issue 3)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from websockets.asyncio.client import connect as ws_connect

from cohub.conat.client import Client
from cohub.conat.errors import ConatError, NoSubscribers, TooMany
from cohub.conat.metrics import RouterCollector
from cohub.conat.protocol import CONNECTIONS_SUBJECT
from cohub.db.engine import Database
from tests.conat import inprocess
from tests.conat.inprocess import make_router
from tests.conftest import Server, sign_up


async def _raw_info(server: Server, cookie: str) -> tuple[object, dict]:
    """Open a raw socket.io connection and return (websocket, the info event's data)."""
    ws = await ws_connect(
        f"ws://127.0.0.1:{server.port}/conat/?EIO=4&transport=websocket",
        additional_headers={"Cookie": cookie},
        open_timeout=10,
    )
    await ws.recv()  # engine.io open
    await ws.send("40")
    while True:
        frame = await asyncio.wait_for(ws.recv(), 10)
        m = re.match(r'42(\d*)\["info",(.*)\]$', frame) if isinstance(frame, str) else None
        if m:
            if m.group(1):
                await ws.send(f"43{m.group(1)}[]")
            return ws, json.loads(m.group(2))


def _metric(server: Server, name: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    for line in text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.timeout(120)
async def test_per_user_connection_limit(server: Server) -> None:
    user = sign_up(server)
    cookie = f"remember_me={user.cookie}"
    sockets = []
    try:
        for _ in range(100):
            ws, info = await _raw_info(server, cookie)
            sockets.append(ws)
            assert info["user"] == {"account_id": user.account_id}
        ws, info = await _raw_info(server, cookie)
        sockets.append(ws)
        assert info["user"]["code"] == 429
        assert "per user limit of 100" in info["user"]["error"]
        # another user is not affected
        other = sign_up(server)
        ws, info = await _raw_info(server, f"remember_me={other.cookie}")
        sockets.append(ws)
        assert info["user"] == {"account_id": other.account_id}
    finally:
        await asyncio.gather(*(s.close() for s in sockets))
    # once they are closed the user may connect again
    await asyncio.sleep(0.3)
    ws, info = await _raw_info(server, cookie)
    await ws.close()
    assert info["user"] == {"account_id": user.account_id}


async def test_subscription_limit(server: Server, connect) -> None:  # type: ignore[no-untyped-def]
    user = sign_up(server)
    client = await connect(server, {"remember_me": user.cookie})
    items = [{"subject": f"account.{user.account_id}.s{i}", "queue": "q"} for i in range(501)]
    results = await client.sio.call("subscribe", items, timeout=30)
    assert all(r == {"status": "added"} for r in results[:500])
    assert results[500]["code"] == 429
    assert "limit of at most 500 subscriptions" in results[500]["error"]
    with pytest.raises(TooMany):
        await client.subscribe(f"account.{user.account_id}.more")
    # unsubscribing frees room again
    await client.sio.call("unsubscribe", [{"subject": items[0]["subject"]}], timeout=10)
    sub = await client.subscribe(f"account.{user.account_id}.more")
    assert (await client.publish(f"account.{user.account_id}.more", 1)).count == 1
    assert (await sub.next(timeout=5)).data == 1


async def test_wait_for_interest_publish(server: Server, connect) -> None:  # type: ignore[no-untyped-def]
    user = sign_up(server)
    a = await connect(server, {"remember_me": user.cookie})
    b = await connect(server, {"remember_me": user.cookie})
    subject = f"account.{user.account_id}.later"

    async def subscribe_later() -> None:
        await asyncio.sleep(2)
        sub = await b.subscribe(subject)
        assert (await sub.next(timeout=10)).data == "hello"

    later = asyncio.ensure_future(subscribe_later())
    started = time.monotonic()
    result = await a.publish(subject, "hello", wait_for_interest=True)
    assert result.count == 1
    assert time.monotonic() - started >= 1.5
    await later
    # a request with no listener fails at once; with wait_for_interest it waits for one
    with pytest.raises(NoSubscribers):
        await a.request(f"account.{user.account_id}.svc", 1, timeout=5)

    async def serve_later() -> None:
        await asyncio.sleep(2)

        async def echo(msg):  # type: ignore[no-untyped-def]
            return msg.data * 2

        await b.service(f"account.{user.account_id}.svc", echo)

    serving = asyncio.ensure_future(serve_later())
    reply = await a.request(
        f"account.{user.account_id}.svc", 21, timeout=10, wait_for_interest=True
    )
    assert reply.data == 42
    await serving


async def test_request_many(server: Server, connect) -> None:  # type: ignore[no-untyped-def]
    user = sign_up(server)
    a = await connect(server, {"remember_me": user.cookie})
    b = await connect(server, {"remember_me": user.cookie})
    subject = f"account.{user.account_id}.many"
    sub = await b.subscribe(subject)

    async def answer() -> None:
        async for msg in sub:
            for i in range(msg.data):
                await b.publish(msg.reply_to, i)
            if msg.data == 3:
                await b.publish(msg.reply_to, None)  # a null message ends the stream

    task = asyncio.ensure_future(answer())
    try:
        got = [m.data async for m in a.request_many(subject, 3, max_wait=2)]
        assert got == [0, 1, 2]
        capped = [m.data async for m in a.request_many(subject, 10, max_messages=4)]
        assert capped == [0, 1, 2, 3]
        started = time.monotonic()
        idle = [m.data async for m in a.request_many(subject, 2, max_wait=0.5)]
        assert idle == [0, 1]
        assert time.monotonic() - started < 5
    finally:
        task.cancel()


async def test_metrics_and_connection_stats(server: Server, connect) -> None:  # type: ignore[no-untyped-def]
    names = ("messages_in", "messages_out", "bytes_in", "bytes_out")
    before = {n: _metric(server, f"cohub_conat_{n}_total") for n in names}
    user = sign_up(server)
    client = await connect(server, {"remember_me": user.cookie})
    sub = await client.subscribe(f"account.{user.account_id}.m")
    payload = b"m" * 10_000  # large enough to stand out from the server's own traffic
    for _ in range(5):
        assert (await client.publish(f"account.{user.account_id}.m", raw=payload)).count == 1
    for _ in range(5):
        assert (await sub.next(timeout=5)).raw == payload
    after = {n: _metric(server, f"cohub_conat_{n}_total") for n in names}
    assert after["messages_in"] >= before["messages_in"] + 5
    assert after["messages_out"] >= before["messages_out"] + 5
    assert after["bytes_in"] >= before["bytes_in"] + 5 * len(payload)
    assert after["bytes_out"] >= before["bytes_out"] + 5 * len(payload)
    assert _metric(server, "cohub_conat_connections") >= 1
    assert _metric(server, "cohub_conat_subscriptions") >= 1
    denials = _metric(server, "cohub_conat_denials_total")
    with pytest.raises(Exception, match="permission denied"):
        await client.subscribe("sys.conat.>")
    assert _metric(server, "cohub_conat_denials_total") == denials + 1

    # a hub asks the router for per-connection figures, which include the clients' reports
    await asyncio.sleep(5.5)  # one stats interval
    hub = await connect(server, {"hub_password": server.hub_password})
    reply = await hub.request(CONNECTIONS_SUBJECT, None, timeout=5)
    mine = [c for c in reply.data["connections"] if c["user"] == {"account_id": user.account_id}]
    assert mine and mine[0]["recv0"]["messages"] >= 5
    assert mine[0]["recv"]["messages"] >= 5 and mine[0]["subscriptions"] >= 1
    # an ordinary account may not ask
    with pytest.raises(Exception, match="permission denied"):
        await client.request(CONNECTIONS_SUBJECT, None, timeout=5)


# ---- limits at small values, on a router in this process ------------------------------------


@pytest.fixture
async def db(server: Server) -> AsyncIterator[Database]:
    """The test server's database, for a router run in this process."""
    async with Database(server.db_url) as database:
        yield database


async def test_router_connection_limit(server: Server, db: Database) -> None:
    """The per-router limit (10,000 in production) set to 3: the 4th connection gets 429 with
    a clear message, the others keep working, and a closed one frees its place."""
    router = make_router(db, hub_password="hub-secret", max_connections=3)
    users = [sign_up(server) for _ in range(4)]
    async with inprocess.serve(router) as url:
        clients = [Client(url, cookies={"remember_me": u.cookie}) for u in users[:3]]
        try:
            for c in clients:
                await c.connect()
            refused = Client(url, cookies={"remember_me": users[3].cookie}, reconnect=False)
            try:
                with pytest.raises(ConatError, match="global limit of 3 connections") as e:
                    await refused.connect(timeout=5)
                assert e.value.code == 429
            finally:
                await refused.close()
            subject = f"account.{users[0].account_id}.still"
            sub = await clients[0].subscribe(subject)
            assert (await clients[0].publish(subject, "fine")).count == 1
            assert (await sub.next(timeout=5)).data == "fine"
            await clients[2].close()
            deadline = time.monotonic() + 10
            while router.connection_count > 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            late = Client(url, cookies={"remember_me": users[3].cookie})
            clients.append(late)
            await late.connect()
            assert late.info is not None
            assert late.info["user"] == {"account_id": users[3].account_id}
        finally:
            for c in clients:
                await c.close()


async def test_hub_subscription_limit(server: Server, db: Database) -> None:
    """Hubs get their own, larger subscription limit (15,000 in production; 5 here, against
    3 for an account): over it is 429 for the hub, and the hub keeps routing."""
    router = make_router(
        db, hub_password="hub-secret", max_subscriptions=3, max_hub_subscriptions=5
    )
    user = sign_up(server)
    async with inprocess.serve(router) as url:
        async with (
            Client(url, cookies={"hub_password": "hub-secret"}) as hub,
            Client(url, cookies={"remember_me": user.cookie}) as account,
        ):
            subs = [await hub.subscribe(f"svc.{i}") for i in range(5)]
            with pytest.raises(TooMany, match="limit of at most 5 subscriptions"):
                await hub.subscribe("svc.5")
            for i in range(3):
                await account.subscribe(f"account.{user.account_id}.{i}")
            with pytest.raises(TooMany, match="limit of at most 3 subscriptions"):
                await account.subscribe(f"account.{user.account_id}.3")
            assert (await hub.publish("svc.4", "ok")).count == 1
            assert (await subs[4].next(timeout=5)).data == "ok"
            subs[0].close()
            deadline = time.monotonic() + 10
            while router.subscription_count() > 7:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            extra = await hub.subscribe("svc.5")
            assert (await hub.publish("svc.5", "room again")).count == 1
            assert (await extra.next(timeout=5)).data == "room again"


def test_production_limits() -> None:
    router = make_router(None, hub_password="x")  # type: ignore[arg-type]
    assert router.max_connections == 10_000
    assert router.max_connections_per_user == 100
    assert router.max_subscriptions == 500
    assert router.max_hub_subscriptions == 15_000


async def test_metrics_are_valid_openmetrics(server: Server, db: Database) -> None:
    """Gauge and counter names must not clash once a counter's family drops ``_total``
    (OpenMetrics); prometheus_client's OpenMetrics parser refuses a clash."""
    router = make_router(db, hub_password="hub-secret")
    registry = CollectorRegistry()
    registry.register(
        RouterCollector(
            router.counters,
            lambda: router.connection_count,
            router.subscription_count,
            router.server_id,
        )
    )
    async with inprocess.serve(router) as url:
        async with Client(url, cookies={"hub_password": "hub-secret"}) as hub:
            sub = await hub.subscribe("m.x")
            await hub.publish("m.x", b"12345")
            await sub.next(timeout=5)
            text = openmetrics_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["cohub_conat_connections"].type == "gauge"
    assert families["cohub_conat_connections"].samples[0].value == 1
    assert families["cohub_conat_connections_accepted"].type == "counter"
    assert families["cohub_conat_subscriptions"].samples[0].value >= 1
    for name in ("messages_in", "messages_out", "bytes_in", "bytes_out"):
        family = families[f"cohub_conat_{name}"]
        assert family.type == "counter"
        total = [s for s in family.samples if s.name.endswith("_total")]
        assert total and total[0].value >= 1, name
