"""The asyncio Conat client every role uses.

    async with Client("http://127.0.0.1:5000", cookies={"hub_password": pw}) as nc:
        sub = await nc.subscribe("account.x.>")
        await nc.publish("account.x.y", {"hello": 1})
        async for msg in sub: ...
        reply = await nc.request("hub.account.x.api", {"name": "system.ping", "args": []})

The connection reconnects by itself with jittered backoff; on every ``info`` from the
router the client re-syncs its subscriptions, so iterators survive a router restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import string
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from . import protocol as P
from ._socket import SocketClosed, SocketIOClient
from .codec import Assembler, Headers, Message, check_encoding, encode, new_message_id, split
from .errors import (
    BadRequest,
    ConatError,
    ConnectionClosed,
    NoSubscribers,
    PermissionDenied,
    RequestTimeout,
    from_wire,
)
from .identity import Identity, identity_from_user
from .subjects import InvalidSubject, validate_pattern, validate_subject

log = logging.getLogger("cohub.conat.client")

_ALPHANUMERIC = string.digits + string.ascii_letters
_DENIAL_TTL_S = 60.0


def random_id(length: int = 10) -> str:
    # one read of the OS random source rather than one per character (a request makes two ids);
    # the slight modulo bias does not matter for inbox and queue names
    return "".join([_ALPHANUMERIC[b % 62] for b in secrets.token_bytes(length)])


def wait_for_interest_seconds(option: bool | float) -> float:
    """The wait a ``wait_for_interest`` option stands for: True is the default (30 s), a
    number is seconds, and either is capped at 90 s (the router would cut it there anyway)."""
    seconds = P.DEFAULT_WAIT_FOR_INTEREST if option is True else float(option)
    return min(max(seconds, 0.0), P.MAX_WAIT_FOR_INTEREST)


@dataclass(frozen=True, slots=True)
class PublishResult:
    bytes: int
    count: int


class Subscription:
    """An async iterator over the messages of one subscription. Close it when done."""

    def __init__(self, client: Client, subject: str) -> None:
        self.subject = subject
        self._client = client
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self.closed = False

    def _put(self, msg: Message) -> None:
        if not self.closed:
            self._queue.put_nowait(msg)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        if self.closed and self._queue.empty():
            raise StopAsyncIteration
        msg = await self._queue.get()
        if msg is None:
            raise StopAsyncIteration
        return msg

    async def next(self, timeout: float | None = None) -> Message:
        """The next message, or RequestTimeout after ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except TimeoutError:
            raise RequestTimeout(f"no message on '{self.subject}' within {timeout} s") from None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._queue.put_nowait(None)
        self._client._release(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class _Interest:
    """Local state for one server-side subscription (ref-counted over Subscriptions)."""

    __slots__ = ("assembler", "queue", "subs")

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.subs: list[Subscription] = []
        self.assembler = Assembler()


Handler = Callable[[Message], Awaitable[Any]]


class Client:
    """A Conat connection. Use as an async context manager or call connect()/close()."""

    def __init__(
        self,
        address: str,
        *,
        cookies: dict[str, str] | None = None,
        reconnect: bool = True,
        reconnect_delay: float = 0.5,
        reconnect_delay_max: float = 15.0,
    ) -> None:
        parts = urlsplit(address)
        scheme = "wss" if parts.scheme == "https" else "ws"
        base = parts.path.rstrip("/")
        self._url = f"{scheme}://{parts.netloc}{base}/conat/?EIO=4&transport=websocket"
        self._cookies = dict(cookies or {})
        headers = {}
        if self._cookies:
            headers["Cookie"] = "; ".join(
                f"{k}={quote(v, safe='')}" for k, v in self._cookies.items()
            )
        self.sio = SocketIOClient(
            self._url,
            headers,
            reconnect=reconnect,
            delay=reconnect_delay,
            delay_max=reconnect_delay_max,
            max_size=2 * P.MAX_HTTP_BUFFER_SIZE,
        )
        self.info: dict[str, Any] | None = None
        self._signed_in = asyncio.Event()
        self._interests: dict[str, _Interest] = {}
        self._denials: dict[tuple[str, str], tuple[float, str]] = {}
        self._inbox: str | None = None
        self._inbox_sub: Subscription | None = None
        self._replies: dict[str, asyncio.Queue[Message]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sync_lock = asyncio.Lock()
        self._recv0_messages = 0  # received since this connection began (the stats event)
        self._recv0_bytes = 0
        self._stats_task: asyncio.Task[None] | None = None
        self._closed = False
        self.sio.on("info", self._on_info)
        self.sio.on("permission", self._on_permission)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_delivery)

    # ---- lifecycle ----------------------------------------------------------------------------
    async def connect(self, timeout: float = 15.0) -> Client:
        """Connect and wait until the router has said who we are."""
        try:
            await self.sio.connect(timeout)
        except SocketClosed as e:
            raise ConnectionClosed(f"cannot connect to {self._url}: {e}") from e
        await self.wait_signed_in(timeout)
        return self

    async def wait_signed_in(self, timeout: float = 15.0) -> Identity:
        try:
            await asyncio.wait_for(self._signed_in.wait(), timeout)
        except TimeoutError:
            raise ConnectionClosed(f"not signed in within {timeout} s") from None
        identity = self.identity
        if identity is None:
            user = (self.info or {}).get("user") or {}
            raise ConatError(
                f"failed to sign in: {user.get('error', 'unknown error')}", user.get("code", 401)
            )
        return identity

    @property
    def identity(self) -> Identity | None:
        return identity_from_user((self.info or {}).get("user", {}))

    @property
    def connected(self) -> bool:
        return bool(self.sio.connected)

    async def close(self) -> None:
        self._closed = True
        for interest in list(self._interests.values()):
            for sub in list(interest.subs):
                sub.closed = True
                sub._queue.put_nowait(None)
        self._interests.clear()
        for task in list(self._tasks):
            task.cancel()
        await self.sio.disconnect()

    async def __aenter__(self) -> Client:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- server events ------------------------------------------------------------------------
    async def _on_info(self, info: Any) -> None:
        if not isinstance(info, dict):
            return
        self.info = info
        self._signed_in.set()
        if self.identity is not None:
            self._spawn(self._sync_subscriptions())
            if self._stats_task is None or self._stats_task.done():
                self._stats_task = asyncio.ensure_future(self._report_stats())
                self._tasks.add(self._stats_task)
                self._stats_task.add_done_callback(self._tasks.discard)

    async def _on_permission(self, payload: Any) -> None:
        if isinstance(payload, dict) and isinstance(payload.get("subject"), str):
            key = (str(payload.get("type")), payload["subject"])
            self._denials[key] = (
                time.monotonic(),
                str(payload.get("message", "permission denied")),
            )

    async def _on_disconnect(self, *args: Any) -> None:
        self._signed_in.clear()
        self._recv0_messages = self._recv0_bytes = 0

    async def _report_stats(self) -> None:
        """Tell the router what this connection has received, every few seconds; also let
        go of partial messages that went stale while no further chunk arrived to notice."""
        while not self._closed:
            await asyncio.sleep(P.STATS_INTERVAL_S)
            for interest in list(self._interests.values()):
                if len(interest.assembler):
                    interest.assembler.expire()
            if self.connected:
                recv0 = {"messages": self._recv0_messages, "bytes": self._recv0_bytes}
                with contextlib.suppress(SocketClosed):
                    await self.sio.emit(P.STATS, {"recv0": recv0})

    async def _on_delivery(self, event: str, payload: Any = None) -> None:
        interest = self._interests.get(event)
        if interest is None or not isinstance(payload, dict):
            return
        data = payload.get("data")
        subject = payload.get("subject")
        if not isinstance(data, list) or len(data) < 5 or not isinstance(subject, str):
            return
        msg_id, seq, done, encoding, chunk = data[:5]
        headers = data[5] if len(data) > 5 and isinstance(data[5], dict) else None
        if not isinstance(chunk, bytes):
            return
        self._recv0_messages += 1
        self._recv0_bytes += len(chunk)
        msg = interest.assembler.feed(subject, msg_id, seq, bool(done), encoding, chunk, headers)
        if msg is not None:
            for sub in interest.subs:
                sub._put(msg)

    async def _sync_subscriptions(self) -> None:
        """Make the router's subscription list equal to ours (after every info)."""
        async with self._sync_lock:
            for _attempt in range(5):
                if self._closed or not self.connected:
                    return
                try:
                    server = set(await self.sio.call(P.SUBSCRIPTIONS, None, timeout=10))
                    missing = [
                        {"subject": s, "queue": i.queue}
                        for s, i in self._interests.items()
                        if s not in server
                    ]
                    extra = [{"subject": s} for s in server if s not in self._interests]
                    if missing:
                        results = await self.sio.call(P.SUBSCRIBE, missing, timeout=10)
                        for item, result in zip(missing, results or [], strict=False):
                            if isinstance(result, dict) and "error" in result:
                                log.warning("resubscribe to %s failed: %s", item["subject"], result)
                    if extra:
                        await self.sio.call(P.UNSUBSCRIBE, extra, timeout=10)
                    if not missing and not extra:
                        return
                except (SocketClosed, TimeoutError, TypeError) as e:
                    log.info("subscription sync failed (%s); retrying", e)
                    await asyncio.sleep(1.0)

    # ---- local denial cache -------------------------------------------------------------------
    def _check_denied(self, action: str, subject: str) -> None:
        hit = self._denials.get((action, subject))
        if hit is None:
            return
        if time.monotonic() - hit[0] < _DENIAL_TTL_S:
            raise PermissionDenied(hit[1])
        del self._denials[(action, subject)]

    async def _call(self, event: str, data: Any, timeout: float) -> Any:
        if self._closed:
            raise ConnectionClosed("client is closed")
        try:
            return await self.sio.call(event, data, timeout=timeout)
        except TimeoutError:
            raise RequestTimeout(f"timeout - no ack for '{event}' within {timeout} s") from None
        except SocketClosed as e:
            raise ConnectionClosed(f"disconnected: {e}") from None

    # ---- subscribe ----------------------------------------------------------------------------
    async def subscribe(self, subject: str, queue: str | None = None) -> Subscription:
        try:
            validate_pattern(subject)
        except InvalidSubject as e:
            raise BadRequest(f"invalid subject: {e}") from None
        self._check_denied("sub", subject)
        interest = self._interests.get(subject)
        if interest is not None:
            if queue is not None and queue != interest.queue:
                raise BadRequest(
                    f"client can only have one queue group per subject ('{subject}' "
                    f"already has queue '{interest.queue}')"
                )
            sub = Subscription(self, subject)
            interest.subs.append(sub)
            return sub
        interest = _Interest(queue if queue is not None else random_id())
        self._interests[subject] = interest
        sub = Subscription(self, subject)
        interest.subs.append(sub)
        await self.wait_signed_in()
        try:
            result = await self._call(
                P.SUBSCRIBE, {"subject": subject, "queue": interest.queue}, 60
            )
        except ConatError:
            self._drop_interest(subject, interest)
            raise
        if isinstance(result, dict) and "error" in result:
            self._drop_interest(subject, interest)
            raise from_wire(result)
        return sub

    def _drop_interest(self, subject: str, interest: _Interest) -> None:
        if self._interests.get(subject) is interest:
            del self._interests[subject]
        for sub in interest.subs:
            sub.closed = True
            sub._queue.put_nowait(None)

    def _release(self, sub: Subscription) -> None:
        interest = self._interests.get(sub.subject)
        if interest is None or sub not in interest.subs:
            return
        interest.subs.remove(sub)
        if not interest.subs:
            del self._interests[sub.subject]
            if self.connected and not self._closed:
                self._spawn(self._emit_quietly(P.UNSUBSCRIBE, {"subject": sub.subject}))

    async def _emit_quietly(self, event: str, data: Any) -> None:
        """Best effort: a dropped connection re-syncs subscriptions on its next info."""
        with contextlib.suppress(SocketClosed):
            await self.sio.emit(event, data)

    # ---- publish ------------------------------------------------------------------------------
    def _chunks(
        self, subject: str, data: Any, headers: Headers | None, encoding: int, raw: bytes | None
    ) -> tuple[int, list[list[Any]]]:
        try:
            validate_subject(subject)
        except InvalidSubject as e:
            raise BadRequest(f"invalid subject: {e}") from None
        self._check_denied("pub", subject)
        encoding = check_encoding(encoding)
        payload = encode(data, encoding) if raw is None else raw
        max_payload = int((self.info or {}).get("max_payload") or P.MAX_PAYLOAD)
        chunk_size = max(1000, max_payload - 100_000)
        msg_id = new_message_id()
        pieces = list(split(payload, chunk_size))
        frames = []
        for seq, piece in enumerate(pieces):
            last = seq == len(pieces) - 1
            frame: list[Any] = [subject, msg_id, seq, 1 if last else 0, encoding, piece]
            if last and headers:
                frame.append(headers)
            frames.append(frame)
        return len(payload), frames

    async def publish(
        self,
        subject: str,
        data: Any = None,
        *,
        headers: Headers | None = None,
        encoding: int = P.Encoding.MSGPACK,
        raw: bytes | None = None,
        wait_for_interest: bool | float = False,
        timeout: float = P.PUBLISH_ACK_TIMEOUT,
    ) -> PublishResult:
        """Publish and wait for the router's ack; returns bytes sent and receivers counted."""
        size, frames = self._chunks(subject, data, headers, encoding, raw)
        await self.wait_signed_in()
        count = await self._send_frames(frames, timeout)
        if count == 0 and wait_for_interest:
            if await self.wait_for_interest(subject, wait_for_interest_seconds(wait_for_interest)):
                count = await self._send_frames(frames, timeout)
        return PublishResult(size, count)

    async def _send_frames(self, frames: list[list[Any]], timeout: float) -> int:
        count = 0
        for frame in frames:
            ack = await self._call(P.PUBLISH, frame, timeout)
            if not isinstance(ack, dict):
                raise ConatError(f"unexpected publish ack {ack!r}")
            if "error" in ack:
                raise from_wire(ack)
            count = max(count, int(ack.get("count", 0)))
        return count

    async def publish_sync(
        self,
        subject: str,
        data: Any = None,
        *,
        headers: Headers | None = None,
        encoding: int = P.Encoding.MSGPACK,
    ) -> None:
        """Fire and forget: no ack, no count."""
        _, frames = self._chunks(subject, data, headers, encoding, None)
        try:
            for frame in frames:
                await self.sio.emit(P.PUBLISH, frame)
        except SocketClosed as e:
            raise ConnectionClosed(f"disconnected: {e}") from None

    async def wait_for_interest(
        self, subject: str, timeout: float = P.DEFAULT_WAIT_FOR_INTEREST
    ) -> bool:
        timeout = wait_for_interest_seconds(timeout)
        result = await self._call(
            P.WAIT_FOR_INTEREST, {"subject": subject, "timeout": int(timeout * 1000)}, timeout + 5
        )
        if isinstance(result, dict) and "error" in result:
            raise from_wire(result)
        return result is True

    # ---- request / reply ----------------------------------------------------------------------
    async def _ensure_inbox(self) -> str:
        if self._inbox is None:
            identity = await self.wait_signed_in()
            inbox = f"{identity.inbox_prefix}.{random_id()}"
            self._inbox_sub = await self.subscribe(f"{inbox}.*")
            self._inbox = inbox
            self._spawn(self._dispatch_replies(self._inbox_sub))
        return self._inbox

    async def _dispatch_replies(self, sub: Subscription) -> None:
        async for msg in sub:
            queue = self._replies.get(msg.subject)
            if queue is not None:
                queue.put_nowait(msg)

    async def request(
        self,
        subject: str,
        data: Any = None,
        *,
        headers: Headers | None = None,
        timeout: float = P.DEFAULT_REQUEST_TIMEOUT,
        wait_for_interest: bool = False,
        encoding: int = P.Encoding.MSGPACK,
    ) -> Message:
        """Send one request and return the first reply (503 with no listener, 408 on timeout)."""
        replies = self.request_many(
            subject,
            data,
            headers=headers,
            timeout=timeout,
            max_messages=1,
            wait_for_interest=wait_for_interest,
            encoding=encoding,
        )
        async with contextlib.aclosing(replies):
            async for msg in replies:
                return msg
        raise RequestTimeout("timeout")

    async def request_many(
        self,
        subject: str,
        data: Any = None,
        *,
        headers: Headers | None = None,
        timeout: float = P.DEFAULT_REQUEST_TIMEOUT,
        max_wait: float | None = None,
        max_messages: int | None = None,
        wait_for_interest: bool = False,
        encoding: int = P.Encoding.MSGPACK,
    ) -> AsyncIterator[Message]:
        """Replies as they come. ``max_wait`` is an idle timeout after the first reply; a
        reply whose data is None ends the stream by convention."""
        if timeout <= 0:
            raise BadRequest("timeout must be positive")
        inbox = await self._ensure_inbox()
        reply_subject = f"{inbox}.{random_id()}"
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self._replies[reply_subject] = queue
        try:
            hdrs = dict(headers or {})
            hdrs[P.REPLY_HEADER] = reply_subject
            started = time.monotonic()
            result = await self.publish(subject, data, headers=hdrs, encoding=encoding)
            if result.count == 0 and wait_for_interest:
                remaining = timeout - (time.monotonic() - started)
                if remaining > 0.5 and await self.wait_for_interest(subject, remaining):
                    result = await self.publish(subject, data, headers=hdrs, encoding=encoding)
            if result.count == 0:
                raise NoSubscribers(f"request -- no subscribers matching '{subject}'")
            received = 0
            wait = timeout
            while max_messages is None or received < max_messages:
                try:
                    async with asyncio.timeout(wait):  # wait_for would cost a task per reply
                        msg = await queue.get()
                except TimeoutError:
                    if received == 0:
                        raise RequestTimeout("timeout") from None
                    return
                if msg.raw in (b"\xc0", b"null") and received > 0:
                    return  # a null message ends a stream of replies
                received += 1
                yield msg
                wait = max_wait if max_wait is not None else timeout
        finally:
            self._replies.pop(reply_subject, None)

    async def respond(self, msg: Message, data: Any, *, headers: Headers | None = None) -> None:
        """Reply to a request message (waits briefly for the requester's inbox)."""
        reply_to = msg.reply_to
        if reply_to is None:
            return
        await self.publish(reply_to, data, headers=headers, wait_for_interest=10.0)

    # ---- services -----------------------------------------------------------------------------
    async def service(
        self, subject: str, handler: Handler, *, queue: str = P.SERVICE_QUEUE
    ) -> asyncio.Task[None]:
        """Answer requests on ``subject`` with ``handler(msg)``; a raised error is replied as
        ``{error, code}`` data and an ``error`` header. Cancel the task to stop."""
        sub = await self.subscribe(subject, queue=queue)

        async def serve() -> None:
            try:
                async for msg in sub:
                    self._spawn(self._answer(msg, handler))
            finally:
                sub.close()

        task = asyncio.ensure_future(serve())
        return task

    async def _answer(self, msg: Message, handler: Handler) -> None:
        try:
            result = await handler(msg)
            headers = None
        except asyncio.CancelledError:
            raise
        except ConatError as e:
            result, headers = e.to_wire(), {P.ERROR_HEADER: e.message, "code": e.code}
        except Exception as e:
            log.exception("service handler failed on %s", msg.subject)
            result, headers = {"error": str(e), "code": 500}, {P.ERROR_HEADER: str(e)}
        try:
            await self.respond(msg, result, headers=headers)
        except ConatError as e:
            log.info("could not reply on %s: %s", msg.reply_to, e)

    async def call(self, subject: str, name: str, *args: Any, timeout: float = 30.0) -> Any:
        """Call a ``{name, args}`` service function; raises ServiceError on ``{error}``."""
        reply = await self.request(subject, {"name": name, "args": list(args)}, timeout=timeout)
        data = reply.data
        error = (reply.headers or {}).get(P.ERROR_HEADER)
        if error is None and isinstance(data, dict) and "error" in data:
            error = data["error"]
        if error is not None:
            code = data.get("code") if isinstance(data, dict) else None
            raise from_wire({"error": error, "code": code if code is not None else 500})
        return data
