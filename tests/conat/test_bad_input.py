"""Hostile input to the Conat router, against a real `cohub serve` process.

Every case checks that the bad input is refused with an ``{error, code}`` ack (400 for malformed
input, 403 for a permission problem) or dropped, and that afterwards the same connection (when
it was not closed), a separate well-behaved client and ``GET /alive`` still work. The autouse
``clean_log`` fixture fails a test whose cases made the server log a traceback.

Two kinds of client are used: a raw python-socketio ``AsyncClient`` (any JSON-able event
payload, with acks) and ``RawSocket``, a websocket speaking engine.io/socket.io text frames
itself, for frames no socket.io client would ever produce.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
import msgpack
import pytest
import socketio
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from cohub.conat.client import Client

pytestmark = pytest.mark.asyncio

Connect = Callable[..., Awaitable[Client]]


# ---- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture(autouse=True)
def clean_log(server) -> Any:  # type: ignore[no-untyped-def]
    """Fail the test if the server logged a traceback while it ran (only lines written since)."""
    start = server.log_path.stat().st_size
    yield
    time.sleep(0.5)  # let late "Task exception was never retrieved" reports reach the log
    with open(server.log_path, "rb") as f:
        f.seek(start)
        written = f.read().decode(errors="replace")
    assert server.process.poll() is None, "the server died:\n" + written[-5000:]
    assert "Traceback" not in written, written[-20000:]


def _cookie(user) -> str:  # type: ignore[no-untyped-def]
    return f"remember_me={quote(user.cookie, safe='')}"


def _hub_cookie(server) -> str:  # type: ignore[no-untyped-def]
    return f"hub_password={quote(server.hub_password, safe='')}"


@contextlib.asynccontextmanager
async def raw_sio(server, cookie: str) -> AsyncIterator[socketio.AsyncClient]:  # type: ignore[no-untyped-def]
    """A plain python-socketio client, signed in (``info`` received and acked)."""
    # aiohttp refuses frames over 4 MB by default; a delivery may carry a chunk near 8 MB
    sio = socketio.AsyncClient(
        reconnection=False, websocket_extra_options={"max_msg_size": 16_000_000}
    )
    info = asyncio.Event()

    def on_info(data: Any) -> None:
        info.set()

    sio.on("info", on_info)
    try:
        await sio.connect(
            server.url,
            headers={"Cookie": cookie},
            transports=["websocket"],
            socketio_path="conat",
            wait_timeout=5,
        )
        await asyncio.wait_for(info.wait(), 5)
        yield sio
    finally:
        await sio.disconnect()
        with contextlib.suppress(Exception):
            await sio.shutdown()


def _bad(ack: Any, code: int = 400) -> bool:
    return (
        isinstance(ack, dict)
        and set(ack) == {"error", "code"}
        and isinstance(ack["error"], str)
        and ack["error"] != ""
        and ack["code"] == code
    )


async def alive(server) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient() as http:
        r = await http.get(server.url + "/alive", timeout=5)
    assert r.status_code == 200


async def sio_pubsub_works(sio: socketio.AsyncClient, user) -> None:  # type: ignore[no-untyped-def]
    """Subscribe, publish, receive and unsubscribe on this raw python-socketio connection."""
    subject = f"account.{user.account_id}.ok.{uuid.uuid4().hex[:8]}"
    got: asyncio.Queue[Any] = asyncio.Queue()

    async def deliver(message: Any) -> None:
        got.put_nowait(message)

    sio.on(subject, deliver)
    assert await sio.call("subscribe", {"subject": subject, "queue": "q"}, timeout=5) == {
        "status": "added"
    }
    chunk = msgpack.packb({"still": "fine"})
    ack = await sio.call("publish", [subject, "ok-1", 0, 1, 0, chunk, {"h": 1}], timeout=5)
    assert ack == {"count": 1}
    message = await asyncio.wait_for(got.get(), 5)
    assert message["subject"] == subject
    assert message["data"][:5] == ["ok-1", 0, 1, 0, chunk]
    assert message["data"][5] == {"h": 1}
    await sio.call("unsubscribe", {"subject": subject}, timeout=5)
    assert subject not in await sio.call("subscriptions", None, timeout=5)


async def others_fine(server, user, connect: Connect) -> None:  # type: ignore[no-untyped-def]
    """A separate, well-behaved Client publishes and receives; /alive answers 200."""
    client = await connect(server, {"remember_me": user.cookie})
    subject = f"account.{user.account_id}.healthy.{uuid.uuid4().hex[:8]}"
    sub = await client.subscribe(subject)
    result = await client.publish(subject, {"n": 1})
    assert result.count == 1
    assert (await sub.next(timeout=5)).data == {"n": 1}
    sub.close()
    await client.close()
    await alive(server)


class RawSocket:
    """engine.io v4 / socket.io v5 spoken by hand over one websocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = iter(range(100, 1_000_000))

    @classmethod
    async def open(cls, server, cookie: str, **options: Any) -> RawSocket:  # type: ignore[no-untyped-def]
        """Connect and sign in; ``options`` go to websockets' ``connect`` (e.g. max_queue)."""
        ws = await ws_connect(
            f"ws://127.0.0.1:{server.port}/conat/?EIO=4&transport=websocket",
            additional_headers={"Cookie": cookie},
            **{"max_size": None, "open_timeout": 5, **options},
        )
        raw = cls(ws)
        try:
            opened = await raw.recv()
            assert isinstance(opened, str) and opened.startswith("0{"), opened
            await ws.send("40")
            connected = signed_in = False
            while not (connected and signed_in):
                frame = await raw.recv()
                assert isinstance(frame, str), frame
                if frame.startswith("40{"):
                    connected = True
                m = re.match(r'42(\d*)\["info",', frame)
                if m:
                    assert '"account_id"' in frame or '"hub_id"' in frame, frame
                    if m.group(1):
                        await ws.send(f"43{m.group(1)}[]")
                    signed_in = True
        except BaseException:
            await ws.close()
            raise
        return raw

    async def close(self) -> None:
        await self.ws.close()

    async def send(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def recv(self, timeout: float = 5) -> str | bytes:
        """The next frame; engine.io pings are answered and skipped."""
        while True:
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
            if frame == "2":
                await self.ws.send("3")
                continue
            return frame

    async def ack(self, ack_id: int, timeout: float = 5) -> Any:
        """Wait for the ack with this id; returns its single argument (or the list)."""
        prefix = f"43{ack_id}["
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no ack {ack_id}")
            frame = await self.recv(remaining)
            if isinstance(frame, str) and frame.startswith(prefix):
                args = json.loads(frame[len(prefix) - 1 :])
                return args[0] if len(args) == 1 else args

    def next_id(self) -> int:
        return next(self._ids)

    async def call(self, event: str, *args: Any, timeout: float = 5) -> Any:
        ack_id = self.next_id()
        await self.send(f"42{ack_id}" + json.dumps([event, *args]))
        return await self.ack(ack_id, timeout)

    async def publish(self, subject: str, chunk: bytes, headers: Any = None) -> Any:
        """A publish with its chunk as a binary attachment, as socket.io clients send it."""
        ack_id = self.next_id()
        frame = [subject, "raw-1", 0, 1, 0, {"_placeholder": True, "num": 0}, headers]
        await self.send(f"451-{ack_id}" + json.dumps(["publish", frame]))
        await self.send(chunk)
        return await self.ack(ack_id)

    async def outcome(self, timeout: float = 3) -> str:
        """'alive' if the connection still answers, 'closed' if the server closed it, else
        'silent' (open, but no ack: e.g. the socket.io session is gone)."""
        try:
            result = await self.call("subscriptions", timeout=timeout)
        except ConnectionClosed:
            return "closed"
        except TimeoutError:
            return "silent"
        assert isinstance(result, list), result
        return "alive"

    async def pubsub_works(self, user) -> None:  # type: ignore[no-untyped-def]
        subject = f"account.{user.account_id}.raw.{uuid.uuid4().hex[:8]}"
        assert await self.call("subscribe", {"subject": subject, "queue": "q"}) == {
            "status": "added"
        }
        ack_id = self.next_id()
        frame = [subject, "raw-1", 0, 1, 0, {"_placeholder": True, "num": 0}, None]
        await self.send(f"451-{ack_id}" + json.dumps(["publish", frame]))
        await self.send(b"\xa2hi")  # msgpack "hi"
        delivered = acked = False
        attachment_next = False
        while not (delivered and acked):
            got = await self.recv()
            if attachment_next:
                assert got == b"\xa2hi"
                delivered, attachment_next = True, False
            elif isinstance(got, str) and got.startswith(f'451-["{subject}",'):
                attachment_next = True
            elif got == f'43{ack_id}[{{"count":1}}]':
                acked = True
        await self.call("unsubscribe", {"subject": subject})


@contextlib.asynccontextmanager
async def raw_socket(server, cookie: str) -> AsyncIterator[RawSocket]:  # type: ignore[no-untyped-def]
    raw = await RawSocket.open(server, cookie)
    try:
        yield raw
    finally:
        await raw.close()


# ---- publish ---------------------------------------------------------------------------------


async def test_malformed_publish_is_refused_with_400(server, user, connect) -> None:
    own = f"account.{user.account_id}.pub"
    good = [own, "id-1", 0, 1, 0, b"\x01"]
    cases: list[tuple[str, Any]] = [
        ("a string", "not a list"),
        ("a number", 5),
        ("null", None),
        ("an object", {"subject": own}),
        ("empty list", []),
        ("too short", good[:5]),
        ("only a subject", [own]),
        ("too long", [*good, None, None, "extra"]),
        ("subject a number", [5, *good[1:]]),
        ("subject null", [None, *good[1:]]),
        ("subject a list", [[own], *good[1:]]),
        ("subject empty", ["", *good[1:]]),
        ("subject a..b", [f"{own}..b", *good[1:]]),
        ("subject leading dot", [f".{own}", *good[1:]]),
        ("subject trailing dot", [f"{own}.", *good[1:]]),
        ("subject wildcard *", [f"{own}.*", *good[1:]]),
        ("subject wildcard >", [f"{own}.>", *good[1:]]),
        ("subject space", [f"{own}.a b", *good[1:]]),
        ("subject tab", [f"{own}.a\tb", *good[1:]]),
        ("subject newline", [f"{own}.a\nb", *good[1:]]),
        ("subject 10 kB", [own + ".x" * 5000, *good[1:]]),
        ("id a number", [own, 5, *good[2:]]),
        ("id null", [own, None, *good[2:]]),
        ("id empty", [own, "", *good[2:]]),
        ("id a list", [own, ["x"], *good[2:]]),
        ("id 200 chars", [own, "i" * 200, *good[2:]]),
        ("seq negative", [*good[:2], -1, *good[3:]]),
        ("seq a string", [*good[:2], "0", *good[3:]]),
        ("seq a float", [*good[:2], 0.5, *good[3:]]),
        ("seq true", [*good[:2], True, *good[3:]]),
        ("seq null", [*good[:2], None, *good[3:]]),
        ("done 5", [*good[:3], 5, *good[4:]]),
        ("done -1", [*good[:3], -1, *good[4:]]),
        ("done a string", [*good[:3], "1", *good[4:]]),
        ("done null", [*good[:3], None, *good[4:]]),
        ("done a float", [*good[:3], 1.0, *good[4:]]),
        ("encoding 7", [*good[:4], 7, good[5]]),
        ("encoding x", [*good[:4], "x", good[5]]),
        ("encoding -1", [*good[:4], -1, good[5]]),
        ("encoding null", [*good[:4], None, good[5]]),
        ("encoding a float", [*good[:4], 1.0, good[5]]),
        ("chunk a string", [*good[:5], "not binary"]),
        ("chunk a number", [*good[:5], 5]),
        ("chunk null", [*good[:5], None]),
        ("chunk a list", [*good[:5], [1, 2]]),
        ("headers a list", [*good, ["CN-Reply", "x"]]),
        ("headers a string", [*good, "headers"]),
        ("headers a number", [*good, 5]),
        ("headers over 64 kB", [*good, {"big": "x" * 70_000}]),
        ("headers with many keys", [*good, {f"k{i}": i for i in range(10_000)}]),
    ]
    async with raw_sio(server, _cookie(user)) as sio:
        for name, payload in cases:
            ack = await sio.call("publish", payload, timeout=5)
            assert _bad(ack, 400), (name, ack)
        # index 7 (delivery targets) is for hubs only, whatever its content
        for targets in ([{"pattern": own, "target": "someone"}], "garbage", 5, []):
            ack = await sio.call("publish", [*good, None, targets], timeout=5)
            assert _bad(ack, 403), (targets, ack)
        # a well-formed publish still works, including 8 elements with targets null
        assert await sio.call("publish", [*good, None, None], timeout=5) == {"count": 0}
        assert await sio.call("publish", [*good, {"k": "v"}], timeout=5) == {"count": 0}
        await sio_pubsub_works(sio, user)
    await others_fine(server, user, connect)


async def test_publish_to_a_foreign_subject_is_403(server, user, other_user, connect) -> None:
    events: list[Any] = []
    async with raw_sio(server, _cookie(other_user)) as sio:
        sio.on("permission", lambda data: events.append(data))
        foreign = f"account.{user.account_id}.secret"
        ack = await sio.call("publish", [foreign, "id", 0, 1, 0, b""], timeout=5)
        assert _bad(ack, 403)
        for subject in ("sys.anything", "hub.account.x.api", "project.nope.x"):
            assert _bad(await sio.call("publish", [subject, "i", 0, 1, 0, b""], timeout=5), 403)
        await asyncio.sleep(0.2)
        assert {"type": "pub", "subject": foreign}.items() <= events[0].items()
        await sio_pubsub_works(sio, other_user)
    await others_fine(server, user, connect)


async def test_hub_targets_garbage(server, user, connect) -> None:
    """Hubs may give delivery targets; garbage there is a 400 or simply matches nobody."""
    async with raw_sio(server, _hub_cookie(server)) as hub:
        base = ["hub.targets.x", "id", 0, 1, 0, b"\x01", None]
        for targets in ("garbage", 5, {"pattern": "x", "target": "y"}):
            assert _bad(await hub.call("publish", [*base, targets], timeout=5), 400), targets
        junk_targets = [
            1,
            None,
            "x",
            [],
            {},
            {"pattern": 5, "target": 5},
            {"pattern": "hub.targets.x", "target": "no-such-socket"},
            {"pattern": ["x"], "target": ["y"]},
        ]
        for targets in ([], junk_targets):
            assert await hub.call("publish", [*base, targets], timeout=5) == {"count": 0}
        # garbage on the permission-change subject must not hurt the router either
        for encoding, chunk in ((0, b"\xc1\xc1"), (1, b"{not json"), (0, msgpack.packb(5))):
            ack = await hub.call(
                "publish",
                ["sys.conat.permissions.changed", "id", 0, 1, encoding, chunk],
                timeout=5,
            )
            assert isinstance(ack, dict) and "count" in ack, ack
    await others_fine(server, user, connect)


async def test_garbage_payload_to_hub_api_gets_error_reply(server, user, connect) -> None:
    api = f"hub.account.{user.account_id}.api"
    inbox = f"_INBOX.account-{user.account_id}.{uuid.uuid4().hex[:10]}"
    replies: asyncio.Queue[Any] = asyncio.Queue()

    async def on_reply(message: Any) -> None:
        replies.put_nowait(message)

    async with raw_sio(server, _cookie(user)) as sio:
        sio.on(f"{inbox}.*", on_reply)
        ack = await sio.call("subscribe", {"subject": f"{inbox}.*", "queue": "r"}, timeout=5)
        assert ack == {"status": "added"}
        cases = [
            # 0xc1 is never valid MessagePack (msgpack's own error message for it is empty)
            (0, b"\xc1" + os.urandom(64), "MSGPACK", "starts no MessagePack type"),
            (0, b"\x92\x01", "MSGPACK", "truncated data"),  # truncated array
            (1, b"{not json" + os.urandom(8), "JSON", ""),  # JSON's errors always say why
        ]
        for i, (encoding, chunk, kind, why) in enumerate(cases):
            reply_to = f"{inbox}.r{i}"
            ack = await sio.call(
                "publish",
                [api, f"garbage-{i}", 0, 1, encoding, chunk, {"CN-Reply": reply_to}],
                timeout=5,
            )
            assert ack == {"count": 1}, ack
            message = await asyncio.wait_for(replies.get(), 10)
            assert message["subject"] == reply_to
            _id, seq, done, reply_encoding, reply_chunk = message["data"][:5]
            assert (seq, done) == (0, 1)
            data = msgpack.unpackb(reply_chunk) if reply_encoding == 0 else json.loads(reply_chunk)
            assert isinstance(data, dict) and "error" in data, data
            assert "not valid" in data["error"] and kind in data["error"], data
            assert why in data["error"], data  # says what is wrong, not just "MSGPACK: "
            assert data["error"].split(f"{kind}: ", 1)[1].strip(), data
        # a valid request on the same connection still gets its answer
        await sio.call(
            "publish",
            [
                api,
                "ok",
                0,
                1,
                0,
                msgpack.packb({"name": "system.test", "args": []}),
                {"CN-Reply": f"{inbox}.ok"},
            ],
            timeout=5,
        )
        message = await asyncio.wait_for(replies.get(), 10)
        assert msgpack.unpackb(message["data"][4])["account_id"] == user.account_id
        await sio_pubsub_works(sio, user)
    await others_fine(server, user, connect)


# ---- subscribe, unsubscribe, subscriptions, wait-for-interest -------------------------------


async def test_malformed_subscribe(server, user, other_user, connect) -> None:
    own = f"account.{user.account_id}.sub"
    async with raw_sio(server, _cookie(user)) as sio:
        for payload in (
            "x",
            5,
            None,
            True,
            {},
            {"subject": own},  # queue missing
            {"subject": own, "queue": None},
            {"subject": own, "queue": 5},
            {"subject": own, "queue": ["q"]},
            {"subject": own, "queue": ""},
            {"subject": own, "queue": "q" * 200},
            {"subject": 5, "queue": "q"},
            {"subject": None, "queue": "q"},
            {"queue": "q"},
            {"subject": "", "queue": "q"},
            {"subject": f"{own}..b", "queue": "q"},
            {"subject": f"{own}.>.b", "queue": "q"},
            {"subject": f"{own}. x", "queue": "q"},
            {"subject": f".{own}", "queue": "q"},
            {"subject": own + ".x" * 5000, "queue": "q"},
        ):
            ack = await sio.call("subscribe", payload, timeout=5)
            assert _bad(ack, 400), (payload, ack)
        assert await sio.call("subscriptions", None, timeout=5) == []

        # a list: one result per item, good ones added
        mixed = [
            {"subject": f"{own}.good1", "queue": "q"},
            "bad",
            {"subject": f"{own}..x", "queue": "q"},
            {"subject": f"account.{other_user.account_id}.x", "queue": "q"},
            {"subject": f"{own}.noqueue"},
            {"subject": f"{own}.good2.*", "queue": "q"},
            {"subject": f"{own}.good1", "queue": "q"},
            None,
            [],
        ]
        results = await sio.call("subscribe", mixed, timeout=5)
        assert isinstance(results, list) and len(results) == len(mixed), results
        assert results[0] == {"status": "added"}
        assert _bad(results[1]) and _bad(results[2])
        assert _bad(results[3], 403)
        assert _bad(results[4])
        assert results[5] == {"status": "added"}
        assert results[6] == {"status": "already-added"}
        assert _bad(results[7]) and _bad(results[8])
        assert await sio.call("subscribe", [], timeout=5) == []
        held = await sio.call("subscriptions", None, timeout=5)
        assert sorted(held) == sorted([f"{own}.good1", f"{own}.good2.*"])

        # 20k items in one request: refused as a whole, nothing added
        huge = [{"subject": f"{own}.n{i}", "queue": "q"} for i in range(20_000)]
        assert _bad(await sio.call("subscribe", huge, timeout=30), 400)
        huge_junk = [i for i in range(20_000)]
        assert _bad(await sio.call("subscribe", huge_junk, timeout=30), 400)
        held = await sio.call("subscriptions", None, timeout=5)
        assert sorted(held) == sorted([f"{own}.good1", f"{own}.good2.*"])
        await sio_pubsub_works(sio, user)
    await others_fine(server, user, connect)


async def test_unsubscribe_and_subscriptions_with_garbage(server, user, connect) -> None:
    own = f"account.{user.account_id}.keep"
    async with raw_sio(server, _cookie(user)) as sio:
        assert await sio.call("subscribe", {"subject": own, "queue": "q"}, timeout=5) == {
            "status": "added"
        }
        for payload in (
            5,
            "x",
            None,
            True,
            {},
            {"subject": 5},
            {"subject": ["x"]},
            {"subject": "not.subscribed"},
            {"subject": ""},
            {"subject": "a..b"},
        ):
            assert await sio.call("unsubscribe", payload, timeout=5) is None, payload
        junk = [1, "a", None, {"subject": 5}, {"subject": "x.>"}, [], {}]
        assert await sio.call("unsubscribe", junk, timeout=5) == [None] * len(junk)
        many = [{"subject": f"{own}.{i}"} for i in range(10_000)]
        assert await sio.call("unsubscribe", many, timeout=30) == [None] * len(many)
        # several arguments at once
        assert await sio.call("unsubscribe", ({"subject": "x"}, 5, "y"), timeout=5) is None

        for args in (None, 5, "x", {"a": 1}, [1, 2, 3], (1, 2, 3)):
            assert await sio.call("subscriptions", args, timeout=5) == [own], args
        await sio_pubsub_works(sio, user)
        # the subscription that was never touched by the garbage still delivers
        got: asyncio.Queue[Any] = asyncio.Queue()
        sio.on(own, lambda message: got.put_nowait(message))
        assert await sio.call("publish", [own, "k", 0, 1, 0, b"\x01"], timeout=5) == {"count": 1}
        assert (await asyncio.wait_for(got.get(), 5))["subject"] == own
    await others_fine(server, user, connect)


async def test_wait_for_interest_with_garbage(server, user, other_user, connect) -> None:
    own = f"account.{user.account_id}.wait"
    async with raw_sio(server, _cookie(user)) as sio:
        for payload in (
            None,
            "x",
            5,
            [own, 100],
            {},
            {"timeout": 100},
            {"subject": 5, "timeout": 100},
            {"subject": None},
            {"subject": "", "timeout": 100},
            {"subject": "a..b", "timeout": 100},
            {"subject": f"{own}.*", "timeout": 100},
            {"subject": f"{own}.>", "timeout": 100},
            {"subject": own, "timeout": "100"},
            {"subject": own, "timeout": -1},
            {"subject": own, "timeout": True},
            {"subject": own, "timeout": [100]},
            {"subject": own, "timeout": {"ms": 100}},
            {"subject": own, "timeout": float("nan")},
        ):
            ack = await sio.call("wait-for-interest", payload, timeout=5)
            assert _bad(ack, 400), (payload, ack)
        foreign = f"account.{other_user.account_id}.x"
        ack = await sio.call("wait-for-interest", {"subject": foreign, "timeout": 100}, timeout=5)
        assert _bad(ack, 403)

        started = time.monotonic()
        result = await sio.call("wait-for-interest", {"subject": own, "timeout": 200}, timeout=5)
        elapsed = time.monotonic() - started
        assert result is False
        assert 0.15 <= elapsed < 3, elapsed
        assert (
            await sio.call("wait-for-interest", {"subject": own, "timeout": 0}, timeout=5) is False
        )

        # interest that appears while waiting ends the wait with true
        waiting = asyncio.ensure_future(
            sio.call("wait-for-interest", {"subject": own, "timeout": 5000}, timeout=10)
        )
        await asyncio.sleep(0.2)
        listener = await connect(server, {"remember_me": user.cookie})
        sub = await listener.subscribe(f"account.{user.account_id}.*")
        assert await waiting is True
        sub.close()
        await sio_pubsub_works(sio, user)
    await others_fine(server, user, connect)


async def test_unknown_and_reserved_events(server, user, connect) -> None:
    async with raw_sio(server, _cookie(user)) as sio:
        for event in ("foo", "x" * 10_000, "info", "permission", "Publish", " publish"):
            ack = await sio.call(event, {"a": 1}, timeout=5)
            assert _bad(ack, 400), (event[:20], ack)
        ack = await sio.call("foo", timeout=5)
        assert _bad(ack, 400)
        await sio_pubsub_works(sio, user)
    # reserved names and non-string event names, sent by hand
    own = f"account.{user.account_id}.reserved"
    async with raw_socket(server, _cookie(user)) as raw:
        assert await raw.call("subscribe", {"subject": own, "queue": "q"}) == {"status": "added"}
        for event in ("disconnect", "connect", "connect_error", "__disconnect_final"):
            # before the fix, "disconnect" dropped the router session of a live socket, and
            # "connect" ran authentication again with a client-chosen environ
            ack = await raw.call(event, {"HTTP_COOKIE": _cookie(user)})
            assert _bad(ack, 400), (event, ack)
        for data in ("[1]", "[null]", '[{"a":1}]', "[[1]]", '"str"', "true", "{}", "[]"):
            ack_id = raw.next_id()
            await raw.send(f"42{ack_id}{data}")
            assert _bad(await raw.ack(ack_id), 400), data
        assert await raw.call("subscriptions") == [own]
        await raw.pubsub_works(user)
    await others_fine(server, user, connect)


# ---- invalid frames -------------------------------------------------------------------------

_PUBLISH_HEADER = '451-["publish",{"_placeholder":true,"num":0}]'

# frames that make no sense at the socket.io or engine.io level: the connection is closed
_CLOSING_FRAMES: list[tuple[str, list[str | bytes]]] = [
    ("event not json", ["42not json"]),
    ("event truncated json", ['42["publish",']),
    ("bad packet type", ["4999"]),
    ("dash without attachments", ["4-"]),
    ("connect error from client", ["44{}"]),
    ("deeply nested json", ["42" + "[" * 100_000]),
    ("not an engine.io packet", ["zzz"]),
    ("unknown engine.io type", ["9zzz"]),
    ("bad base64", ["bzz!"]),
    ("empty text frame", [""]),
    ("binary without a pending packet", [b"\x00\x01garbage"]),
    ("attachment index out of range", ['451-["publish",{"_placeholder":true,"num":5}]', b"x"]),
    ("attachment index not a number", ['451-["publish",{"_placeholder":true,"num":"a"}]', b"x"]),
    ("attachment extra", ['451-["publish",{"_placeholder":true,"num":1}]', b"x"]),
    # socket.io's own decoder refuses plain text while reconstructing a binary packet
    ("binary header then garbage text", [_PUBLISH_HEADER, "42garbage"]),
    ("a million attachments announced", ['4599999-["publish",{"_placeholder":true,"num":0}]']),
]

# frames that are dropped or answered: the connection stays usable
_HARMLESS_FRAMES: list[tuple[str, list[str | bytes]]] = [
    ("event without data", ["42"]),
    ("event empty list", ["42[]"]),
    ("event an object", ['42{"a":1}']),
    ("message without packet", ["4"]),
    ("client ping", ["2"]),
    ("unsolicited pong", ["3"]),
    ("upgrade", ["5"]),
    ("noop", ["6"]),
    ("open from client", ["0"]),
    ("second connect", ["40"]),
    ("connect to unknown namespace", ["40/other,"]),
    ("ack nobody waits for", ["43999[]"]),
    ("event with an unknown namespace", ['42/other,["publish"]']),
    ("empty base64 message", ["b"]),
    ("unsolicited binary ack", ['461-[{"_placeholder":true,"num":0}]', b"x"]),
]


@pytest.mark.parametrize(
    "frames", [f for _, f in _CLOSING_FRAMES], ids=[n for n, _ in _CLOSING_FRAMES]
)
async def test_unparseable_frames_close_only_that_connection(server, user, connect, frames) -> None:
    async with raw_socket(server, _cookie(user)) as bystander:
        async with raw_socket(server, _cookie(user)) as raw:
            for frame in frames:
                await raw.send(frame)
            assert await raw.outcome() == "closed"
        assert await bystander.outcome() == "alive"
        await bystander.pubsub_works(user)
    await others_fine(server, user, connect)


@pytest.mark.parametrize(
    "frames", [f for _, f in _HARMLESS_FRAMES], ids=[n for n, _ in _HARMLESS_FRAMES]
)
async def test_harmless_odd_frames_are_dropped(server, user, connect, frames) -> None:
    async with raw_socket(server, _cookie(user)) as raw:
        for frame in frames:
            await raw.send(frame)
        assert await raw.outcome() == "alive"
        await raw.pubsub_works(user)
    await others_fine(server, user, connect)


async def test_binary_header_then_text_attachment_closes(server, user, connect) -> None:
    """A text frame where the binary chunk should be is a protocol error: only that socket
    is closed (socket.io's own decoder refuses plain text while reconstructing)."""
    own = f"account.{user.account_id}.x"
    async with raw_socket(server, _cookie(user)) as raw:
        frame = [own, "id", 0, 1, 0, {"_placeholder": True, "num": 0}]
        await raw.send("451-7" + json.dumps(["publish", frame]))
        await raw.send("4garbage")
        assert await raw.outcome() == "closed"
    await others_fine(server, user, connect)


async def test_client_close_packets(server, user, connect) -> None:
    """engine.io close ("1") and socket.io disconnect ("41") end the session, nothing else,
    with a websocket close 1000 (not a dropped TCP connection, 1006)."""
    for frame in ("1", "41"):
        async with raw_socket(server, _cookie(user)) as raw:
            await raw.send(frame)
            assert await raw.outcome(timeout=5) == "closed"
            await asyncio.wait_for(raw.ws.wait_closed(), 5)
            assert raw.ws.close_code == 1000, frame
    await others_fine(server, user, connect)


async def test_oversize_frames_are_refused(server, user, connect) -> None:
    own = f"account.{user.account_id}.big"
    big_text = "42" + json.dumps(["publish", [own, "id", 0, 1, 0, "x" * 9_000_000]])
    big_binary = b"\x00" * 9_000_000
    huge_text = "4" + "x" * 17_000_000
    for frames in (
        [big_text],
        [_PUBLISH_HEADER, big_binary],
        [
            '451-["publish",[' + json.dumps(own) + ',"i",0,1,0,{"_placeholder":true,"num":0}]]',
            big_binary,
        ],
        [huge_text],
    ):
        async with raw_socket(server, _cookie(user)) as raw:
            with contextlib.suppress(ConnectionClosed):
                for frame in frames:
                    await raw.send(frame)
            assert await raw.outcome() == "closed"
    # just under the limit is fine: a 7.9 MB chunk is delivered
    async with raw_sio(server, _cookie(user)) as sio:
        got: asyncio.Queue[Any] = asyncio.Queue()
        sio.on(own, lambda message: got.put_nowait(message))
        await sio.call("subscribe", {"subject": own, "queue": "q"}, timeout=5)
        chunk = os.urandom(7_900_000)
        assert await sio.call("publish", [own, "big", 0, 1, 0, chunk], timeout=30) == {"count": 1}
        assert (await asyncio.wait_for(got.get(), 30))["data"][4] == chunk
    await others_fine(server, user, connect)


# ---- floods ---------------------------------------------------------------------------------


async def test_subscribe_unsubscribe_flood_leaks_nothing(server, user, connect) -> None:
    base = f"account.{user.account_id}.flood"
    pairs = 2000
    limit = asyncio.Semaphore(50)

    async with raw_sio(server, _cookie(user)) as sio:

        async def pair(i: int) -> None:
            async with limit:
                subject = f"{base}.{i}"
                ack = await sio.call("subscribe", {"subject": subject, "queue": "q"}, timeout=30)
                assert ack == {"status": "added"}, ack
                await sio.call("unsubscribe", {"subject": subject}, timeout=30)

        await asyncio.gather(*(pair(i) for i in range(pairs)))
        assert await sio.call("subscriptions", None, timeout=5) == []
        # nothing is left in the router's interest table either: nobody is counted
        for i in (0, 1, pairs // 2, pairs - 1):
            ack = await sio.call("publish", [f"{base}.{i}", "f", 0, 1, 0, b""], timeout=5)
            assert ack == {"count": 0}, (i, ack)
        # the per-socket limit (500) was never reached, and subscribing still works
        results = await sio.call(
            "subscribe",
            [{"subject": f"{base}.again.{i}", "queue": "q"} for i in range(400)],
            timeout=30,
        )
        assert results == [{"status": "added"}] * 400
        await sio.call(
            "unsubscribe", [{"subject": f"{base}.again.{i}"} for i in range(400)], timeout=30
        )
        assert await sio.call("subscriptions", None, timeout=5) == []
        await sio_pubsub_works(sio, user)
    await others_fine(server, user, connect)


async def test_garbage_flood_then_normal_traffic(server, user, connect) -> None:
    """Many bad requests fired without waiting, interleaved with good ones."""
    own = f"account.{user.account_id}.mixed"
    async with raw_sio(server, _cookie(user)) as sio:
        await sio.call("subscribe", {"subject": own, "queue": "q"}, timeout=5)
        got: asyncio.Queue[Any] = asyncio.Queue()
        sio.on(own, lambda message: got.put_nowait(message))
        calls = []
        for i in range(300):
            calls.append(sio.call("publish", [own, 5, "x", 9, 7, "s"], timeout=30))
            calls.append(sio.call("subscribe", {"subject": "a..b"}, timeout=30))
            calls.append(sio.call("nope", i, timeout=30))
            calls.append(sio.call("publish", [own, f"m{i}", 0, 1, 0, b"%d" % i], timeout=30))
        acks = await asyncio.gather(*calls)
        for i in range(300):
            bad_pub, bad_sub, unknown, good = acks[4 * i : 4 * i + 4]
            assert _bad(bad_pub) and _bad(bad_sub) and _bad(unknown)
            assert good == {"count": 1}
        received = [await asyncio.wait_for(got.get(), 10) for _ in range(300)]
        assert sorted(int(m["data"][4]) for m in received) == list(range(300))
        await sio_pubsub_works(sio, user)
    await others_fine(server, user, connect)
