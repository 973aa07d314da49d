"""The Conat router: a socket.io v4 server that routes messages by subject.

Every socket authenticates once, from its handshake cookies, and is then told who it is by
an ``info`` event. Subscriptions live in one :class:`~cohub.conat.subjects.Interest` table;
a publish is delivered once per matching pattern and queue group, to one member chosen at
random, under an event named after the subscribed pattern.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import random
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import socketio
from socketio import packet as sio_packet

from ..cookies import parse_cookie_header
from . import protocol as P
from .codec import check_encoding, check_headers, decode
from .errors import BadRequest, ConatError, PermissionDenied, TooMany, Unauthorized
from .identity import Identity
from .permissions import Action, Permissions
from .subjects import Interest, InvalidSubject, validate_pattern, validate_subject

log = logging.getLogger("cohub.conat.router")

Authenticate = Callable[[Mapping[str, str]], Awaitable[Identity]]
Ack = dict[str, Any]

_MAX_ID_LENGTH = 128
_MAX_QUEUE_LENGTH = 128
_AUTH_FAILURE_DELAY_S = 0.025
_INFO_TRY_TIMEOUT_S = 7.5
_INFO_GIVE_UP_S = 120.0
_SILENT_PATTERN = ">"


# Event names a client must never fire: python-socketio would run the server's own
# connect/disconnect handlers for them.
_RESERVED_EVENTS = frozenset({"connect", "connect_error", "disconnect", "__disconnect_final"})
# A Conat event carries at most one binary argument (the publish chunk).
_MAX_ATTACHMENTS = 16


def _bad_engineio_text(text: str) -> bool:
    """True for a websocket text frame python-engineio cannot decode (it would raise)."""
    if not text:
        return True
    if text[0] == "b":  # base64 binary message
        try:
            base64.b64decode(text[1:])
        except (binascii.Error, ValueError):
            return True
        return False
    return text[0] not in "0123456"  # open, close, ping, pong, message, upgrade, noop


class _SocketIOServer(socketio.AsyncServer):
    """python-socketio, hardened against hostile frames.

    A packet that cannot be parsed closes that connection (as the reference socket.io server
    does) instead of costing a logged traceback; an event whose name is not a string, or is a
    reserved name such as ``disconnect``, is refused with a 400 ack.
    """

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        try:
            await super()._handle_eio_message(eio_sid, data)
            pending = self._binary_packet.get(eio_sid)
            if pending is not None and pending.attachment_count > _MAX_ATTACHMENTS:
                # every attachment would be buffered until the last one arrives
                raise ValueError(f"{pending.attachment_count} binary attachments announced")
        except Exception as e:
            self._binary_packet.pop(eio_sid, None)
            log.info("conat: closing %s after a malformed socket.io packet: %.200s", eio_sid, e)
            socket = self.eio.sockets.get(eio_sid)
            await self.eio.disconnect(eio_sid)
            if socket is not None:
                socket.queue.put_nowait(None)  # stop its writer, which closes the websocket

    async def _handle_event(self, eio_sid: str, namespace: Any, id: Any, data: Any) -> None:
        if (
            isinstance(data, list)
            and data
            and isinstance(data[0], str)
            and data[0] not in _RESERVED_EVENTS
        ):
            await super()._handle_event(eio_sid, namespace, id, data)
            return
        event = data[0] if isinstance(data, list) and data else data
        log.info("conat: refusing malformed event %.100r from %s", event, eio_sid)
        if id is not None and self.manager.sid_from_eio_sid(eio_sid, namespace or "/"):
            error = BadRequest("malformed event: expected [name, ...args] with a string name")
            await self._send_packet(
                eio_sid,
                self.packet_class(
                    sio_packet.ACK, namespace=namespace, id=id, data=[error.to_wire()]
                ),
            )


@dataclass(slots=True)
class _Session:
    sid: str
    identity: Identity | None = None
    auth_error: ConatError | None = None
    subs: dict[str, str] = field(default_factory=dict)  # pattern -> queue
    connected_at: float = field(default_factory=time.time)
    address: str = ""
    client_stats: dict[str, Any] = field(default_factory=dict)
    sent_messages: int = 0
    sent_bytes: int = 0
    recv_messages: int = 0
    recv_bytes: int = 0


class Router:
    """One router node. Mount :meth:`asgi_app` at ``<base-path>conat``."""

    def __init__(
        self,
        authenticate: Authenticate,
        permissions: Permissions,
        *,
        server_id: str = "0",
        cluster_name: str | None = None,
        max_payload: int = P.MAX_PAYLOAD,
        max_connections: int = P.MAX_CONNECTIONS_PER_SERVER,
        max_connections_per_user: int = P.MAX_CONNECTIONS_PER_USER,
    ) -> None:
        self._authenticate = authenticate
        self.permissions = permissions
        self.server_id = server_id
        self.cluster_name = cluster_name
        self.max_payload = max_payload
        self.max_connections = max_connections
        self.max_connections_per_user = max_connections_per_user
        self.interest: Interest[tuple[str, str]] = Interest()
        self._sessions: dict[str, _Session] = {}
        self._per_user: dict[str, int] = {}
        self._interest_changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.sio = _SocketIOServer(
            async_mode="asgi",
            transports=["websocket"],
            cors_allowed_origins="*",
            max_http_buffer_size=P.MAX_HTTP_BUFFER_SIZE,
            logger=False,
            engineio_logger=False,
        )
        self._install_handlers()

    # ---- public surface ---------------------------------------------------------------------
    def asgi_app(self, path: str, other: Any = None) -> Callable[..., Awaitable[None]]:
        """The ASGI app serving socket.io at ``path`` (e.g. ``/conat``), else ``other``.

        A websocket text frame python-engineio cannot even decode ends that connection as if
        the client had gone, instead of escaping as an "Exception in ASGI application".
        """
        inner = socketio.ASGIApp(self.sio, other_asgi_app=other, socketio_path=path.strip("/"))

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope.get("type") != "websocket":
                await inner(scope, receive, send)
                return

            async def guarded_receive() -> dict[str, Any]:
                message: dict[str, Any] = await receive()
                text = message.get("text")
                if (
                    message.get("type") == "websocket.receive"
                    and isinstance(text, str)
                    and _bad_engineio_text(text)
                ):
                    log.info("conat: closing websocket after malformed frame %.40r", text)
                    return {"type": "websocket.disconnect", "code": 1003}
                return message

            await inner(scope, guarded_receive, send)

        return app

    @property
    def connection_count(self) -> int:
        return len(self._sessions)

    def subscription_count(self) -> int:
        return len(self.interest)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for sid in list(self._sessions):
            with contextlib.suppress(Exception):
                await self.sio.disconnect(sid)

    # ---- plumbing ---------------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _install_handlers(self) -> None:
        on = self.sio.on
        on("connect", self._on_connect)
        on("disconnect", self._on_disconnect)
        on(P.SUBSCRIBE, self._guard(self._on_subscribe))
        on(P.UNSUBSCRIBE, self._guard(self._on_unsubscribe))
        on(P.SUBSCRIPTIONS, self._guard(self._on_subscriptions))
        on(P.PUBLISH, self._guard(self._on_publish))
        on(P.WAIT_FOR_INTEREST, self._guard(self._on_wait_for_interest))
        on(P.STATS, self._guard(self._on_stats))
        on("*", self._on_unknown)

    def _guard(
        self, handler: Callable[[_Session, Any], Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        """Run a handler for an authenticated session; turn every failure into an error ack."""

        async def run(sid: str, *args: Any) -> Any:
            session = self._sessions.get(sid)
            if session is None or session.identity is None:
                return Unauthorized("not signed in").to_wire()
            payload = args[0] if args else None
            try:
                return await handler(session, payload)
            except ConatError as e:
                return e.to_wire()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bug must cost one ack, not the server
                log.exception("conat handler %s failed", getattr(handler, "__name__", "?"))
                return {"error": f"internal error: {e}", "code": 500}

        return run

    async def _on_unknown(self, event: str, sid: str, *args: Any) -> Ack:
        log.info(
            "conat: unknown event %r from %s", event[:100] if isinstance(event, str) else event, sid
        )
        return BadRequest(f"unknown event {str(event)[:100]!r}").to_wire()

    # ---- connection lifecycle ---------------------------------------------------------------
    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        session = _Session(sid, address=str(environ.get("REMOTE_ADDR", "")))
        self._sessions[sid] = session
        cookies = parse_cookie_header(str(environ.get("HTTP_COOKIE", "")))
        try:
            identity = await self._authenticate(cookies)
            if len(self._sessions) > self.max_connections:
                raise TooMany(
                    f"There is a global limit of {self.max_connections} connections. "
                    "Please close browser tabs or files or come back later."
                )
            if self._per_user.get(identity.key, 0) >= self.max_connections_per_user:
                raise TooMany(
                    f"There is a per user limit of {self.max_connections_per_user} connections. "
                    "Please close browser tabs or files or come back later."
                )
        except ConatError as e:
            session.auth_error = e
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("conat: authentication failed unexpectedly")
            session.auth_error = ConatError(f"authentication failed: {e}", 500)
        else:
            session.identity = identity
            self._per_user[identity.key] = self._per_user.get(identity.key, 0) + 1
        self._spawn(self._send_info(session))
        return True

    def _info(self, session: _Session) -> dict[str, Any]:
        if session.identity is not None:
            user: dict[str, Any] = session.identity.user
        else:
            err = session.auth_error or Unauthorized("not signed in")
            user = {"error": err.message, "code": err.code}
        info: dict[str, Any] = {"max_payload": self.max_payload, "id": self.server_id, "user": user}
        if self.cluster_name is not None:
            info["clusterName"] = self.cluster_name
        return info

    async def _send_info(self, session: _Session) -> None:
        sid = session.sid
        if session.identity is None:
            await self.sio.emit(P.INFO, self._info(session), to=sid)
            await asyncio.sleep(_AUTH_FAILURE_DELAY_S)
            await self.sio.disconnect(sid)
            return
        started = time.monotonic()
        delay = 5.0
        while sid in self._sessions and time.monotonic() - started < _INFO_GIVE_UP_S:
            try:
                await self.sio.call(
                    P.INFO, self._info(session), to=sid, timeout=_INFO_TRY_TIMEOUT_S
                )
                return
            except (socketio.exceptions.TimeoutError, socketio.exceptions.SocketIOError):
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 30.0)

    async def _on_disconnect(self, sid: str, *args: Any) -> None:
        session = self._sessions.pop(sid, None)
        if session is None:
            return
        for pattern, queue in session.subs.items():
            self.interest.remove(pattern, queue, (sid, pattern))
        session.subs.clear()
        if session.identity is not None:
            key = session.identity.key
            left = self._per_user.get(key, 1) - 1
            if left > 0:
                self._per_user[key] = left
            else:
                self._per_user.pop(key, None)

    # ---- permissions ------------------------------------------------------------------------
    async def _check(self, session: _Session, action: Action, subject: str) -> None:
        assert session.identity is not None
        if await self.permissions.allowed(session.identity, action, subject):
            return
        verb = "publishing to" if action == "pub" else "subscribing to"
        message = f"permission denied {verb} '{subject}' from {session.identity.user}"
        await self.sio.emit(
            P.PERMISSION, {"message": message, "subject": subject, "type": action}, to=session.sid
        )
        raise PermissionDenied(message)

    # ---- subscribe --------------------------------------------------------------------------
    async def _on_subscribe(self, session: _Session, payload: Any) -> Any:
        if isinstance(payload, list):
            if len(payload) > P.MAX_SUBSCRIPTIONS_PER_HUB:
                raise BadRequest("too many subscriptions in one request")
            results = []
            for item in payload:
                try:
                    results.append(await self._subscribe_one(session, item))
                except ConatError as e:
                    results.append(e.to_wire())
            return results
        return await self._subscribe_one(session, payload)

    async def _subscribe_one(self, session: _Session, item: Any) -> Ack:
        if not isinstance(item, dict):
            raise BadRequest("subscribe expects {subject, queue}")
        subject, queue = item.get("subject"), item.get("queue")
        if not isinstance(queue, str) or not queue or len(queue) > _MAX_QUEUE_LENGTH:
            raise BadRequest("queue must be defined (a string of 1-128 characters)")
        try:
            validate_pattern(subject)  # type: ignore[arg-type]
        except InvalidSubject as e:
            raise BadRequest(f"invalid subject: {e}") from None
        assert isinstance(subject, str)
        if subject in session.subs:
            return {"status": "already-added"}
        await self._check(session, "sub", subject)
        assert session.identity is not None
        limit = (
            P.MAX_SUBSCRIPTIONS_PER_HUB
            if session.identity.is_hub
            else P.MAX_SUBSCRIPTIONS_PER_SOCKET
        )
        if len(session.subs) >= limit:
            raise TooMany(
                f"there is a limit of at most {limit} subscriptions and you currently have "
                f"{len(session.subs)} subscriptions -- subscription to '{subject}' denied"
            )
        if session.sid not in self._sessions:
            raise Unauthorized("disconnected")
        session.subs[subject] = queue
        self.interest.add(subject, queue, (session.sid, subject))
        self._interest_changed.set()
        self._interest_changed = asyncio.Event()
        return {"status": "added"}

    async def _on_unsubscribe(self, session: _Session, payload: Any) -> Any:
        items = payload if isinstance(payload, list) else [payload]
        results: list[None] = []
        for item in items:
            subject = item.get("subject") if isinstance(item, dict) else None
            if isinstance(subject, str):
                queue = session.subs.pop(subject, None)
                if queue is not None:
                    self.interest.remove(subject, queue, (session.sid, subject))
            results.append(None)
        return results if isinstance(payload, list) else None

    async def _on_subscriptions(self, session: _Session, payload: Any) -> list[str]:
        return list(session.subs)

    async def _on_stats(self, session: _Session, payload: Any) -> None:
        if isinstance(payload, dict) and isinstance(payload.get("recv0"), dict):
            recv0 = payload["recv0"]
            session.client_stats = {
                k: v for k, v in recv0.items() if k in ("messages", "bytes") and isinstance(v, int)
            }

    # ---- publish ----------------------------------------------------------------------------
    async def _on_publish(self, session: _Session, payload: Any) -> Ack:
        if not isinstance(payload, list) or not 6 <= len(payload) <= 8:
            raise BadRequest("publish expects [subject, id, seq, done, encoding, chunk, headers?]")
        subject, msg_id, seq, done, encoding, chunk = payload[:6]
        headers = payload[6] if len(payload) > 6 else None
        targets = payload[7] if len(payload) > 7 else None
        if not isinstance(subject, str):
            raise BadRequest("invalid subject: must be a string")
        try:
            validate_subject(subject)
        except InvalidSubject as e:
            raise BadRequest(f"invalid subject: {e}") from None
        if not isinstance(msg_id, str) or not msg_id or len(msg_id) > _MAX_ID_LENGTH:
            raise BadRequest("message id must be a non-empty string of at most 128 characters")
        if type(seq) is not int or seq < 0:
            raise BadRequest("seq must be a non-negative integer")
        if done not in (0, 1) or type(done) not in (int, bool):
            raise BadRequest("done must be 0 or 1")
        check_encoding(encoding)
        if not isinstance(chunk, bytes | bytearray):
            raise BadRequest("chunk must be binary")
        if len(chunk) > self.max_payload:
            raise BadRequest(f"chunk is {len(chunk)} bytes; max_payload is {self.max_payload}")
        check_headers(headers)
        assert session.identity is not None
        if targets is not None and not session.identity.is_hub:
            raise PermissionDenied("only hub and system identities may give delivery targets")
        await self._check(session, "pub", subject)
        session.recv_messages += 1
        session.recv_bytes += len(chunk)
        data = [msg_id, seq, done, encoding, chunk, headers]
        if subject == P.PERMISSIONS_CHANGED and session.identity.is_hub:
            self._forget_permissions(chunk, encoding)
        if targets is not None:
            return {"count": await self._deliver_to_targets(subject, data, targets)}
        return {"count": await self._route(subject, data)}

    def _forget_permissions(self, chunk: bytes, encoding: int) -> None:
        try:
            change = decode(chunk, encoding)
        except ConatError:
            change = None
        project_id = change.get("project_id") if isinstance(change, dict) else None
        self.permissions.forget(project_id if isinstance(project_id, str) else None)

    async def _route(self, subject: str, data: list[Any]) -> int:
        count = 0
        message = {"subject": subject, "data": data}
        single_chunk = data[1] == 0 and data[2]
        for pattern, queues in self.interest.match(subject):
            silent = pattern == _SILENT_PATTERN
            for members in queues.values():
                if len(members) == 1:
                    sid, _ = next(iter(members))
                elif single_chunk:
                    sid, _ = random.choice(tuple(members))
                else:
                    # every chunk of one message must reach the same member of a queue group
                    ordered = sorted(members)
                    sid, _ = ordered[zlib.crc32(data[0].encode()) % len(ordered)]
                await self._emit(sid, pattern, message, len(data[4]))
                if not silent:
                    count += 1
        return count

    async def _deliver_to_targets(self, subject: str, data: list[Any], targets: Any) -> int:
        if not isinstance(targets, list):
            raise BadRequest("targets must be a list of {pattern, target}")
        message = {"subject": subject, "data": data}
        count = 0
        for t in targets:
            if not isinstance(t, dict):
                continue
            pattern, sid = t.get("pattern"), t.get("target")
            session = self._sessions.get(sid) if isinstance(sid, str) else None
            if session is not None and pattern in session.subs:
                await self._emit(sid, pattern, message, len(data[4]))
                count += pattern != _SILENT_PATTERN
        return count

    async def _emit(self, sid: str, event: str, message: dict[str, Any], size: int) -> None:
        session = self._sessions.get(sid)
        if session is None:
            return
        session.sent_messages += 1
        session.sent_bytes += size
        await self.sio.emit(event, message, to=sid)

    # ---- wait for interest ------------------------------------------------------------------
    async def _on_wait_for_interest(self, session: _Session, payload: Any) -> Any:
        if not isinstance(payload, dict) or not isinstance(payload.get("subject"), str):
            raise BadRequest("wait-for-interest expects {subject, timeout}")
        subject = payload["subject"]
        try:
            validate_subject(subject)
        except InvalidSubject as e:
            raise BadRequest(f"invalid subject: {e}") from None
        await self._check(session, "pub", subject)
        timeout = payload.get("timeout")
        if timeout is None:
            timeout_s = P.MAX_WAIT_FOR_INTEREST
        elif isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout >= 0:
            timeout_s = min(float(timeout) / 1000.0, P.MAX_WAIT_FOR_INTEREST)
        else:
            raise BadRequest("timeout must be a non-negative number of milliseconds")
        deadline = time.monotonic() + timeout_s
        while True:
            if self.interest.has_interest(subject):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or session.sid not in self._sessions:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._interest_changed.wait(), remaining)

    # ---- introspection ----------------------------------------------------------------------
    def connection_stats(self) -> list[dict[str, Any]]:
        """Per-connection figures, for operators."""
        return [
            {
                "id": s.sid,
                "user": s.identity.user if s.identity else None,
                "address": s.address,
                "connected": s.connected_at,
                "subscriptions": len(s.subs),
                "send": {"messages": s.sent_messages, "bytes": s.sent_bytes},
                "recv": {"messages": s.recv_messages, "bytes": s.recv_bytes},
                "recv0": s.client_stats,
            }
            for s in self._sessions.values()
        ]


def new_server_id() -> str:
    return uuid.uuid4().hex[:10]
