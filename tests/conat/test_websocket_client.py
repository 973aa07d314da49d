"""The client websocket end (cohub/conat/_websocket.py) against scripted servers on loopback.

Each server here is a real TCP listener that answers the upgrade (or refuses it) and then
writes raw RFC 6455 frames, so every branch of the client's parser meets real bytes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from cohub.conat._websocket import HandshakeError, WebSocketClosed, connect

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, dict[str, str]], Awaitable[None]]


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = False) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes((b0, (0x80 if mask else 0) | n))
    elif n < 65536:
        head = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if mask:
        key = b"\x01\x02\x03\x04"
        return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))
    return head + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One masked client frame: (opcode, unmasked payload)."""
    b0, b1 = await reader.readexactly(2)
    assert b1 & 0x80, "clients must mask every frame"
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    key = await reader.readexactly(4)
    data = await reader.readexactly(n)
    return b0 & 0x0F, bytes(c ^ key[i % 4] for i, c in enumerate(data))


async def read_request(reader: asyncio.StreamReader) -> dict[str, str]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    lines = head.split("\r\n")
    headers = {"request-line": lines[0]}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return headers


def accept_response(headers: dict[str, str], extra: str = "") -> bytes:
    accept = base64.b64encode(
        hashlib.sha1(headers["sec-websocket-key"].encode() + GUID).digest()
    ).decode()
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    ).encode()


@asynccontextmanager
async def scripted(script: Script, *, accept: bool = True) -> AsyncIterator[str]:
    """A server that runs ``script`` after the upgrade; yields the URL to connect to."""
    errors: list[BaseException] = []
    handlers: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        try:
            headers = await read_request(reader)
            if accept:
                writer.write(accept_response(headers))
            await script(reader, writer, headers)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except BaseException as e:  # surfaced in the test, not lost in a server task
            errors.append(e)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/conat/?EIO=4"
        # the script's last checks may still be running: wait for them, not just the listener
        await asyncio.wait_for(asyncio.gather(*handlers), 10)
    finally:
        server.close()
        await server.wait_closed()
    if errors:
        raise errors[0]


async def test_upgrade_request_sends_headers_and_no_extensions() -> None:
    seen: dict[str, str] = {}

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, h: dict[str, str]) -> None:
        seen.update(h)
        w.write(frame(0x1, b"hello"))
        opcode, data = await read_frame(r)
        assert (opcode, data) == (0x2, b"\x00\xffbinary")
        opcode, data = await read_frame(r)
        assert (opcode, data) == (0x1, "tëxt".encode())

    async with scripted(script) as url:
        ws = await connect(url, {"Cookie": "remember_me=abc"}, max_size=1 << 20)
        assert await ws.recv() == "hello"
        ws.send([b"\x00\xffbinary", "tëxt"])
        await ws.drain()
        with pytest.raises(WebSocketClosed):
            await ws.recv()  # the script ends and the server hangs up
    assert seen["request-line"] == "GET /conat/?EIO=4 HTTP/1.1"
    assert seen["cookie"] == "remember_me=abc"
    assert seen["upgrade"] == "websocket" and seen["sec-websocket-version"] == "13"
    assert "sec-websocket-extensions" not in seen  # never offer compression (conat.md 10)


async def test_refused_upgrade_is_a_clear_error() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, h: dict[str, str]) -> None:
        w.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    async with scripted(script, accept=False) as url:
        with pytest.raises(HandshakeError, match="HTTP 403 Forbidden instead of 101"):
            await connect(url, {}, max_size=1024)


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        (
            "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: wrong\r\n\r\n",
            "wrong Sec-WebSocket-Accept",
        ),
        ("HTTP/1.1 101 OK\r\nConnection: Upgrade\r\n\r\n", "no 'Upgrade: websocket'"),
        ("SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP response"),
    ],
)
async def test_bad_upgrade_responses_are_refused(response: str, problem: str) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, h: dict[str, str]) -> None:
        w.write(response.encode())

    async with scripted(script, accept=False) as url:
        with pytest.raises(HandshakeError, match=problem):
            await connect(url, {}, max_size=1024)


async def test_an_extension_that_was_not_offered_is_refused() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, h: dict[str, str]) -> None:
        w.write(accept_response(h, "Sec-WebSocket-Extensions: permessage-deflate\r\n"))

    async with scripted(script, accept=False) as url:
        with pytest.raises(HandshakeError, match="extension that was not offered"):
            await connect(url, {}, max_size=1024)


async def test_a_header_with_a_line_break_is_refused() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, h: dict[str, str]) -> None:
        pass

    async with scripted(script) as url:
        with pytest.raises(HandshakeError, match="line break"):
            await connect(url, {"Cookie": "a=b\r\nX-Injected: 1"}, max_size=1024)


async def test_a_server_that_never_answers_times_out() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, h: dict[str, str]) -> None:
        await asyncio.sleep(2)

    async with scripted(script, accept=False) as url:
        with pytest.raises(TimeoutError):
            await connect(url, {}, max_size=1024, timeout=0.3)


async def test_frames_in_the_upgrade_read_fragments_sizes_and_pings() -> None:
    big = bytes(range(256)) * 300  # 76,800 bytes: a 64-bit length

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, h: dict[str, str]) -> None:
        # everything in one write, right behind the 101: the client must not lose any of it
        w.write(
            frame(0x1, b"first")
            + frame(0x2, b"x" * 300)  # 16-bit length
            + frame(0x2, big)
            + frame(0x1, b"frag", fin=False)
            + frame(0x9, b"ping-data")  # a control frame between fragments is allowed
            + frame(0x0, "mé".encode(), fin=False)
            + frame(0x0, b"nted")
            + frame(0xA, b"unsolicited pong")
        )
        opcode, data = await read_frame(r)
        assert (opcode, data) == (0xA, b"ping-data")

    async with scripted(script) as url:
        ws = await connect(url, {}, max_size=1 << 20)
        assert await ws.recv() == "first"
        assert await ws.recv() == b"x" * 300
        assert await ws.recv() == big
        assert await ws.recv() == "fragménted"


async def test_a_frame_split_over_many_reads_is_reassembled() -> None:
    payload = b"y" * 5000

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, h: dict[str, str]) -> None:
        data = frame(0x2, payload)
        for i in range(0, len(data), 7):
            w.write(data[i : i + 7])
            await w.drain()
            await asyncio.sleep(0)
        await asyncio.sleep(0.2)

    async with scripted(script) as url:
        ws = await connect(url, {}, max_size=1 << 20)
        assert await ws.recv() == payload


async def test_server_close_is_echoed_and_ends_reading() -> None:
    echoed: list[tuple[int, bytes]] = []

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, h: dict[str, str]) -> None:
        w.write(frame(0x1, b"last words") + frame(0x8, struct.pack("!H", 4001) + b"bye"))
        echoed.append(await read_frame(r))

    async with scripted(script) as url:
        ws = await connect(url, {}, max_size=1024)
        assert await ws.recv() == "last words"
        with pytest.raises(WebSocketClosed) as raised:
            await ws.recv()
        assert raised.value.code == 4001 and "bye" in str(raised.value)
        with pytest.raises(WebSocketClosed):
            ws.send(["too late"])
    assert echoed == [(0x8, struct.pack("!H", 4001))]


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(0x2, b"masked", mask=True), 1002),  # servers never mask
        (bytes((0xC2, 1)) + b"x", 1002),  # a reserved bit (compression that was not agreed)
        (frame(0x3, b"?"), 1002),  # an unknown opcode
        (frame(0x0, b"orphan"), 1002),  # a continuation with nothing to continue
        (frame(0x9, b"p", fin=False), 1002),  # a fragmented control frame
        (frame(0x1, b"\xff\xfe"), 1007),  # invalid UTF-8 text
        (frame(0x2, b"z" * 2000), 1009),  # over max_size
        (frame(0x1, b"a" * 600, fin=False) + frame(0x0, b"b" * 600), 1009),  # fragments too
        (frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002),  # a new message mid-fragment
    ],
)
async def test_protocol_violations_close_with_the_right_code(bad: bytes, code: int) -> None:
    closes: list[tuple[int, bytes]] = []

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, h: dict[str, str]) -> None:
        w.write(frame(0x1, b"fine") + bad + frame(0x1, b"never delivered"))
        closes.append(await read_frame(r))

    async with scripted(script) as url:
        ws = await connect(url, {}, max_size=1024)
        assert await ws.recv() == "fine"
        with pytest.raises(WebSocketClosed) as raised:
            await ws.recv()
        assert raised.value.code == code
    assert closes == [(0x8, struct.pack("!H", code))]


async def test_client_close_handshake() -> None:
    got: list[tuple[int, bytes]] = []

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, h: dict[str, str]) -> None:
        got.append(await read_frame(r))
        w.write(frame(0x8, got[0][1]))

    async with scripted(script) as url:
        ws = await connect(url, {}, max_size=1024)
        await ws.close()
        assert ws.closed
    assert got == [(0x8, struct.pack("!H", 1000))]


async def test_close_gives_up_on_a_silent_server() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, h: dict[str, str]) -> None:
        await read_frame(r)
        await asyncio.sleep(3)  # never answers the close

    async with scripted(script) as url:
        ws = await connect(url, {}, max_size=1024)
        await ws.close()  # returns after its close timeout, with the connection aborted
        assert ws.closed


async def test_reading_pauses_while_the_reader_falls_behind() -> None:
    count = 500

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, h: dict[str, str]) -> None:
        w.write(b"".join(frame(0x1, str(i).encode()) for i in range(count)))
        await w.drain()
        await asyncio.sleep(0.5)

    async with scripted(script) as url:
        ws = await connect(url, {}, max_size=1024)
        await asyncio.sleep(0.2)  # let everything arrive: reading pauses at the high-water mark
        assert ws._read_paused
        received = [await ws.recv() for _ in range(count)]
        assert received == [str(i) for i in range(count)]
        assert not ws._read_paused  # resumed once the reader caught up
