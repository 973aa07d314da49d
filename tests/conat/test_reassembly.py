"""What a subscriber holds of unfinished chunked messages stays bounded, end to end: a raw
publisher sends first chunks (the most a router lets through, ~8 MB) that never get a last
one, to a Client subscribed on a real `cohub serve`."""

from __future__ import annotations

import asyncio
import time

import msgpack
import pytest

from cohub.conat import codec
from cohub.conat.client import Client
from cohub.conat.codec import Assembler
from cohub.conat.protocol import CHUNK_SIZE, PARTIAL_MESSAGE_MAX_BYTES
from tests.conftest import Server, User

pytestmark = pytest.mark.asyncio


def _assembler(client: Client, subject: str) -> Assembler:
    return client._interests[subject].assembler


async def _until(predicate, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(120)
async def test_unfinished_big_chunks_are_capped(server: Server, user: User, connect) -> None:  # type: ignore[no-untyped-def]
    subscriber = await connect(server, {"remember_me": user.cookie})
    publisher = await connect(server, {"remember_me": user.cookie})
    subject = f"account.{user.account_id}.flood"
    sub = await subscriber.subscribe(subject)
    chunk = bytes(CHUNK_SIZE)
    flood = PARTIAL_MESSAGE_MAX_BYTES // CHUNK_SIZE + 3  # well past the cap
    for i in range(flood):
        ack = await publisher.sio.call("publish", [subject, f"f{i}", 0, 0, 0, chunk], timeout=30)
        assert ack == {"count": 1}
    # a marker behind the flood: once it arrives, every first chunk has been fed
    assert (await publisher.publish(subject, "after the flood")).count == 1
    assert (await sub.next(timeout=30)).data == "after the flood"
    assembler = _assembler(subscriber, subject)
    assert assembler.held_bytes <= PARTIAL_MESSAGE_MAX_BYTES
    assert len(assembler) == PARTIAL_MESSAGE_MAX_BYTES // CHUNK_SIZE
    assert assembler.dropped == flood - len(assembler)
    # the newest message can still be finished; the oldest was dropped
    for msg_id in ("f0", f"f{flood - 1}"):
        ack = await publisher.sio.call("publish", [subject, msg_id, 1, 1, 0, b"\x00"], timeout=30)
        assert ack == {"count": 1}
    msg = await sub.next(timeout=30)
    assert msg.raw == chunk + b"\x00"
    assert (await publisher.publish(subject, "done")).count == 1
    assert (await sub.next(timeout=30)).data == "done"  # nothing came from f0


class _Clock:
    """time.monotonic, moved on by ``offset``: the codec's clock in this test."""

    offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


@pytest.mark.timeout(60)
async def test_stale_partial_expires_without_more_chunks(  # type: ignore[no-untyped-def]
    server: Server, user: User, connect, monkeypatch
) -> None:
    """A first chunk that is never followed goes after 2 min by the client's own timer,
    even if nothing more arrives on that subscription."""
    clock = _Clock()
    monkeypatch.setattr(codec, "time", clock)
    subscriber = await connect(server, {"remember_me": user.cookie})
    publisher = await connect(server, {"remember_me": user.cookie})
    subject = f"account.{user.account_id}.stale"
    sub = await subscriber.subscribe(subject)
    frame = [subject, "lonely", 0, 0, 0, msgpack.packb("first of many")]
    assert await publisher.sio.call("publish", frame, timeout=10) == {"count": 1}
    assembler = _assembler(subscriber, subject)
    await _until(lambda: len(assembler) == 1, timeout=10)
    clock.offset = 110.0
    await asyncio.sleep(5.5)  # one pass of the client's timer: not yet 2 min old
    assert len(assembler) == 1
    clock.offset = 125.0
    await _until(lambda: len(assembler) == 0, timeout=10)
    assert assembler.held_bytes == 0
    # its last chunk now finds nothing to finish
    frame = [subject, "lonely", 1, 1, 0, msgpack.packb("last")]
    assert await publisher.sio.call("publish", frame, timeout=10) == {"count": 1}
    assert (await publisher.publish(subject, "next")).count == 1
    assert (await sub.next(timeout=10)).data == "next"
