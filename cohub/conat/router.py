"""The Conat router: routes messages by subject between socket.io clients.

Every socket authenticates once, from its handshake cookies, and is then told who it is by
an ``info`` event. Subscriptions live in one :class:`~cohub.conat.subjects.Interest` table;
a publish is delivered once per matching pattern and queue group, to one member chosen at
random, under an event named after the subscribed pattern. The socket.io wire is handled
by :mod:`cohub.conat.transport`; this module only sees events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import protocol as P
from . import wire
from .codec import check_encoding, check_headers, decode, encode
from .errors import BadRequest, ConatError, PermissionDenied, TooMany, Unauthorized
from .identity import Identity
from .metrics import RouterCounters
from .permissions import Action, Permissions
from .subjects import (
    Interest,
    InvalidSubject,
    SubjectIndex,
    is_valid_subject,
    validate_pattern,
    validate_subject,
)
from .transport import Connection, ConnectionClosedError, SocketIOApp

log = logging.getLogger("cohub.conat.router")

Authenticate = Callable[[Mapping[str, str]], Awaitable[Identity]]
Ack = dict[str, Any]

_MAX_ID_LENGTH = 128
_MAX_QUEUE_LENGTH = 128
_AUTH_FAILURE_DELAY_S = 0.025
_INFO_TRY_TIMEOUT_S = 7.5
_INFO_GIVE_UP_S = 120.0
_SILENT_PATTERN = ">"
_VALID_SUBJECT_CACHE = 10_000


@dataclass(eq=False, slots=True)
class _Session:
    conn: Connection
    identity: Identity | None = None
    auth_error: ConatError | None = None
    subs: dict[str, str] = field(default_factory=dict)  # pattern -> queue
    connected_at: float = field(default_factory=time.time)
    authenticated_at: float = field(default_factory=time.monotonic)
    user_key: str | None = None  # counted against the per-user connection limit
    client_stats: dict[str, Any] = field(default_factory=dict)
    sent_messages: int = 0
    sent_bytes: int = 0
    recv_messages: int = 0
    recv_bytes: int = 0
    waits: set[asyncio.Task[Any]] = field(default_factory=set)  # pending wait-for-interest

    @property
    def sid(self) -> str:
        return self.conn.sid

    @property
    def active(self) -> bool:
        return not self.conn.closed


class Router:
    """One router node. Mount :meth:`asgi_app` at ``<base-path>conat``."""

    def __init__(
        self,
        authenticate: Authenticate,
        permissions: Permissions,
        *,
        server_id: str = "0",
        cluster_name: str = P.DEFAULT_CLUSTER_NAME,
        max_payload: int = P.MAX_PAYLOAD,
        max_connections: int = P.MAX_CONNECTIONS_PER_SERVER,
        max_connections_per_user: int = P.MAX_CONNECTIONS_PER_USER,
        max_subscriptions: int = P.MAX_SUBSCRIPTIONS_PER_SOCKET,
        max_hub_subscriptions: int = P.MAX_SUBSCRIPTIONS_PER_HUB,
        max_waits_per_socket: int = P.MAX_WAITS_PER_SOCKET,
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
    ) -> None:
        self._authenticate = authenticate
        self.permissions = permissions
        self.server_id = server_id
        self.cluster_name = cluster_name
        self.max_payload = max_payload
        self.max_connections = max_connections
        self.max_connections_per_user = max_connections_per_user
        self.max_subscriptions = max_subscriptions
        self.max_hub_subscriptions = max_hub_subscriptions
        self.max_waits_per_socket = max_waits_per_socket
        self.interest: Interest[_Session] = Interest()
        self.counters = RouterCounters()
        self._sessions: dict[str, _Session] = {}
        self._valid_subjects: dict[str, None] = {}  # publish subjects already validated
        self._per_user: dict[str, int] = {}
        # wait-for-interest: subject -> futures, set when a subscription matching it appears
        self._waiters: SubjectIndex[asyncio.Future[bool]] = SubjectIndex()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.app = SocketIOApp(
            self, max_payload=max_payload, ping_interval=ping_interval, ping_timeout=ping_timeout
        )
        self._handlers: dict[str, Callable[[_Session, Any], Awaitable[Any]]] = {
            P.SUBSCRIBE: self._on_subscribe,
            P.UNSUBSCRIBE: self._on_unsubscribe,
            P.SUBSCRIPTIONS: self._on_subscriptions,
            P.PUBLISH: self._on_publish,
            P.WAIT_FOR_INTEREST: self._on_wait_for_interest,
            P.STATS: self._on_stats,
        }

    # ---- public surface ---------------------------------------------------------------------
    def asgi_app(self) -> SocketIOApp:
        """The ASGI app to mount at ``<base-path>conat`` (websocket transport only)."""
        return self.app

    @property
    def connection_count(self) -> int:
        return len(self._sessions)

    def subscription_count(self) -> int:
        return len(self.interest)

    def pending_waits(self) -> int:
        """Number of ``wait-for-interest`` requests waiting for a subscriber."""
        return len(self._waiters)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.app.close()

    # ---- plumbing ---------------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def on_event(
        self, conn: Connection, event: Any, args: list[Any], ack_id: int | None
    ) -> None:
        session: _Session = conn.state
        handler = self._handlers.get(event) if isinstance(event, str) else None
        payload = args[0] if args else None
        if not isinstance(event, str):
            log.info("conat: malformed event %.100r from %s", event, conn.sid)
            result: Any = BadRequest(
                "malformed event: expected [name, ...args] with a string name"
            ).to_wire()
        elif handler is None:
            log.info("conat: unknown event %.100r from %s", event, conn.sid)
            result = BadRequest(f"unknown event {event[:100]!r}").to_wire()
        elif session.identity is None:
            result = Unauthorized("not signed in").to_wire()
        elif event == P.WAIT_FOR_INTEREST and len(session.waits) >= self.max_waits_per_socket:
            result = TooMany(
                f"there is a limit of at most {self.max_waits_per_socket} pending "
                "wait-for-interest requests per connection"
            ).to_wire()
        elif event == P.WAIT_FOR_INTEREST:
            # may wait up to 90 s: answer later, keep reading this socket meanwhile
            task = self._spawn(self._run_and_ack(session, handler, payload, ack_id))
            session.waits.add(task)
            task.add_done_callback(session.waits.discard)
            return
        else:
            result = await self._run(session, handler, payload)
        if ack_id is not None:
            with contextlib.suppress(ConnectionClosedError):
                if type(result) is dict and len(result) == 1 and type(result.get("count")) is int:
                    await conn.send_frames([wire.encode_count_ack(ack_id, result["count"])])
                else:
                    await conn.ack(ack_id, result)

    async def _run_and_ack(
        self,
        session: _Session,
        handler: Callable[[_Session, Any], Awaitable[Any]],
        payload: Any,
        ack_id: int | None,
    ) -> None:
        result = await self._run(session, handler, payload)
        if ack_id is not None:
            with contextlib.suppress(ConnectionClosedError):
                await session.conn.ack(ack_id, result)

    async def _run(
        self, session: _Session, handler: Callable[[_Session, Any], Awaitable[Any]], payload: Any
    ) -> Any:
        """Run a handler; every failure becomes an error ack, never a dead connection."""
        try:
            return await handler(session, payload)
        except ConatError as e:
            return e.to_wire()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug must cost one ack, not the server
            log.exception("conat handler %s failed", getattr(handler, "__name__", "?"))
            return {"error": f"internal error: {e}", "code": 500}

    # ---- connection lifecycle ---------------------------------------------------------------
    async def on_connect(self, conn: Connection) -> None:
        session = _Session(conn)
        conn.state = session
        self._sessions[conn.sid] = session
        self.counters.connections_total += 1
        try:
            identity = await self._authenticate(conn.cookies)
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
            self.counters.auth_failures += 1
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("conat: authentication failed unexpectedly")
            session.auth_error = ConatError(f"authentication failed: {e}", 500)
            self.counters.auth_failures += 1
        else:
            session.identity = identity
            session.user_key = identity.key
            self._per_user[identity.key] = self._per_user.get(identity.key, 0) + 1
        self._spawn(self._send_info(session))
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.ensure_future(self._sweep())

    def _info(self, session: _Session) -> dict[str, Any]:
        if session.identity is not None:
            user: dict[str, Any] = session.identity.user
        else:
            err = session.auth_error or Unauthorized("not signed in")
            user = {"error": err.message, "code": err.code}
        return {
            "max_payload": self.max_payload,
            "id": self.server_id,
            "clusterName": self.cluster_name,
            "user": user,
        }

    async def _send_info(self, session: _Session) -> None:
        conn = session.conn
        try:
            if session.identity is None:
                await conn.emit(P.INFO, self._info(session))
                await asyncio.sleep(_AUTH_FAILURE_DELAY_S)
                await conn.close()
                return
            started = time.monotonic()
            delay = 5.0
            while session.active and time.monotonic() - started < _INFO_GIVE_UP_S:
                try:
                    await conn.call(P.INFO, self._info(session), timeout=_INFO_TRY_TIMEOUT_S)
                    return
                except TimeoutError:
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 30.0)
        except ConnectionClosedError:
            return

    async def on_disconnect(self, conn: Connection) -> None:
        session: _Session | None = self._sessions.pop(conn.sid, None)
        if session is None:
            return
        for pattern in list(session.subs):
            self._drop_subscription(session, pattern)
        for task in list(session.waits):  # nobody is left to answer
            task.cancel()
        key = session.user_key
        if key is not None:
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
        self.counters.denials += 1
        verb = "publishing to" if action == "pub" else "subscribing to"
        user = json.dumps(session.identity.user, separators=(",", ":"))
        message = f"permission denied {verb} '{subject}' from {user}"
        with contextlib.suppress(ConnectionClosedError):
            await session.conn.emit(
                P.PERMISSION, {"message": message, "subject": subject, "type": action}
            )
        raise PermissionDenied(message)

    # ---- subscribe --------------------------------------------------------------------------
    async def _on_subscribe(self, session: _Session, payload: Any) -> Any:
        if isinstance(payload, list):
            if len(payload) > P.MAX_SUBSCRIPTIONS_PER_HUB:  # a bound on one request's work
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
        limit = self.max_hub_subscriptions if session.identity.is_hub else self.max_subscriptions
        if len(session.subs) >= limit:
            raise TooMany(
                f"there is a limit of at most {limit} subscriptions and you currently have "
                f"{len(session.subs)} subscriptions -- subscription to '{subject}' denied"
            )
        if not session.active:
            raise Unauthorized("disconnected")
        session.subs[subject] = queue
        self.interest.add(subject, queue, session)
        if self._waiters and subject != _SILENT_PATTERN:
            self._wake_waiters(subject)
        return {"status": "added"}

    def _wake_waiters(self, pattern: str) -> None:
        """Answer the waits whose subject the new (counted) ``pattern`` matches; only they."""
        for _, futures in self._waiters.match(pattern):
            for future in futures:
                if not future.done():
                    future.set_result(True)

    async def _on_unsubscribe(self, session: _Session, payload: Any) -> Any:
        items = payload if isinstance(payload, list) else [payload]
        results: list[None] = []
        for item in items:
            subject = item.get("subject") if isinstance(item, dict) else None
            if isinstance(subject, str):
                self._drop_subscription(session, subject)
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
        if subject not in self._valid_subjects:
            try:
                validate_subject(subject)
            except InvalidSubject as e:
                raise BadRequest(f"invalid subject: {e}") from None
            if len(self._valid_subjects) >= _VALID_SUBJECT_CACHE:
                self._valid_subjects.clear()
            self._valid_subjects[subject] = None
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
        self.counters.messages_in += 1
        self.counters.bytes_in += len(chunk)
        data = [msg_id, seq, done, encoding, chunk, headers]
        answered = 0  # the router itself answers on a few subjects
        if subject == P.PERMISSIONS_CHANGED and session.identity.is_hub:
            self._permissions_changed(chunk, encoding)
        elif subject == P.CONNECTIONS_SUBJECT and done:
            # permission to publish here (sys.>) already means hub or admin
            self._spawn(self._answer_connections(headers))
            answered = 1
        if targets is not None:
            return {"count": await self._deliver_to_targets(subject, data, targets)}
        return {"count": await self._route(subject, data) + answered}

    def _permissions_changed(self, chunk: bytes, encoding: int) -> None:
        """A hub says access changed: ``{project_id}`` (collaborators), ``{account_id}`` (a
        session or key ended, a ban), or anything else (everything). Cached decisions go, and
        the connections concerned are checked again at once, not only at the next sweep."""
        try:
            change = decode(chunk, encoding)
        except ConatError:
            change = None
        change = change if isinstance(change, dict) else {}
        project_id, account_id = change.get("project_id"), change.get("account_id")
        if isinstance(project_id, str):
            self.permissions.forget(project_id)
            affected = [s for s in self._sessions.values() if any(project_id in p for p in s.subs)]
            self._spawn(self._recheck_all(affected, reauthenticate=False))
        elif isinstance(account_id, str):
            affected = [
                s
                for s in self._sessions.values()
                if s.identity is not None and s.identity.id == account_id
            ]
            self._spawn(self._recheck_all(affected, reauthenticate=True))
        else:
            self.permissions.forget()
            self._spawn(self._recheck_all(list(self._sessions.values()), reauthenticate=True))

    async def _recheck_all(self, sessions: list[_Session], *, reauthenticate: bool) -> None:
        for session in sessions:
            await self._recheck(session, reauthenticate=reauthenticate)

    async def _sweep(self) -> None:
        """Every few seconds, check that what each connection holds is still allowed: its
        identity (a signed-out session or deleted key ends the connection) at least every
        ``REAUTHENTICATE_S``, and its subscriptions through the permission cache."""
        while self._sessions:
            await asyncio.sleep(P.PERMISSION_SWEEP_S)
            now = time.monotonic()
            for session in list(self._sessions.values()):
                due = now - session.authenticated_at >= P.REAUTHENTICATE_S
                await self._recheck(session, reauthenticate=due)

    async def _recheck(self, session: _Session, *, reauthenticate: bool) -> None:
        identity = session.identity
        if identity is None or identity.is_hub or not session.active:
            return
        try:
            if reauthenticate:
                try:
                    fresh = await self._authenticate(session.conn.cookies)
                except ConatError as e:
                    await self._end_session(session, e)
                    return
                session.authenticated_at = time.monotonic()
                if fresh.key != identity.key:
                    await self._end_session(
                        session, Unauthorized("identity changed; sign in again")
                    )
                    return
                session.identity = identity = fresh  # e.g. admin granted or revoked
            for pattern in list(session.subs):
                if not await self.permissions.allowed(identity, "sub", pattern):
                    self._drop_subscription(session, pattern)
                    self.counters.denials += 1
                    message = f"permission to subscribe to '{pattern}' was revoked"
                    with contextlib.suppress(ConnectionClosedError):
                        await session.conn.emit(
                            P.PERMISSION, {"message": message, "subject": pattern, "type": "sub"}
                        )
        except asyncio.CancelledError:
            raise
        except Exception:  # a database hiccup must not end the sweep for everyone
            log.exception("conat: permission recheck failed for %s", session.sid)

    async def _end_session(self, session: _Session, error: ConatError) -> None:
        """Tell the client why (an info with the error, as at sign-in) and disconnect it."""
        log.info("conat: ending %s: %s", session.sid, error.message)
        session.auth_error = error
        session.identity = None
        for pattern in list(session.subs):
            self._drop_subscription(session, pattern)
        with contextlib.suppress(ConnectionClosedError):
            await session.conn.emit(P.INFO, self._info(session))
            await asyncio.sleep(_AUTH_FAILURE_DELAY_S)
        await session.conn.close()

    def _drop_subscription(self, session: _Session, pattern: str) -> None:
        queue = session.subs.pop(pattern, None)
        if queue is not None:
            self.interest.remove(pattern, queue, session)

    async def _answer_connections(self, headers: Any) -> None:
        """Reply to a request on the connections subject with per-connection figures."""
        reply_to = headers.get(P.REPLY_HEADER) if isinstance(headers, dict) else None
        if not isinstance(reply_to, str) or not is_valid_subject(reply_to):
            return
        raw = encode({"server": self.server_id, "connections": self.connection_stats()})
        data = [uuid.uuid4().hex[:10], 0, 1, P.Encoding.MSGPACK, raw, None]
        await asyncio.sleep(0)  # the request's own publish ack goes first
        await self._route(reply_to, data)

    async def _route(self, subject: str, data: list[Any]) -> int:
        count = 0
        size = len(data[4])
        single_chunk = data[1] == 0 and data[2]
        for pattern, queues in self.interest.match(subject):
            frames = wire.encode_delivery(pattern, subject, data)
            for members in queues.values():
                if len(members) == 1:
                    target = next(iter(members))
                elif single_chunk:
                    target = random.choice(tuple(members))
                else:
                    # every chunk of one message must reach the same member of a queue group
                    ordered = sorted(members, key=lambda s: s.conn.sid)
                    target = ordered[zlib.crc32(data[0].encode()) % len(ordered)]
                await self._deliver(target, frames, size)
                if pattern != _SILENT_PATTERN:
                    count += 1
        return count

    async def _deliver_to_targets(self, subject: str, data: list[Any], targets: Any) -> int:
        if not isinstance(targets, list):
            raise BadRequest("targets must be a list of {pattern, target}")
        count = 0
        for t in targets:
            if not isinstance(t, dict):
                continue
            pattern, sid = t.get("pattern"), t.get("target")
            session = self._sessions.get(sid) if isinstance(sid, str) else None
            if session is not None and isinstance(pattern, str) and pattern in session.subs:
                frames = wire.encode_delivery(pattern, subject, data)
                await self._deliver(session, frames, len(data[4]))
                count += pattern != _SILENT_PATTERN
        return count

    async def _deliver(self, session: _Session, frames: list[wire.Frame], size: int) -> None:
        session.sent_messages += 1
        session.sent_bytes += size
        counters = self.counters
        counters.messages_out += 1
        counters.bytes_out += size
        try:
            await session.conn.send_frames(frames)
        except ConnectionClosedError:
            pass  # it is going away; on_disconnect cleans up

    def has_counted_interest(self, subject: str) -> bool:
        """True when a publish would count a receiver (the silent '>' tap does not)."""
        return any(pattern != _SILENT_PATTERN for pattern, _ in self.interest.match(subject))

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
        seconds = wait_for_interest_seconds(payload.get("timeout"))
        if self.has_counted_interest(subject):
            return True
        if seconds <= 0 or not session.active:
            return False
        # no await between the check above and registering: no subscription can slip between
        woken: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.add(subject, woken)
        try:
            return await asyncio.wait_for(woken, seconds)
        except TimeoutError:
            return False
        finally:
            self._waiters.discard(subject, woken)

    # ---- introspection ----------------------------------------------------------------------

    def connection_stats(self) -> list[dict[str, Any]]:
        """Per-connection figures, for operators."""
        return [
            {
                "id": s.sid,
                "user": s.identity.user if s.identity else None,
                "address": s.conn.address,
                "connected": s.connected_at,
                "subscriptions": len(s.subs),
                "send": {"messages": s.sent_messages, "bytes": s.sent_bytes},
                "recv": {"messages": s.recv_messages, "bytes": s.recv_bytes},
                "recv0": s.client_stats,
            }
            for s in self._sessions.values()
        ]


def wait_for_interest_seconds(timeout: Any) -> float:
    """How long a ``wait-for-interest`` waits: ``timeout`` is in milliseconds, absent means
    the default (30 s), and no caller may hold the router longer than the cap (90 s)."""
    if timeout is None:
        return P.DEFAULT_WAIT_FOR_INTEREST
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout >= 0:
        return min(float(timeout) / 1000.0, P.MAX_WAIT_FOR_INTEREST)
    raise BadRequest("timeout must be a non-negative number of milliseconds")


def new_server_id() -> str:
    return uuid.uuid4().hex[:10]
