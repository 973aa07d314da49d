"""Router limits, publish options and operator visibility (issue 3)."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect

from cohub.conat.errors import NoSubscribers, TooMany
from cohub.conat.protocol import CONNECTIONS_SUBJECT
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
    before_in = _metric(server, "cohub_conat_messages_in_total")
    user = sign_up(server)
    client = await connect(server, {"remember_me": user.cookie})
    sub = await client.subscribe(f"account.{user.account_id}.m")
    for i in range(5):
        await client.publish(f"account.{user.account_id}.m", i)
    for _ in range(5):
        await sub.next(timeout=5)
    assert _metric(server, "cohub_conat_messages_in_total") >= before_in + 5
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
