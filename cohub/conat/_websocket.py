"""The client end of a websocket (RFC 6455) on a plain asyncio protocol, for the Conat client.

The websockets library's asyncio client was most of a Python Conat round trip (bench/persist.py:
about 50 us per frame sent and 40 us per frame read, in locks, futures and its general frame
parser). This is the part the Conat client uses and nothing more: an HTTP/1.1 upgrade with no
extensions and no subprotocol, text and binary messages (fragmented ones reassembled), ping,
pong and the close handshake. Frames sent in one event-loop iteration go out in one write, as
on the server (cohub/_websocket_protocol.py).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import os
import ssl
import struct
from collections.abc import Iterable
from typing import cast
from urllib.parse import urlsplit

from websockets.speedups import apply_mask

from .._websocket_frames import frame_header, payload_length

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_RESPONSE_HEAD = 64 * 1024
_READ_HIGH_WATER = 64  # messages waiting for the reader before reading pauses
_READ_LOW_WATER = 16
_CLOSE_TIMEOUT_S = 2.0

_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WebSocketClosed(Exception):
    """The connection is closed (by either side, or lost); ``code`` as in RFC 6455 7.4."""

    def __init__(self, message: str, code: int = 1006) -> None:
        super().__init__(message)
        self.code = code


class HandshakeError(Exception):
    """The server did not accept the websocket upgrade."""


class WebSocket(asyncio.Protocol):
    """One client connection. Make it with :func:`connect`."""

    def __init__(self, key: bytes, max_size: int) -> None:
        self._key = key
        self._max_size = max_size
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._handshake: asyncio.Future[None] = self._loop.create_future()
        self._head = bytearray()
        self._buf = bytearray()
        self._open = False
        self._messages: collections.deque[str | bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._fragment_size = 0
        self._close_sent = False
        self._closed: WebSocketClosed | None = None
        self._lost = self._loop.create_future()

    # ---- public -------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def recv(self) -> str | bytes:
        """The next message; WebSocketClosed once the connection is gone and all were read."""
        while not self._messages:
            if self._closed is not None:
                raise self._closed
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = self._messages.popleft()
        if self._read_paused and len(self._messages) <= _READ_LOW_WATER:
            self._read_paused = False
            if self._transport is not None:
                self._transport.resume_reading()
        return message

    def send(self, messages: Iterable[str | bytes]) -> None:
        """Queue messages (str as text, bytes as binary); they leave together once the loop has
        run what is ready. Call :meth:`drain` to respect the transport's flow control."""
        if self._closed is not None or self._close_sent:
            raise self._closed or WebSocketClosed("the connection is closing", 1000)
        for message in messages:
            if isinstance(message, str):
                self._queue_frame(_OP_TEXT, message.encode())
            else:
                self._queue_frame(_OP_BINARY, message)

    async def drain(self) -> None:
        """Wait while the transport's write buffer is over its high-water mark."""
        if not self._writable.is_set():
            await self._writable.wait()
        if self._closed is not None:
            raise self._closed

    async def close(self, code: int = 1000) -> None:
        """The close handshake: send a close frame, wait briefly for the server's, then close."""
        if self._transport is None or self._closed is not None:
            return
        if not self._close_sent:
            self._close_sent = True
            self._queue_frame(_OP_CLOSE, struct.pack("!H", code))
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await asyncio.shield(self._lost)
        except TimeoutError:
            self._transport.abort()
            await self._lost  # abort reports connection_lost on the next loop iteration

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # ---- asyncio protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed is None:
            reason = f": {exc}" if exc else ""
            self._closed = WebSocketClosed(f"connection lost{reason}", 1006)
        if not self._handshake.done():
            reason = f": {exc}" if exc else ""
            self._handshake.set_exception(HandshakeError(f"connection closed{reason}"))
        if not self._lost.done():
            self._lost.set_result(None)
        self._writable.set()
        self._wake()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        if self._open:
            self._receive_frames(data)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _MAX_RESPONSE_HEAD:
                self._fail_handshake("the upgrade response head is too large")
            return
        head, rest = bytes(self._head[:end]), bytes(self._head[end + 4 :])
        self._head = bytearray()
        problem = self._check_response(head)
        if problem is not None:
            self._fail_handshake(problem)
            return
        self._open = True
        self._handshake.set_result(None)
        if rest:
            self._receive_frames(rest)

    # ---- handshake ----------------------------------------------------------------------------
    def _check_response(self, head: bytes) -> str | None:
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or not status[0].startswith("HTTP/1."):
            return f"not an HTTP response: {lines[0][:100]!r}"
        if status[1] != "101":
            return f"the server answered HTTP {' '.join(status[1:])[:100]} instead of 101"
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if headers.get("upgrade", "").lower() != "websocket":
            return "the upgrade response has no 'Upgrade: websocket'"
        if "upgrade" not in headers.get("connection", "").lower():
            return "the upgrade response has no 'Connection: upgrade'"
        accept = base64.b64encode(hashlib.sha1(self._key + _GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != accept:
            return "the upgrade response has a wrong Sec-WebSocket-Accept"
        if headers.get("sec-websocket-extensions"):
            return "the server chose an extension that was not offered"
        return None

    def _fail_handshake(self, problem: str) -> None:
        if not self._handshake.done():
            self._handshake.set_exception(HandshakeError(problem))
        if self._transport is not None:
            self._transport.abort()

    # ---- frames -------------------------------------------------------------------------------
    def _queue_frame(self, opcode: int, payload: bytes) -> None:
        header = frame_header(opcode, len(payload), masked=True)
        mask = os.urandom(4)
        self._out += (header, mask, apply_mask(payload, mask) if payload else b"")
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        if out and self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(out))

    def _receive_frames(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos, n = 0, len(buf)
        while n - pos >= 2 and self._closed is None:
            b0, b1 = buf[pos], buf[pos + 1]
            sized = payload_length(buf, pos, n)
            if sized is None:
                break
            length, head = sized
            fin, opcode = b0 & 0x80, b0 & 0x0F
            if b0 & 0x70 or b1 & 0x80:
                self._fail(1002, "reserved bits set or a masked frame from the server")
                return
            if length > self._max_size:
                self._fail(1009, f"a frame of {length} bytes is over the {self._max_size} limit")
                return
            end = pos + head + length
            if end > n:
                break
            payload = bytes(buf[pos + head : end])
            pos = end
            if opcode >= 0x8:
                if not fin or length > 125:
                    self._fail(1002, "a fragmented or oversized control frame")
                    return
                self._control(opcode, payload)
            elif opcode == _OP_CONT:
                if not self._fragments:
                    self._fail(1002, "a continuation frame with nothing to continue")
                    return
                self._fragment(payload, fin)
            elif opcode in (_OP_TEXT, _OP_BINARY):
                if self._fragments:
                    self._fail(1002, "a new message inside a fragmented one")
                    return
                if fin:
                    self._deliver(opcode, payload)
                else:
                    self._fragment_opcode = opcode
                    self._fragment_size = 0
                    self._fragment(payload, fin)
            else:
                self._fail(1002, f"unknown opcode {opcode}")
                return
        del buf[:pos]

    def _fragment(self, payload: bytes, fin: int) -> None:
        self._fragments.append(payload)
        self._fragment_size += len(payload)
        if self._fragment_size > self._max_size:
            self._fail(1009, f"a message over the {self._max_size} byte limit")
            return
        if fin:
            data, self._fragments = b"".join(self._fragments), []
            self._deliver(self._fragment_opcode, data)

    def _deliver(self, opcode: int, payload: bytes) -> None:
        if self._close_sent:
            return  # closing: only the server's close frame matters now
        if opcode == _OP_TEXT:
            try:
                self._messages.append(payload.decode())
            except UnicodeDecodeError:
                self._fail(1007, "invalid UTF-8 in a text frame")
                return
        else:
            self._messages.append(payload)
        if not self._read_paused and len(self._messages) >= _READ_HIGH_WATER:
            self._read_paused = True
            if self._transport is not None:
                self._transport.pause_reading()
        self._wake()

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == _OP_PING:
            if not self._close_sent:
                self._queue_frame(_OP_PONG, payload)
            return
        if opcode == _OP_PONG:
            return
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        reason = payload[2:].decode(errors="replace")
        detail = f"{code}: {reason}" if reason else str(code)
        # echo the close (RFC 6455 5.5.1), then hang up
        self._hang_up(WebSocketClosed(f"closed by the server ({detail})", code), payload[:2])

    def _fail(self, code: int, problem: str) -> None:
        """A protocol violation by the server: close with ``code`` and stop reading."""
        closed = WebSocketClosed(f"protocol error from the server: {problem}", code)
        self._hang_up(closed, struct.pack("!H", code))

    def _hang_up(self, closed: WebSocketClosed, close_payload: bytes) -> None:
        """End the connection now: our close frame (unless sent already) goes out first."""
        self._closed = closed
        if not self._close_sent:
            self._close_sent = True
            self._queue_frame(_OP_CLOSE, close_payload)
        self._flush()
        if self._transport is not None:
            self._transport.close()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


async def connect(
    url: str, headers: dict[str, str], *, max_size: int, timeout: float = 10.0
) -> WebSocket:
    """Open a websocket to ``url`` (ws:// or wss://) sending ``headers`` with the upgrade."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise HandshakeError(f"not a websocket URL: {url}")
    secure = parts.scheme == "wss"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16))
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        _, ws = await loop.create_connection(
            lambda: WebSocket(key, max_size),
            host,
            port,
            ssl=ssl.create_default_context() if secure else None,
        )
        host_header = parts.netloc.rpartition("@")[2]
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {host_header}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key.decode()}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        for line in lines:
            if "\r" in line or "\n" in line:
                ws.abort()
                raise HandshakeError("a header contains a line break")
        assert ws._transport is not None
        ws._transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            await ws._handshake
        except BaseException:
            ws.abort()
            raise
    return ws
