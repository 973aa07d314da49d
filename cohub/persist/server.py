"""A persist server: answers ``persist.<scope>.server.<id>`` requests using storage.py.

Wire protocol (all requests are Conat requests; replies are ``{error, code}`` on failure, with
the same in the reply headers):

- ``headers.cmd = "open"``, ``headers.session = <id>``, data ``{storage: {path, ephemeral?,
  sync?}, changefeed: bool}`` opens a session on one stream; reply ``{id, seq}`` (server id
  and the stream's last seq). Changefeed batches then go to ``persist.<scope>.client.<id>``
  as lists of changes, with ``headers.seq`` counting 0, 1, 2, ... per session.
- Later requests carry ``headers.session``. A session unknown to this server (it restarted, or
  the session idled out) gets code 410: the client opens a new one.
- Instead of a session, a request may carry ``headers.storage``: a one-shot (stateless) call.
- Commands: set (payload = the message, headers.headers/key/ttl/previousSeq/msgID), setMany
  (data = list of ``{raw, encoding, headers, key, ttl, previousSeq, msgID}``), delete, config,
  inventory, get, keys, getAll (batches with ``headers.seq``, then a null terminator; with
  ``headers.format = "rows"`` each message is an array, see ``_get_all``),
  changefeed, ping, close. Anything else: 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..conat.client import Client, Subscription
from ..conat.codec import Message
from ..conat.errors import BadRequest, ConatError, NotFound, TooMany
from . import paths
from .storage import Change, Mode, StorageError, StoredMessage, Stream

log = logging.getLogger("cohub.persist.server")

MAX_PER_SCOPE = 500
MAX_GLOBAL = 10_000
SESSION_TTL_S = 90.0
BATCH_BYTES = 4_000_000  # changefeed and getAll batches are cut at about this size
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
GONE = 410
ROWS = "rows"  # getAll's compact batch format


class SessionGone(ConatError):
    default_code = GONE


@dataclass
class _Open:
    stream: Stream
    users: dict[str, int] = field(default_factory=dict)  # scope -> sessions and calls using it


@dataclass(eq=False)
class _Session:
    id: str
    scope: str
    key: tuple[str, bool]
    stream: Stream
    seen: float = field(default_factory=time.monotonic)
    feed_seq: int = 0
    pending: list[Change] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sender: asyncio.Task[None] | None = None
    stop_listening: Callable[[], None] | None = None


class PersistServer:
    """Serve streams under ``sync_dir`` for requests to ``persist.*.server.<server_id>``."""

    def __init__(
        self,
        nc: Client,
        server_id: str,
        sync_dir: Path,
        *,
        mode: Mode = "disk",
        archive_dir: Path | None = None,
        archive_interval: float = 30.0,
        max_per_scope: int = MAX_PER_SCOPE,
        max_global: int = MAX_GLOBAL,
        session_ttl: float = SESSION_TTL_S,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", server_id):
            raise ValueError(f"server id {server_id!r} must be letters, digits, '-' or '_'")
        self.nc = nc
        self.id = server_id
        self.subject = f"{paths.SERVICE}.*.server.{server_id}"
        self.sync_dir = sync_dir
        self.mode = mode
        self.archive_dir = archive_dir
        self.archive_interval = archive_interval
        self.max_per_scope = max_per_scope
        self.max_global = max_global
        self.session_ttl = session_ttl
        self._streams: dict[tuple[str, bool], _Open] = {}
        self._sessions: dict[tuple[str, str], _Session] = {}
        # scope -> the distinct streams it has open: the limits count streams, not sessions
        self._per_scope: dict[str, set[tuple[str, bool]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._sub: Subscription | None = None

    # ---- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        self.sync_dir.mkdir(parents=True, exist_ok=True)
        self._sub = await self.nc.subscribe(self.subject, queue="0")
        self._tasks.append(asyncio.ensure_future(self._serve(self._sub)))
        self._tasks.append(asyncio.ensure_future(self._maintain()))
        log.info("persist server %s serving %s on %s", self.id, self.sync_dir, self.subject)

    async def stop(self) -> None:
        if self._sub is not None:
            self._sub.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for session in list(self._sessions.values()):
            self._close_session(session)
        for entry in list(self._streams.values()):
            entry.stream.close()
        self._streams.clear()

    async def __aenter__(self) -> PersistServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    # ---- the request loop ---------------------------------------------------------------------
    async def _serve(self, sub: Subscription) -> None:
        async for msg in sub:
            try:
                await self._handle(msg)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("persist %s: failed to answer on %s", self.id, msg.subject)

    async def _handle(self, msg: Message) -> None:
        reply_to = msg.reply_to
        headers = msg.headers or {}
        cmd = headers.get("cmd")
        try:
            scope = paths.scope_of(msg.subject)
            if cmd == "getAll":
                stream, release = self._stream_for(scope, headers)
                try:
                    await self._get_all(stream, headers, reply_to)
                finally:
                    release()
                return
            result = self._run(scope, cmd, headers, msg)
        except ConatError as e:
            await self._reply(reply_to, e.to_wire(), {"error": e.message, "code": e.code})
            return
        except Exception as e:
            log.exception("persist %s: %s failed", self.id, cmd)
            await self._reply(
                reply_to, {"error": str(e), "code": 500}, {"error": str(e), "code": 500}
            )
            return
        await self._reply(reply_to, result)

    async def _reply(
        self, reply_to: str | None, data: Any, headers: dict[str, Any] | None = None
    ) -> None:
        if reply_to is None:
            return
        try:
            await self.nc.publish_sync(reply_to, data, headers=headers)
        except Exception as e:  # the requester or the router went away: nothing to answer
            log.info("persist %s: cannot reply on %s: %s", self.id, reply_to, e)

    def _run(self, scope: str, cmd: object, headers: dict[str, Any], msg: Message) -> Any:
        if cmd == "open":
            return self._open_session(scope, headers, msg)
        if cmd in ("ping", "close", "changefeed"):
            session = self._session(scope, headers)
            if cmd == "close":
                self._close_session(session)
                return "closed"
            if cmd == "changefeed":
                self._start_feed(session)
                return "created"
            return "pong"
        stream, release = self._stream_for(scope, headers)
        try:
            return self._command(stream, cmd, headers, msg)
        finally:
            release()

    def _command(self, stream: Stream, cmd: object, h: dict[str, Any], msg: Message) -> Any:
        if cmd == "set":
            return stream.set(
                msg.raw,
                encoding=msg.encoding,
                headers=h.get("headers"),
                key=h.get("key"),
                ttl=h.get("ttl"),
                previous_seq=h.get("previousSeq"),
                msg_id=h.get("msgID"),
            ).to_wire()
        if cmd == "setMany":
            ops = msg.data
            if not isinstance(ops, list):
                raise BadRequest("setMany needs a list of operations")
            return stream.set_many(ops)
        if cmd == "delete":
            return {
                "seqs": stream.delete(
                    seq=h.get("seq"),
                    seqs=h.get("seqs"),
                    last_seq=h.get("last_seq"),
                    all=h.get("all"),
                )
            }
        if cmd == "config":
            return stream.config(h.get("config")).to_wire()
        if cmd == "inventory":
            return stream.inventory()
        if cmd == "get":
            found = stream.get(seq=h.get("seq"), key=h.get("key"))
            return None if found is None else found.to_wire()
        if cmd == "keys":
            return stream.keys()
        raise NotFound(f"unknown command {cmd!r}")

    async def _get_all(self, stream: Stream, h: dict[str, Any], reply_to: str | None) -> None:
        """Batches of messages, then null. With ``headers.format = "rows"`` a message is the
        array ``[seq, time, encoding, raw, key, headers]`` instead of an object: the same
        facts without the field names, and much cheaper to build, encode and decode."""
        if reply_to is None:
            return
        rows = h.get("format") == ROWS
        headers: dict[str, Any] = {"format": ROWS} if rows else {}
        seq = 0
        batch: list[Any] = []
        size = 0
        try:
            for row in stream.get_all_rows(h.get("start_seq"), h.get("end_seq")):
                batch.append(row if rows else StoredMessage.from_row(row).to_wire())
                size += len(row[3]) + 64
                if size >= BATCH_BYTES:
                    await self._send_batch(reply_to, batch, seq, headers)
                    seq, batch, size = seq + 1, [], 0
            if batch:
                await self._send_batch(reply_to, batch, seq, headers)
                seq += 1
            await self._send_batch(reply_to, None, seq, headers)
        except ConatError as e:
            await self._reply(
                reply_to, e.to_wire(), {"error": e.message, "code": e.code, "seq": seq}
            )

    async def _send_batch(
        self, reply_to: str, batch: Any, seq: int, headers: dict[str, Any]
    ) -> None:
        """One getAll batch. Acked, so the router has routed it before the next one leaves:
        it may handle one socket's publishes concurrently, and batches must stay in order."""
        await self.nc.publish(reply_to, batch, headers={**headers, "seq": seq})

    # ---- streams and sessions -----------------------------------------------------------------
    def _stream_for(self, scope: str, headers: dict[str, Any]) -> tuple[Stream, Callable[[], None]]:
        """The stream a request is about, and what to call when done with it."""
        if "session" in headers:
            session = self._session(scope, headers)
            return session.stream, lambda: None
        storage = headers.get("storage")
        if storage is None:
            raise BadRequest("a request needs headers.session (open first) or headers.storage")
        key = self._acquire(scope, storage)
        return self._streams[key].stream, lambda: self._release(scope, key)

    def _acquire(self, scope: str, storage: object) -> tuple[str, bool]:
        if not isinstance(storage, dict):
            raise BadRequest("storage must be an object {path, ephemeral?, sync?}")
        path = paths.check_path(scope, storage.get("path"))
        ephemeral = storage.get("ephemeral", False)
        sync = storage.get("sync", False)
        if not isinstance(ephemeral, bool) or not isinstance(sync, bool):
            raise BadRequest("storage.ephemeral and storage.sync must be true or false")
        key = (path, ephemeral)
        mine = self._per_scope.get(scope, set())
        if key not in mine and len(mine) >= self.max_per_scope:
            raise TooMany(
                f"too many open streams for {scope} on persist server {self.id} "
                f"(limit {self.max_per_scope})"
            )
        entry = self._streams.get(key)
        if entry is None and len(self._streams) >= self.max_global:
            raise TooMany(
                f"too many open streams on persist server {self.id} (limit {self.max_global})"
            )
        if entry is None:
            file = None if ephemeral else paths.file_for(self.sync_dir, path)
            archive = None
            if file is not None and self.archive_dir is not None:
                archive = paths.file_for(self.archive_dir, path)
            stream = Stream.open(
                path,
                file,
                sync=sync,
                mode=self.mode,
                archive=archive,
                archive_interval=self.archive_interval,
            )
            entry = self._streams[key] = _Open(stream)
        elif sync:
            entry.stream.enable_sync()
        entry.users[scope] = entry.users.get(scope, 0) + 1
        self._per_scope.setdefault(scope, set()).add(key)
        return key

    def _release(self, scope: str, key: tuple[str, bool]) -> None:
        entry = self._streams.get(key)
        if entry is None:
            return
        left = entry.users.get(scope, 0) - 1
        if left > 0:
            entry.users[scope] = left
            return
        entry.users.pop(scope, None)
        mine = self._per_scope.get(scope)
        if mine is not None:
            mine.discard(key)
            if not mine:
                del self._per_scope[scope]
        if not entry.users:
            del self._streams[key]
            try:
                entry.stream.close()
            except StorageError as e:
                log.warning("persist %s: closing %s: %s", self.id, key[0], e)

    def _open_session(self, scope: str, headers: dict[str, Any], msg: Message) -> dict[str, Any]:
        session_id = headers.get("session")
        if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
            raise BadRequest("headers.session must be 1-64 letters, digits, '-' or '_'")
        if (scope, session_id) in self._sessions:
            raise BadRequest(f"session {session_id} is already open")
        data = msg.data
        if not isinstance(data, dict):
            raise BadRequest("open needs data {storage: {path, ephemeral?, sync?}, changefeed}")
        key = self._acquire(scope, data.get("storage"))
        stream = self._streams[key].stream
        session = _Session(session_id, scope, key, stream)
        self._sessions[(scope, session_id)] = session
        if data.get("changefeed"):
            self._start_feed(session)
        return {"id": self.id, "seq": stream.last_seq()}

    def _session(self, scope: str, headers: dict[str, Any]) -> _Session:
        session_id = headers.get("session")
        session = self._sessions.get((scope, session_id)) if isinstance(session_id, str) else None
        if session is None:
            raise SessionGone(f"no session {session_id!r} on persist server {self.id}; open one")
        session.seen = time.monotonic()
        return session

    def _close_session(self, session: _Session) -> None:
        if self._sessions.pop((session.scope, session.id), None) is None:
            return
        if session.stop_listening is not None:
            session.stop_listening()
        if session.sender is not None:
            session.sender.cancel()
        self._release(session.scope, session.key)

    # ---- changefeeds --------------------------------------------------------------------------
    def _start_feed(self, session: _Session) -> None:
        if session.sender is not None:
            return

        def on_change(change: Change) -> None:
            session.pending.append(change)
            session.wake.set()

        session.stop_listening = session.stream.listen(on_change)
        session.sender = asyncio.ensure_future(self._send_feed(session))

    async def _send_feed(self, session: _Session) -> None:
        subject = f"{paths.SERVICE}.{session.scope}.client.{session.id}"
        while True:
            await session.wake.wait()
            session.wake.clear()
            while session.pending:
                count, size = 0, 0
                for change in session.pending:
                    if size >= BATCH_BYTES:
                        break
                    count += 1
                    size += len(change.get("raw", b"")) + 64
                batch = session.pending[:count]
                del session.pending[:count]
                try:
                    result = await self.nc.publish(
                        subject, batch, headers={"seq": session.feed_seq}, wait_for_interest=10.0
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    log.info("persist %s: changefeed %s failed: %s", self.id, session.id, e)
                    result = None
                if result is None or result.count == 0:
                    # the client is gone or missed a batch: end the session; it reopens and
                    # catches up with getAll from its last seq
                    log.info(
                        "persist %s: dropping session %s (changefeed undelivered)",
                        self.id,
                        session.id,
                    )
                    session.sender = None  # this task: let it end by returning
                    self._close_session(session)
                    return
                session.feed_seq += 1

    # ---- housekeeping -------------------------------------------------------------------------
    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for session in list(self._sessions.values()):
                if now - session.seen > self.session_ttl:
                    log.info("persist %s: session %s idled out", self.id, session.id)
                    self._close_session(session)
            for entry in list(self._streams.values()):
                with contextlib.suppress(ConatError):
                    entry.stream.expire()
                    entry.stream.archive_if_due()
