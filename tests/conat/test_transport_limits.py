"""The socket.io transport under abuse, on a real router in this process: the binary
attachments one packet may make the server buffer are bounded by about max_payload, and a
client's socket.io disconnect gets a proper websocket close (1000), not a dropped TCP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from websockets.exceptions import ConnectionClosed

from cohub.conat.client import Client
from cohub.conat.protocol import MAX_PAYLOAD
from cohub.conat.transport import ATTACHMENT_SLACK
from cohub.db.engine import Database
from tests.conat import inprocess
from tests.conat.inprocess import make_router
from tests.conat.test_bad_input import RawSocket
from tests.conftest import Server, User, sign_up


@pytest.fixture
async def db(server: Server) -> AsyncIterator[Database]:
    async with Database(server.db_url) as database:
        yield database


async def _raw(url: str, user: User, **options: Any) -> RawSocket:
    port = urlsplit(url).port
    return await RawSocket.open(
        SimpleNamespace(port=port), f"remember_me={quote(user.cookie, safe='')}", **options
    )


async def _closed_code(raw: RawSocket, timeout: float = 10) -> int | None:
    """Read until the server closes the websocket; its close code (TimeoutError if it stays
    open)."""
    try:
        while True:
            await raw.recv(timeout)
    except ConnectionClosed as e:
        return e.rcvd.code if e.rcvd is not None else None


async def _round_trip(client: Client, user: User, payload: object) -> None:
    subject = f"account.{user.account_id}.fine"
    sub = await client.subscribe(subject)
    assert (await client.publish(subject, payload)).count == 1
    assert (await sub.next(timeout=10)).data == payload
    sub.close()


async def test_pending_attachments_are_bounded_by_max_payload(server: Server, db: Database) -> None:
    """16 placeholders announced, then 4 MB frames: the third one takes the packet over
    max_payload + slack and closes that socket (1002), on each of three sockets at once; a
    well-behaved client on the same router keeps working."""
    assert ATTACHMENT_SLACK < 4_000_000
    router = make_router(db, hub_password="hub-secret")
    flooder, other = sign_up(server), sign_up(server)
    async with inprocess.serve(router) as url:
        sockets = [await _raw(url, flooder) for _ in range(3)]
        try:
            subject = f"account.{flooder.account_id}.flood"
            placeholders = [{"_placeholder": True, "num": i} for i in range(16)]
            frame = [subject, "f-1", 0, 1, 0, placeholders[0], {"more": placeholders[1:]}]
            big = b"\x00" * 4_000_000

            async def flood(raw: RawSocket) -> int | None:
                await raw.send(f"4516-{raw.next_id()}" + json.dumps(["publish", frame]))
                for _ in range(3):
                    await raw.send(big)
                return await _closed_code(raw)

            assert await asyncio.gather(*(flood(s) for s in sockets)) == [1002, 1002, 1002]
            deadline = time.monotonic() + 10
            while router.connection_count:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            async with Client(url, cookies={"remember_me": other.cookie}) as client:
                await _round_trip(client, other, {"still": "fine"})
        finally:
            for s in sockets:
                await s.close()


async def test_a_full_size_chunk_still_passes(server: Server, db: Database) -> None:
    """One attachment of exactly max_payload (8 MB) is a normal publish."""
    router = make_router(db, hub_password="hub-secret")
    user = sign_up(server)
    async with inprocess.serve(router) as url:
        raw = await _raw(url, user)
        try:
            async with Client(url, cookies={"remember_me": user.cookie}) as client:
                subject = f"account.{user.account_id}.big"
                sub = await client.subscribe(subject)
                chunk = b"\xc4" + bytes(range(256)) * (MAX_PAYLOAD // 256)
                chunk = chunk[:MAX_PAYLOAD]
                assert len(chunk) == MAX_PAYLOAD
                assert await raw.publish(subject, chunk) == {"count": 1}
                got = await sub.next(timeout=30)
                assert got.raw == chunk
            assert await raw.outcome() == "alive"
        finally:
            await raw.close()


@pytest.mark.parametrize("goodbye", ["41", "1"], ids=["socketio-disconnect", "engineio-close"])
async def test_a_client_disconnect_gets_a_clean_close(
    server: Server, db: Database, goodbye: str
) -> None:
    router = make_router(db, hub_password="hub-secret")
    user = sign_up(server)
    async with inprocess.serve(router) as url:
        raw = await _raw(url, user)
        try:
            await raw.send(goodbye)
            assert await _closed_code(raw) == 1000
            await asyncio.wait_for(raw.ws.wait_closed(), 5)
            assert raw.ws.close_code == 1000
        finally:
            await raw.close()
        deadline = time.monotonic() + 10
        while router.connection_count:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)


async def test_a_client_that_stops_reading_cannot_pile_up_frames(
    server: Server, db: Database
) -> None:
    """A client subscribes to its own subject, stops reading, and keeps publishing 8 MB chunks:
    the router blocks writing the deliveries, and what the websocket layer holds of that
    client's unread input stays within a few frames, not 64 (512 MB)."""
    router = make_router(db, hub_password="hub-secret")
    user, other = sign_up(server), sign_up(server)
    async with inprocess.serve(router) as url:
        raw = await _raw(url, user, max_queue=1)  # the client itself buffers one message
        try:
            subject = f"account.{user.account_id}.echo"
            assert await raw.call("subscribe", {"subject": subject, "queue": "q"}) == {
                "status": "added"
            }
            (session,) = router._sessions.values()
            protocol = session.conn._send.__self__  # uvicorn's protocol object for this socket
            chunk = b"\x01" * MAX_PAYLOAD
            sent = 0

            async def publish_forever() -> None:
                nonlocal sent
                while sent < 100:
                    frame = [subject, f"e-{sent}", 0, 1, 0, {"_placeholder": True, "num": 0}]
                    await raw.send(f"451-{raw.next_id()}" + json.dumps(["publish", frame]))
                    await raw.send(chunk)
                    sent += 1

            def queued() -> int:
                messages = list(protocol.queue._queue)
                return sum(len(m.get("bytes") or m.get("text") or "") for m in messages)

            publisher = asyncio.ensure_future(publish_forever())
            try:
                # wait until the publisher is stuck: nothing more sent for a while
                last, still_since = -1, time.monotonic()
                while time.monotonic() - still_since < 1.5:
                    assert not publisher.done(), "the publisher was never held up"
                    if sent != last:
                        last, still_since = sent, time.monotonic()
                    await asyncio.sleep(0.1)
                assert sent < 100
                assert protocol.read_paused
                assert queued() <= 4 * MAX_PAYLOAD  # the high water plus the frames read with it
            finally:
                publisher.cancel()
        finally:
            raw.ws.transport.abort()  # a polite close would queue behind the unsent frames
            await raw.close()
        deadline = time.monotonic() + 10
        while router.connection_count:  # the router notices and lets go of it
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        async with Client(url, cookies={"remember_me": other.cookie}) as client:
            await _round_trip(client, other, "fine")
