"""The client end of Socket.IO v4 over a websocket, on the same wire codec as the router.

Just what the Conat client needs: connect with headers (the cookies), events and acks both
ways, binary attachments, Engine.IO heartbeats, and reconnecting with jittered backoff for as
long as the client lives. Handlers run in arrival order, so chunks of a message stay in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from . import wire
from ._websocket import HandshakeError, WebSocket, WebSocketClosed
from ._websocket import connect as ws_connect
from .wire import Frame, Packet, ProtocolError

log = logging.getLogger("cohub.conat.socket")

EventHandler = Callable[..., Awaitable[Any] | Any]


def reconnect_delays(
    first: float = 0.5, cap: float = 15.0, rand: Callable[[], float] = random.random
) -> Iterator[float]:
    """The waits before successive reconnect attempts: doubling from ``first`` up to ``cap``,
    each jittered by +-50 % (so clients dropped together do not return together), and kept
    within [first, cap] as conat.md section 1 asks (jitter alone would reach 1.5 * cap)."""
    delay = first
    while True:
        yield min(cap, max(first, delay * (0.5 + rand())))
        delay = min(delay * 2, cap)


class SocketClosed(Exception):
    """No connection, or it went away before an ack came."""


class SocketIOClient:
    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        *,
        reconnect: bool = True,
        delay: float = 0.5,
        delay_max: float = 15.0,
        max_size: int = 2 * wire.MAX_ATTACHMENTS * 1024 * 1024,
    ) -> None:
        self._url = url
        self._headers = headers
        self._reconnect = reconnect
        self._delay = delay
        self._delay_max = delay_max
        self._max_size = max_size
        self._handlers: dict[str, EventHandler] = {}
        self._ws: WebSocket | None = None
        self._acks: dict[int, asyncio.Future[list[Any]]] = {}
        self._ack_ids = itertools.count(1)
        self._connected = asyncio.Event()
        self._first_error: BaseException | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stopped = False
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- public ------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def on(self, event: str, handler: EventHandler) -> None:
        """Register ``handler`` for ``event``; ``"*"`` gets every other event as
        ``handler(event, *args)``, ``"disconnect"`` is called when the connection drops."""
        self._handlers[event] = handler

    async def connect(self, timeout: float = 15.0) -> None:
        """Start the connection (and its reconnect loop); wait for the first connect."""
        self._stopped = False
        if self._runner is None or self._runner.done():
            self._runner = asyncio.ensure_future(self._run())
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            reason = f": {self._first_error}" if self._first_error else ""
            raise SocketClosed(
                f"could not connect to {self._url} within {timeout} s{reason}"
            ) from None

    async def emit(self, event: str, *args: Any) -> None:
        await self._send(wire.encode_event(event, list(args)))

    async def call(self, event: str, data: Any = None, timeout: float = 30.0) -> Any:
        """Emit with an ack; returns the ack's single argument (or the list of them)."""
        ack_id = next(self._ack_ids)
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = future
        try:
            await self._send(wire.encode_event(event, [data], ack_id))
            async with asyncio.timeout(timeout):  # unlike wait_for, no task per call
                args = await future
        finally:
            self._acks.pop(ack_id, None)
        return args[0] if len(args) == 1 else args

    async def disconnect(self) -> None:
        """Close for good: no reconnecting."""
        self._stopped = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(WebSocketClosed):
                ws.send([wire.DISCONNECT_PACKET])
            await ws.close()
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()

    # ---- connection loop -----------------------------------------------------------------------
    async def _send(self, frames: list[Frame]) -> None:
        ws = self._ws
        if ws is None or not self.connected:
            raise SocketClosed("not connected")
        try:
            ws.send(frames)  # synchronous: the frames of one packet stay together
            await ws.drain()
        except WebSocketClosed as e:
            raise SocketClosed(f"disconnected: {e}") from None

    async def _run(self) -> None:
        delays = reconnect_delays(self._delay, self._delay_max)
        while not self._stopped:
            try:
                # no extensions offered: never compress small frames (conat.md section 10);
                # no websocket pings: engine.io heartbeats instead
                ws = await ws_connect(self._url, self._headers, max_size=self._max_size)
                try:
                    timeout = await self._handshake(ws)
                    self._ws = ws
                    self._connected.set()
                    delays = reconnect_delays(self._delay, self._delay_max)
                    try:
                        await self._read(ws, timeout)
                    finally:
                        self._ws = None
                        self._connected.clear()
                        self._fail_pending()
                        await self._fire("disconnect")
                finally:
                    ws.abort()
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, ProtocolError, HandshakeError, WebSocketClosed) as e:
                self._first_error = self._first_error or e
                log.debug("conat socket: %s", e)
            if self._stopped or not self._reconnect:
                return
            await asyncio.sleep(next(delays))

    async def _handshake(self, ws: WebSocket) -> float:
        """Engine.IO open, then Socket.IO connect; returns the heartbeat timeout."""
        async with asyncio.timeout(10):
            opened = await ws.recv()
        if not isinstance(opened, str) or not opened.startswith(wire.EIO_OPEN):
            raise ProtocolError("no engine.io open packet")
        info = json.loads(opened[1:])
        timeout = (info.get("pingInterval", 25000) + info.get("pingTimeout", 20000)) / 1000
        ws.send(["40"])
        while True:
            async with asyncio.timeout(10):
                frame = await ws.recv()
            if frame == wire.EIO_PING:
                ws.send([wire.EIO_PONG])
            elif isinstance(frame, str) and frame.startswith("40"):
                return float(timeout)
            elif isinstance(frame, str) and frame.startswith("44"):
                raise ProtocolError(f"connect refused: {frame[2:]}")

    async def _read(self, ws: WebSocket, timeout: float) -> None:
        pending: Packet | None = None
        while True:
            try:
                async with asyncio.timeout(timeout):  # wait_for would cost a task per frame
                    frame = await ws.recv()
            except (TimeoutError, WebSocketClosed):
                return  # silent past the heartbeat, or gone: reconnect
            if isinstance(frame, bytes):
                if pending is not None and pending.add_attachment(frame):
                    packet, pending = pending, None
                    await self._dispatch(packet)
                continue
            if frame == wire.EIO_PING:
                with contextlib.suppress(WebSocketClosed):
                    ws.send([wire.EIO_PONG])
            elif frame.startswith(wire.EIO_MESSAGE) and len(frame) > 1:
                packet = wire.decode_message(frame[1:])
                if packet.type == wire.DISCONNECT:
                    return
                if not packet.complete:
                    pending = packet
                else:
                    await self._dispatch(packet)
            elif frame == wire.EIO_CLOSE:
                return

    async def _dispatch(self, packet: Packet) -> None:
        if packet.type in (wire.ACK, wire.BINARY_ACK):
            future = self._acks.get(packet.id) if packet.id is not None else None
            if future is not None and not future.done():
                future.set_result(packet.data)
            return
        if packet.type not in (wire.EVENT, wire.BINARY_EVENT) or not packet.data:
            return
        event, *args = packet.data
        if not isinstance(event, str):
            return
        result = await self._fire(event, *args)
        if packet.id is not None:
            args_out = [] if result is None else [result]
            with contextlib.suppress(SocketClosed):
                await self._send(wire.encode_ack(packet.id, args_out))

    async def _fire(self, event: str, *args: Any) -> Any:
        handler = self._handlers.get(event)
        try:
            if handler is not None:
                result = handler(*args)
            elif event != "disconnect" and "*" in self._handlers:
                result = self._handlers["*"](event, *args)
            else:
                return None
            return await result if inspect.isawaitable(result) else result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("conat socket: handler for %r failed", event)
        return None

    def _fail_pending(self) -> None:
        for future in self._acks.values():
            if not future.done():
                future.set_exception(SocketClosed("disconnected before the ack"))
