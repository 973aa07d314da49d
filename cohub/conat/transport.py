"""A websocket-only Socket.IO v4 server as an ASGI app, built for the router's hot path.

It speaks exactly what Conat uses: the default namespace, events, acks in both directions,
binary attachments, and Engine.IO heartbeats. Each connection reads its frames in order and
hands complete events to a :class:`Handler`; a frame that does not parse closes that
connection and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

from ..cookies import parse_cookie_header
from . import wire
from .wire import Frame, Packet, ProtocolError

log = logging.getLogger("cohub.conat.transport")

_CONNECT_TIMEOUT_S = 45.0
# What the binary attachments of one packet may hold beyond max_payload: a Conat event carries
# one binary argument (a chunk of at most max_payload), so up to 16 attachments of 8 MB each
# would only ever be a way to make the server buffer 128 MB per socket.
ATTACHMENT_SLACK = 64 * 1024


class ConnectionClosedError(Exception):
    """The websocket is gone; an emit or call cannot be delivered."""


class Handler(Protocol):
    async def on_connect(self, conn: Connection) -> None: ...

    async def on_event(
        self, conn: Connection, event: str, args: list[Any], ack_id: int | None
    ) -> None: ...

    async def on_disconnect(self, conn: Connection) -> None: ...


class Connection:
    """One socket.io client on the default namespace."""

    __slots__ = (
        "_acks",
        "_closed",
        "_lock",
        "_next_ack",
        "_send",
        "address",
        "cookies",
        "last_seen",
        "sid",
        "state",
    )

    def __init__(self, send: Send, cookies: dict[str, str], address: str) -> None:
        self.sid = secrets.token_urlsafe(15)
        self.cookies = cookies
        self.address = address
        self.state: Any = None  # owned by the handler (the router's session)
        self.last_seen = time.monotonic()
        self._send = send
        self._lock = asyncio.Lock()
        self._closed = False
        self._next_ack = 0
        self._acks: dict[int, asyncio.Future[list[Any]]] = {}

    @property
    def closed(self) -> bool:
        return self._closed

    async def send_frames(self, frames: list[Frame]) -> None:
        """Write frames in order, never interleaved with another writer's frames."""
        if self._closed:
            raise ConnectionClosedError("connection closed")
        async with self._lock:
            try:
                for frame in frames:
                    if isinstance(frame, str):
                        await self._send({"type": "websocket.send", "text": frame})
                    else:
                        await self._send({"type": "websocket.send", "bytes": frame})
            except Exception as e:  # the ASGI server refuses sends after a disconnect
                self._closed = True
                raise ConnectionClosedError(str(e)) from None

    async def emit(self, event: str, *args: Any) -> None:
        await self.send_frames(wire.encode_event(event, list(args)))

    async def ack(self, ack_id: int, *args: Any) -> None:
        await self.send_frames(wire.encode_ack(ack_id, list(args)))

    async def call(self, event: str, *args: Any, timeout: float) -> list[Any]:
        """Emit with an ack request and wait for the client's ack arguments."""
        self._next_ack += 1
        ack_id = self._next_ack
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = future
        try:
            await self.send_frames(wire.encode_event(event, list(args), ack_id))
            return await asyncio.wait_for(future, timeout)
        finally:
            self._acks.pop(ack_id, None)

    def _resolve(self, ack_id: int | None, args: list[Any]) -> None:
        future = self._acks.get(ack_id) if ack_id is not None else None
        if future is not None and not future.done():
            future.set_result(args)

    async def close(self, code: int = 1000, *, notify: bool = True) -> None:
        """Send a socket.io disconnect (unless ``notify`` is false: the client asked to leave)
        and close the websocket with ``code``."""
        if self._closed:
            return
        if notify:
            with contextlib.suppress(ConnectionClosedError):
                await self.send_frames([wire.DISCONNECT_PACKET])
        self._closed = True
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": code})

    def _fail_pending(self) -> None:
        for future in self._acks.values():
            if not future.done():
                future.set_exception(ConnectionClosedError("connection closed"))


class SocketIOApp:
    """ASGI app for ``path``; plain HTTP there (long-polling) gets a clear 400."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_payload: int,
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
    ) -> None:
        self.handler = handler
        self.max_payload = max_payload
        self.max_attachment_bytes = max_payload + ATTACHMENT_SLACK
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.connections: set[Connection] = set()
        self._heartbeat: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await _http_refusal(send)
            return
        if scope["type"] != "websocket":
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("EIO") != ["4"] or query.get("transport") != ["websocket"]:
            await send({"type": "websocket.close", "code": 1002})
            return
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        cookies = parse_cookie_header(_header(scope, b"cookie"))
        client = scope.get("client") or ("", 0)
        conn = Connection(send, cookies, str(client[0]))
        self._ensure_heartbeat()
        self.connections.add(conn)
        try:
            await conn.send_frames(
                [
                    wire.open_packet(
                        conn.sid,
                        int(self.ping_interval * 1000),
                        int(self.ping_timeout * 1000),
                        self.max_payload,
                    )
                ]
            )
            await self._serve(conn, receive)
        except ConnectionClosedError:
            pass
        finally:
            self.connections.discard(conn)
            conn._closed = True
            conn._fail_pending()
            if conn.state is not None:
                await self.handler.on_disconnect(conn)

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.ensure_future(self._beat())

    async def _beat(self) -> None:
        """Ping every connection each interval; close those silent for interval + timeout."""
        while self.connections:
            await asyncio.sleep(self.ping_interval)
            deadline = time.monotonic() - self.ping_interval - self.ping_timeout
            for conn in list(self.connections):
                if conn.last_seen < deadline:
                    log.info("conat: closing %s: no pong within the ping timeout", conn.sid)
                    await conn.close(1001)
                    continue
                with contextlib.suppress(ConnectionClosedError):
                    await conn.send_frames([wire.EIO_PING])

    async def _serve(self, conn: Connection, receive: Receive) -> None:
        connected = False
        pending: Packet | None = None
        opened = time.monotonic()
        while True:
            if connected:
                message = await receive()
            else:
                timeout = max(0.0, _CONNECT_TIMEOUT_S - (time.monotonic() - opened))
                try:
                    message = await asyncio.wait_for(receive(), timeout)
                except TimeoutError:
                    log.info("conat: closing %s: no socket.io connect", conn.sid)
                    await conn.close(1008)
                    return
            mtype = message["type"]
            if mtype == "websocket.disconnect":
                return
            if mtype != "websocket.receive":
                continue
            conn.last_seen = time.monotonic()
            text = message.get("text")
            try:
                if text is None:
                    data = message.get("bytes") or b""
                    if len(data) > self.max_payload:
                        raise ProtocolError(f"binary frame of {len(data)} bytes")
                    pending = await self._binary(conn, pending, data)
                    continue
                if len(text) > self.max_payload:
                    raise ProtocolError(f"text frame of {len(text)} characters")
                if pending is not None:
                    raise ProtocolError("text frame while binary attachments were expected")
                kind = text[:1]
                if kind == wire.EIO_MESSAGE and len(text) > 1:
                    packet = wire.decode_message(text[1:])
                    if packet.type == wire.CONNECT:
                        connected = await self._connect(conn, packet, connected)
                    elif not connected:
                        raise ProtocolError("socket.io packet before connect")
                    elif packet.type == wire.DISCONNECT:
                        await conn.close(1000, notify=False)  # a clean close, not a dropped TCP
                        return
                    elif not packet.complete:
                        pending = packet
                    else:
                        await self._dispatch(conn, packet)
                elif kind == wire.EIO_PING:
                    await conn.send_frames([wire.EIO_PONG + text[1:]])
                elif kind in (wire.EIO_PONG, wire.EIO_NOOP, wire.EIO_MESSAGE):
                    pass  # pong, noop, or an empty message: nothing to do
                elif kind in (wire.EIO_OPEN, wire.EIO_UPGRADE):
                    pass  # meaningless from a websocket-only client; harmless
                elif kind == "b":  # base64 binary, as long-polling clients send it
                    data = wire.decode_base64(text[1:])
                    if data:
                        pending = await self._binary(conn, pending, data)
                elif kind == wire.EIO_CLOSE:
                    await conn.close(1000, notify=False)
                    return
                else:
                    raise ProtocolError(f"unknown engine.io packet type {kind!r}")
            except ProtocolError as e:
                log.info("conat: closing %s after a malformed frame: %.200s", conn.sid, e)
                await conn.close(1002)
                return

    async def _binary(self, conn: Connection, pending: Packet | None, data: bytes) -> Packet | None:
        """Add a binary frame to the packet waiting for it; dispatch it once complete."""
        if pending is None:
            raise ProtocolError("binary frame with no packet waiting for it")
        if pending.buffered + len(data) > self.max_attachment_bytes:
            raise ProtocolError(
                f"binary attachments of one packet over {self.max_attachment_bytes} bytes"
            )
        if not pending.add_attachment(data):
            return pending
        await self._dispatch(conn, pending)
        return None

    async def _connect(self, conn: Connection, packet: Packet, connected: bool) -> bool:
        if packet.namespace != "/":
            await conn.send_frames(
                [wire.connect_error_packet(packet.namespace, "Invalid namespace")]
            )
            return connected
        await conn.send_frames([wire.connect_packet(conn.sid)])
        if not connected:  # a repeated connect is answered again, never re-authenticated
            await self.handler.on_connect(conn)
        return True

    async def _dispatch(self, conn: Connection, packet: Packet) -> None:
        if packet.namespace != "/":
            return  # never connected there: drop, as socket.io does
        if packet.type in (wire.ACK, wire.BINARY_ACK):
            conn._resolve(packet.id, packet.data)
            return
        if packet.type not in (wire.EVENT, wire.BINARY_EVENT):
            raise ProtocolError(f"unexpected socket.io packet type {packet.type}")
        data = packet.data
        if isinstance(data, list) and data:
            await self.handler.on_event(conn, data[0], data[1:], packet.id)
        else:  # not [name, ...args]: the handler answers with an error ack
            await self.handler.on_event(conn, None, [], packet.id)

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        await asyncio.gather(*(c.close(1001) for c in list(self.connections)))


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


async def _http_refusal(send: Send) -> None:
    body = json.dumps({"code": 0, "message": "Transport unknown: use the websocket transport"})
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


Endpoint = Callable[[Scope, Receive, Send], Awaitable[None]]
