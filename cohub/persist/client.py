"""Streams and key-value stores for the other roles, on top of the persist servers.

    async with PersistStream(nc, "accounts/<id>/log") as s:
        await s.append({"hello": 1})
        feed = await s.changefeed()
        async for updates in feed: ...

    async with KV(nc, "projects/<id>/settings") as kv:
        await kv.set("theme", "dark")
        print(await kv.get("theme"))

``AStream`` and ``AKV`` are the stateless forms: every call is one request naming its storage,
with no session, changefeed or ping. The caller's scope comes from its Conat identity.

A session survives persist restarts: a request that finds its server gone (503), or its
session unknown (410), reopens a session after a jittered backoff and retries once more. A
changefeed then resumes from the last seq it delivered: it catches up with getAll and drops
anything already delivered, so its consumer sees no gap and no duplicate. Deletions that
happened while it was away are not replayed (their rows are simply absent afterwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from dataclasses import dataclass
from typing import Any, Literal

from ..conat.client import Client, Subscription, random_id
from ..conat.codec import decode
from ..conat.errors import (
    BadRequest,
    ConatError,
    ConnectionClosed,
    NoSubscribers,
    RequestTimeout,
    from_wire,
)
from .load_balancer import server_id_subject
from .paths import SERVICE, check_path, scope_for

log = logging.getLogger("cohub.persist.client")

GONE = 410
_ROWS = "rows"  # getAll's compact batch format (see cohub.persist.server)
_RECOVERABLE = (GONE, 503, 408)
_BACKOFF_GROWTH = 1.8


def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait before retry number ``attempt`` (0, 1, ...): exponential up to
    ``cap``, then drawn uniformly from the upper half, so thousands of clients that lost one
    persist process come back spread over time instead of all at once. Never above ``cap``."""
    ceiling = min(cap, base * _BACKOFF_GROWTH ** min(attempt, 64))  # min: no float overflow
    return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored message: ``data`` decodes ``raw`` by its encoding."""

    seq: int
    time: int
    encoding: int
    raw: bytes
    key: str | None = None
    headers: dict[str, Any] | None = None

    @property
    def data(self) -> Any:
        return decode(self.raw, self.encoding)

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Entry:
        return cls(
            int(d["seq"]),
            int(d["time"]),
            int(d.get("encoding", 0)),
            bytes(d.get("raw", b"")),
            d.get("key"),
            d.get("headers"),
        )


@dataclass(frozen=True, slots=True)
class Deleted:
    seqs: list[int]


Update = Entry | Deleted


@dataclass(frozen=True, slots=True)
class SetResult:
    seq: int
    time: int


@dataclass(frozen=True, slots=True)
class Storage:
    path: str
    ephemeral: bool = False
    sync: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {"path": self.path, "ephemeral": self.ephemeral, "sync": self.sync}


def scope_of(nc: Client) -> str:
    identity = nc.identity
    if identity is None:
        raise ConnectionClosed("the Conat client is not signed in")
    return scope_for(identity.kind, identity.id)


def _check_reply(data: Any, headers: dict[str, Any] | None) -> Any:
    error = (headers or {}).get("error")
    if error is None and isinstance(data, dict) and "error" in data and "code" in data:
        error = data["error"]
    if error is not None:
        code = (headers or {}).get("code")
        if code is None and isinstance(data, dict):
            code = data.get("code")
        raise from_wire({"error": error, "code": code if code is not None else 500})
    return data


def _entries(rows: list[Any]) -> list[Entry]:
    """Entries from getAll's compact batch: ``[seq, time, encoding, raw, key, headers]`` each."""
    try:
        out = list(itertools.starmap(Entry, rows))
    except TypeError as e:
        raise BadRequest(f"getAll: malformed batch: {e}") from None
    for entry in out:  # cheap checks, so junk fails here and not later in .data
        if type(entry.raw) is not bytes or type(entry.seq) is not int:
            raise BadRequest(f"getAll: malformed message {entry!r}")
    return out


def _update(d: dict[str, Any]) -> Update:
    if d.get("op") == "delete":
        return Deleted([int(s) for s in d.get("seqs", [])])
    return Entry.from_wire(d)


class Changefeed:
    """Batches of updates (lists of Entry and Deleted), in order. Close it when done."""

    def __init__(self, owner: PersistClient) -> None:
        self._owner = owner
        self._queue: asyncio.Queue[list[Update] | BaseException | None] = asyncio.Queue()
        self.closed = False

    def _put(self, item: list[Update] | BaseException | None) -> None:
        if not self.closed:
            self._queue.put_nowait(item)

    def __aiter__(self) -> Changefeed:
        return self

    async def __anext__(self) -> list[Update]:
        item = await self._queue.get()
        if item is None:
            self.closed = True
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        return item

    async def next(self, timeout: float | None = None) -> list[Update]:
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except TimeoutError:
            raise RequestTimeout(f"no changefeed update within {timeout} s") from None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)
            self._owner._feeds.discard(self)


class PersistClient:
    """One session on one stream (or, with ``stateless=True``, one-shot requests)."""

    def __init__(
        self,
        nc: Client,
        storage: Storage | str,
        *,
        stateless: bool = False,
        scope: str | None = None,
        timeout: float = 30.0,
        attempt_timeout: float = 10.0,
        ping_interval: float = 15.0,
        reconnect_delay: float = 0.25,
        reconnect_delay_max: float = 10.0,
    ) -> None:
        self.nc = nc
        self.storage = Storage(storage) if isinstance(storage, str) else storage
        self.stateless = stateless
        self.timeout = timeout
        # one try of a command; a server killed mid-request never answers, so retry sooner
        self.attempt_timeout = min(timeout, attempt_timeout)
        self.ping_interval = ping_interval
        self.reconnect_delay = reconnect_delay
        self.reconnect_delay_max = reconnect_delay_max
        self.state: Literal["new", "ready", "closed"] = "new"
        self.server_id: str | None = None
        self.session: str | None = None
        # hubs may act in any scope; for others the router only lets their own through
        self._scope: str | None = scope
        if scope is not None:
            check_path(scope, self.storage.path)
        self._feeds: set[Changefeed] = set()
        self._feed_sub: Subscription | None = None
        self._feed_task: asyncio.Task[None] | None = None
        self._feed_expected = 0
        self._catching_up = False
        self._held: list[list[Update]] = []
        self.last_seq: int | None = None  # the newest seq a changefeed delivered
        self._recovery: asyncio.Task[None] | None = None
        self._ping_task: asyncio.Task[None] | None = None
        self._attempt = 0
        self.reconnects = 0

    # ---- lifecycle ----------------------------------------------------------------------------
    @property
    def scope(self) -> str:
        if self._scope is None:
            self._scope = scope_of(self.nc)
            check_path(self._scope, self.storage.path)  # fail early, before asking a server
        return self._scope

    async def open(self) -> PersistClient:
        if self.state == "closed":
            raise ConnectionClosed("persist client is closed")
        _ = self.scope
        if self.state == "new":
            if not self.stateless:
                await self._connect_until(asyncio.get_running_loop().time() + self.timeout)
                self._ping_task = asyncio.ensure_future(self._ping_loop())
            self.state = "ready"
        return self

    async def _connect_until(self, deadline: float) -> None:
        """Connect, retrying with jittered backoff while no persist server answers yet."""
        attempt = 0
        while True:
            try:
                await self._connect()
                return
            except ConatError as e:
                loop_time = asyncio.get_running_loop().time()
                if e.code not in _RECOVERABLE or loop_time > deadline:
                    raise
                delay = backoff(attempt, self.reconnect_delay, self.reconnect_delay_max)
                attempt += 1
                await asyncio.sleep(min(delay, deadline - loop_time))

    async def close(self) -> None:
        if self.state == "closed":
            return
        previous, self.state = self.state, "closed"
        for task in (self._ping_task, self._recovery, self._feed_task):
            if task is not None:
                task.cancel()
        for feed in list(self._feeds):
            feed.close()
        if self._feed_sub is not None:
            self._feed_sub.close()
        if previous == "ready" and self.session is not None and self.server_id is not None:
            with contextlib.suppress(ConatError):
                await self.nc.request(
                    self._subject(),
                    None,
                    headers={"cmd": "close", "session": self.session},
                    timeout=2,
                )

    async def __aenter__(self) -> PersistClient:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _subject(self) -> str:
        return f"{SERVICE}.{self.scope}.server.{self.server_id}"

    async def _locate(self) -> str:
        reply = await self.nc.request(server_id_subject(self.scope), None, timeout=self.timeout)
        server_id = _check_reply(reply.data, reply.headers)
        if not isinstance(server_id, str):
            raise ConatError(f"persist load balancer answered {server_id!r}")
        self.server_id = server_id
        return server_id

    async def _connect(self) -> None:
        """Open a new session; with changefeeds, subscribe first and catch up afterwards."""
        await self._locate()
        session = random_id(16)
        want_feed = bool(self._feeds)
        old_sub, old_task = self._feed_sub, self._feed_task
        if want_feed:
            self._catching_up = True
            self._held = []
            self._feed_expected = 0
            self._feed_sub = await self.nc.subscribe(f"{SERVICE}.{self.scope}.client.{session}")
            self._feed_task = asyncio.ensure_future(self._read_feed(self._feed_sub))
        for stale in (old_sub,):
            if stale is not None:
                stale.close()
        if old_task is not None:
            old_task.cancel()
        try:
            reply = await self.nc.request(
                self._subject(),
                {"storage": self.storage.to_wire(), "changefeed": want_feed},
                headers={"cmd": "open", "session": session},
                timeout=self.timeout,
            )
            opened = _check_reply(reply.data, reply.headers)
            self.session = session
            if want_feed:
                if self.last_seq is None:
                    self.last_seq = int(opened.get("seq", 0))
                else:
                    self._deliver(await self._get_all(self.last_seq + 1, None))
        except BaseException:
            self._catching_up = False
            raise
        held, self._held = self._held, []
        self._catching_up = False
        for updates in held:
            self._deliver(updates)

    async def _read_feed(self, sub: Subscription) -> None:
        async for msg in sub:
            seq = (msg.headers or {}).get("seq")
            if seq != self._feed_expected:
                log.info("persist changefeed gap (got %s, wanted %s)", seq, self._feed_expected)
                self._spawn_recovery()
                return
            self._feed_expected += 1
            try:
                updates = [_update(d) for d in msg.data or []]
            except (ConatError, KeyError, TypeError, ValueError) as e:
                log.warning("persist changefeed: bad batch: %s", e)
                self._spawn_recovery()
                return
            if self._catching_up:
                self._held.append(updates)
            else:
                self._deliver(updates)

    def _deliver(self, updates: list[Update]) -> None:
        fresh: list[Update] = []
        last = self.last_seq or 0
        for u in updates:
            if isinstance(u, Entry):
                if u.seq <= last:
                    continue  # already delivered
                last = u.seq
            fresh.append(u)
        self.last_seq = last
        if fresh:
            for feed in list(self._feeds):
                feed._put(fresh)

    def _spawn_recovery(self) -> asyncio.Task[None]:
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.ensure_future(self._recover())
        return self._recovery

    async def _recover(self) -> None:
        """Reopen the session with jittered exponential backoff until it works or we close."""
        while self.state != "closed":
            delay = backoff(self._attempt, self.reconnect_delay, self.reconnect_delay_max)
            self._attempt += 1
            await asyncio.sleep(delay)
            try:
                await self._connect()
                self._attempt = 0
                self.reconnects += 1
                return
            except asyncio.CancelledError:
                raise
            except ConatError as e:
                if e.code not in _RECOVERABLE and not isinstance(e, ConnectionClosed):
                    for feed in list(self._feeds):
                        feed._put(e)
                    raise
                log.info("persist reconnect to %s failed: %s", self.storage.path, e)

    async def _ping_loop(self) -> None:
        while self.state != "closed":
            await asyncio.sleep(self.ping_interval * random.uniform(0.75, 1.25))
            if self._recovery is not None and not self._recovery.done():
                continue
            try:
                reply = await self.nc.request(
                    self._subject(),
                    None,
                    headers={"cmd": "ping", "session": self.session},
                    timeout=max(1.0, self.ping_interval),
                )
                _check_reply(reply.data, reply.headers)
            except asyncio.CancelledError:
                raise
            except ConatError as e:
                log.info("persist ping failed (%s); reconnecting", e)
                with contextlib.suppress(ConatError):
                    await self._spawn_recovery()

    # ---- requests -----------------------------------------------------------------------------
    def _headers(self, cmd: str, extra: dict[str, Any]) -> dict[str, Any]:
        headers = {k: v for k, v in extra.items() if v is not None}
        headers["cmd"] = cmd
        if self.stateless:
            headers["storage"] = self.storage.to_wire()
        else:
            headers["session"] = self.session
        return headers

    async def request(self, cmd: str, data: Any = None, *, encoding: int = 0, **args: Any) -> Any:
        """Run one command; reconnects and retries while the persist server is away."""
        if self.state != "ready":
            await self.open()
        deadline = asyncio.get_running_loop().time() + self.timeout
        attempt = 0
        while True:
            try:
                if self.server_id is None:
                    await self._locate()
                reply = await self.nc.request(
                    self._subject(),
                    data,
                    headers=self._headers(cmd, args),
                    timeout=self.attempt_timeout,
                    encoding=encoding,
                )
                return _check_reply(reply.data, reply.headers)
            except ConatError as e:
                if e.code not in _RECOVERABLE or self.state == "closed":
                    raise
                if asyncio.get_running_loop().time() > deadline:
                    raise
                if self.stateless:
                    self.server_id = None
                    await asyncio.sleep(
                        backoff(attempt, self.reconnect_delay, self.reconnect_delay_max)
                    )
                    attempt += 1
                else:
                    try:
                        await self._spawn_recovery()
                    except ConatError:
                        if asyncio.get_running_loop().time() > deadline:
                            raise

    async def _get_all(self, start_seq: int | None, end_seq: int | None) -> list[Update]:
        if self.server_id is None:
            await self._locate()
        headers = self._headers(
            "getAll", {"start_seq": start_seq, "end_seq": end_seq, "format": _ROWS}
        )
        out: list[Update] = []
        expected = 0
        replies = self.nc.request_many(
            self._subject(), None, headers=headers, timeout=self.timeout, max_wait=self.timeout
        )
        loop = asyncio.get_running_loop()
        last = loop.time()
        async with contextlib.aclosing(replies):
            async for msg in replies:
                last = loop.time()
                hdr = msg.headers or {}
                if hdr.get("error") is not None:
                    _check_reply(None, hdr)
                if hdr.get("seq") != expected:
                    raise NoSubscribers(
                        f"getAll: batch {hdr.get('seq')} arrived, wanted {expected}; retry"
                    )
                expected += 1
                data = msg.data
                if data is None:
                    return out
                if hdr.get("format") == _ROWS:
                    out.extend(_entries(data))
                else:  # a server that does not know the compact form sends objects
                    out.extend(Entry.from_wire(d) for d in data)
        # Client.request_many swallows the null terminator after the first reply and ends the
        # same way on an idle timeout; only the time since the last batch tells them apart.
        if expected > 0 and loop.time() - last < self.timeout * 0.9:
            return out
        raise RequestTimeout("getAll ended without its terminator")

    # ---- commands -----------------------------------------------------------------------------
    async def set(
        self,
        data: Any,
        *,
        encoding: int = 0,
        headers: dict[str, Any] | None = None,
        key: str | None = None,
        ttl: float | None = None,
        previous_seq: int | None = None,
        msg_id: str | None = None,
    ) -> SetResult:
        result = await self.request(
            "set",
            data,
            encoding=encoding,
            headers=headers,
            key=key,
            ttl=ttl,
            previousSeq=previous_seq,
            msgID=msg_id or random_id(16),  # a retried set is then stored once
        )
        return SetResult(int(result["seq"]), int(result["time"]))

    async def set_many(self, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each op: ``{raw: bytes, encoding?, headers?, key?, ttl?, previousSeq?, msgID?}``;
        each result ``{seq, time}`` or ``{error, code}``."""
        result = await self.request("setMany", ops)
        if not isinstance(result, list):
            raise ConatError(f"setMany answered {result!r}")
        return result

    async def get(self, *, seq: int | None = None, key: str | None = None) -> Entry | None:
        if seq is None and key is None:
            raise BadRequest("get needs a seq or a key")
        found = await self.request("get", seq=seq, key=key)
        return None if found is None else Entry.from_wire(found)

    async def get_all(
        self, start_seq: int | None = None, end_seq: int | None = None
    ) -> list[Entry]:
        if self.state != "ready":
            await self.open()
        for attempt in range(5):
            try:
                return [u for u in await self._get_all(start_seq, end_seq) if isinstance(u, Entry)]
            except ConatError as e:
                if e.code not in _RECOVERABLE or attempt == 4:
                    raise
                if self.stateless:
                    self.server_id = None
                    await asyncio.sleep(
                        backoff(attempt, self.reconnect_delay, self.reconnect_delay_max)
                    )
                else:
                    await self._spawn_recovery()
        raise AssertionError("unreachable")

    async def delete(
        self,
        *,
        seq: int | None = None,
        seqs: list[int] | None = None,
        last_seq: int | None = None,
        all: bool = False,
    ) -> list[int]:
        result = await self.request(
            "delete", seq=seq, seqs=seqs, last_seq=last_seq, all=all or None
        )
        return list(result["seqs"])

    async def config(self, update: dict[str, Any] | None = None) -> dict[str, Any]:
        return dict(await self.request("config", config=update))

    async def inventory(self) -> dict[str, Any]:
        return dict(await self.request("inventory"))

    async def keys(self) -> list[str]:
        return list(await self.request("keys"))

    async def changefeed(self, start_seq: int | None = None) -> Changefeed:
        """Updates from now on (or from ``start_seq`` on), exactly once and in order."""
        if self.stateless:
            raise BadRequest("a stateless client has no changefeed")
        if self.state != "ready":
            await self.open()
        feed = Changefeed(self)
        first = not self._feeds
        self._feeds.add(feed)
        if first:
            if start_seq is not None:
                self.last_seq = start_seq - 1
            # reopen with the changefeed on: the same path as recovering after a restart
            old = self.session
            await self._connect()
            if old is not None:
                with contextlib.suppress(ConatError):
                    await self.nc.request(
                        self._subject(), None, headers={"cmd": "close", "session": old}, timeout=2
                    )
        return feed


class PersistStream(PersistClient):
    """A persistent stream: append, get, get_all, changefeed."""

    async def append(
        self,
        data: Any,
        *,
        encoding: int = 0,
        headers: dict[str, Any] | None = None,
        msg_id: str | None = None,
        ttl: float | None = None,
    ) -> SetResult:
        return await self.set(data, encoding=encoding, headers=headers, msg_id=msg_id, ttl=ttl)


class KV(PersistClient):
    """A key-value store: last write wins, or optimistic concurrency with ``previous_seq``."""

    async def set(  # type: ignore[override]
        self,
        key: str,
        value: Any,
        *,
        previous_seq: int | None = None,
        headers: dict[str, Any] | None = None,
        encoding: int = 0,
    ) -> SetResult:
        return await super().set(
            value, key=key, previous_seq=previous_seq, headers=headers, encoding=encoding
        )

    async def get(self, key: str) -> Any:  # type: ignore[override]
        entry = await super().get(key=key)
        return None if entry is None else entry.data

    async def entry(self, key: str) -> Entry | None:
        return await super().get(key=key)

    async def delete(self, key: str) -> bool:  # type: ignore[override]
        entry = await super().get(key=key)
        if entry is None:
            return False
        return bool(await super().delete(seq=entry.seq))


class AStream(PersistStream):
    """The stateless form of PersistStream: no session, one request per call."""

    def __init__(self, nc: Client, storage: Storage | str, **kw: Any) -> None:
        super().__init__(nc, storage, stateless=True, **kw)


class AKV(KV):
    """The stateless form of KV."""

    def __init__(self, nc: Client, storage: Storage | str, **kw: Any) -> None:
        super().__init__(nc, storage, stateless=True, **kw)
