"""One stream: a SQLite file (or an in-memory database) of messages, with limits.

A message has a server-assigned ``seq`` (increasing, never reused) and ``time`` (ms since the
epoch), an optional unique ``key``, an ``encoding`` (0 MessagePack, 1 JSON), the raw payload
bytes and optional JSON ``headers``. Payloads over 1 KB are stored zstd-compressed. The table
layout is the reference's, so a stream file can move between implementations; the schema
version lives in ``PRAGMA user_version`` and is checked on open.

Schema versions: 1 is the reference layout (messages, config); 2 adds ``msg_ids``, the msgIDs
of the last 2 minutes with the ``{seq, time}`` they were stored at. They live in the stream's
own file and are written in the same transaction as the message, so a repeated msgID is
recognised after the stream is closed and reopened, or its persist process restarts. A file
of version 0 or 1 gains the table on open (another implementation ignores an extra table).

Several connections (processes, in nfs mode) may write one file: ``PRAGMA data_version`` tells
a connection that another one committed, and then it re-reads the counters and config it
caches.

Every change is reported to the listeners after it is committed: a stored message as a dict
with ``seq, time, key, encoding, raw, headers``, a deletion as ``{"op": "delete", "seqs"}``.
The reference runs its storage synchronously on the event loop (better-sqlite3); so do we:
each call is short, and a single thread owns each connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import zstandard

from ..conat.errors import BadRequest, ConatError, ServiceError
from . import limits
from .limits import EPHEMERAL_MAX_BYTES, Config

log = logging.getLogger("cohub.persist.storage")

SCHEMA_VERSION = 2
COMPRESS_THRESHOLD = 1024
MSG_ID_TTL_S = 120.0
_MSG_ID_PRUNE_S = 10.0  # expired msgIDs are deleted at most this often (on a write)
MAX_KEY_LENGTH = 4096
MAX_MSG_ID_LENGTH = 256

Mode = Literal["disk", "nfs"]
Change = dict[str, Any]
Listener = Callable[[Change], None]

_NONE, _ZSTD = 0, 1
_compressor = zstandard.ZstdCompressor(level=3)
_decompressor = zstandard.ZstdDecompressor()

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "key TEXT UNIQUE, time INTEGER NOT NULL, headers TEXT, compress NUMBER NOT NULL, "
    "encoding NUMBER NOT NULL, raw BLOB NOT NULL, size NUMBER NOT NULL, ttl NUMBER)",
    "CREATE TABLE IF NOT EXISTS config (field TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS idx_messages_key ON messages(key)",
    "CREATE INDEX IF NOT EXISTS idx_messages_time ON messages(time)",
    # time is ms since the epoch, as in the {seq, time} a set answers. One b-tree (WITHOUT
    # ROWID) and no index on time: every set with a msgID writes here, in the transaction
    # the client waits for, while pruning scans the few minutes of rows once in a while.
    "CREATE TABLE IF NOT EXISTS msg_ids (msg_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, "
    "time INTEGER NOT NULL) WITHOUT ROWID",
)
_COLUMNS = {"seq", "key", "time", "headers", "compress", "encoding", "raw", "size", "ttl"}
_SELECT = "SELECT seq, key, time, compress, encoding, raw, headers FROM messages"
_SELECT_ROWS = "SELECT seq, time, encoding, raw, key, headers, compress FROM messages"
# A message as getAll sends it in the compact form: (seq, time, encoding, raw, key, headers).
Row = tuple[int, int, int, bytes, str | None, Any]


class StorageError(ServiceError):
    """The stream's file cannot be opened, read or written (corrupt, read-only, disk full)."""


class WrongLastSequence(ConatError):
    default_code = "wrong-last-sequence"


class Rejected(ConatError):
    """A write refused by a limit (rate, max_msgs/max_bytes with discard new, max_msg_size)."""

    default_code = "reject"


@dataclass(frozen=True, slots=True)
class StoredMessage:
    seq: int
    time: int  # ms since the epoch
    key: str | None
    encoding: int
    raw: bytes
    headers: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: Row) -> StoredMessage:
        seq, t, encoding, raw, key, headers = row
        return cls(seq, t, key, encoding, raw, headers)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq,
            "time": self.time,
            "encoding": self.encoding,
            "raw": self.raw,
        }
        if self.key is not None:
            out["key"] = self.key
        if self.headers is not None:
            out["headers"] = self.headers
        return out


@dataclass(frozen=True, slots=True)
class SetResult:
    seq: int
    time: int

    def to_wire(self) -> dict[str, int]:
        return {"seq": self.seq, "time": self.time}


def _row_to_message(row: tuple[Any, ...]) -> StoredMessage:
    seq, key, t, compress, encoding, raw, headers = row
    if compress == _ZSTD:
        raw = _decompressor.decompress(raw)
    elif compress != _NONE:
        raise StorageError(f"message {seq} uses unknown compression {compress}")
    return StoredMessage(
        int(seq),
        round(t * 1000),
        key,
        int(encoding),
        bytes(raw),
        json.loads(headers) if headers else None,
    )


def _describe(error: sqlite3.Error) -> str:
    text = str(error)
    if "not a database" in text or "malformed" in text:
        return f"{text} (the file is corrupted)"
    if "readonly" in text or "unable to open" in text:
        return f"{text} (check that the directory and file are writable)"
    if "full" in text:
        return f"{text} (no space left)"
    return text


class Stream:
    """One open stream. Create with ``Stream.open``; call ``close`` when done."""

    def __init__(
        self,
        name: str,
        conn: sqlite3.Connection,
        *,
        file: Path | None,
        archive: Path | None,
        archive_interval: float,
    ) -> None:
        self.name = name
        self.file = file
        self._db = conn
        self._archive = archive
        self._archive_interval = archive_interval
        self._archived_at = time.monotonic()
        self._dirty = False
        self._listeners: list[Listener] = []
        self._pending: list[Change] = []
        self._pruned_at = 0.0  # monotonic time msg_ids was last pruned
        self._recent: deque[tuple[float, int]] = deque()  # (time, size) of writes in the last 1 s
        self.closed = False
        self._data_version = -1
        self._conf = Config()
        self._count = self._bytes = 0
        self._refresh()

    def _refresh(self) -> None:
        """Re-read what this object caches when another connection committed since."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        self._data_version = version
        conf = self._read_config()
        self._conf = self._cap_ephemeral(conf) if self.file is None else conf
        self._count, self._bytes = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages"
        ).fetchone()

    # ---- opening and closing ------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        name: str,
        file: Path | None,
        *,
        sync: bool = False,
        mode: Mode = "disk",
        archive: Path | None = None,
        archive_interval: float = 30.0,
    ) -> Stream:
        """Open (creating if needed) the stream stored in ``file``; None means in memory."""
        try:
            if file is None:
                conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            else:
                file.parent.mkdir(parents=True, exist_ok=True)
                if archive is not None:
                    _restore_from_archive(file, archive)
                conn = sqlite3.connect(
                    str(file), isolation_level=None, check_same_thread=False, timeout=10
                )
        except sqlite3.Error as e:
            raise StorageError(f"stream '{name}': cannot open its file: {_describe(e)}") from None
        except OSError as e:
            raise StorageError(
                f"stream '{name}': cannot open its file: {e} "
                "(check that the directory is writable and has space)"
            ) from None
        try:
            _prepare(conn, name, ephemeral=file is None, sync=sync, mode=mode)
            stream = cls(name, conn, file=file, archive=archive, archive_interval=archive_interval)
        except sqlite3.Error as e:
            conn.close()
            raise StorageError(f"stream '{name}': cannot open: {_describe(e)}") from None
        except ConatError:
            conn.close()
            raise
        return stream

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._listeners.clear()
        try:
            if self.file is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self.archive_now()
        finally:
            self._db.close()

    def enable_sync(self) -> None:
        """Require every later commit to reach the disk (a session asked for sync)."""
        if self.file is not None:
            self._db.execute("PRAGMA synchronous=FULL")

    # ---- listeners ----------------------------------------------------------------------------
    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every committed change; returns a function that stops it."""
        self._listeners.append(listener)

        def stop() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return stop

    def _emit_pending(self) -> None:
        pending, self._pending = self._pending, []
        for change in pending:
            for listener in list(self._listeners):
                try:
                    listener(change)
                except Exception:
                    log.exception("stream %s: a change listener failed", self.name)

    # ---- writes -------------------------------------------------------------------------------
    def set(
        self,
        raw: bytes,
        *,
        encoding: int = 0,
        headers: Any = None,
        key: str | None = None,
        ttl: float | None = None,
        previous_seq: int | None = None,
        msg_id: str | None = None,
    ) -> SetResult:
        """Store one message; returns its ``{seq, time}`` (or the original one for a repeated
        msgID). Raises WrongLastSequence, Rejected, BadRequest or StorageError."""
        with self._transaction():
            return self._set(raw, encoding, headers, key, ttl, previous_seq, msg_id)

    def set_many(self, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store several messages in one transaction; each result is ``{seq, time}`` or
        ``{error, code}`` for that op alone. A storage failure fails the whole batch."""
        results: list[dict[str, Any]] = []
        with self._transaction():
            for op in ops:
                try:
                    if not isinstance(op, dict):
                        raise BadRequest("each setMany op must be an object")
                    raw = op.get("raw", b"")
                    result = self._set(
                        raw,
                        op.get("encoding", 0),
                        op.get("headers"),
                        op.get("key"),
                        op.get("ttl"),
                        op.get("previousSeq"),
                        op.get("msgID"),
                    )
                    results.append(result.to_wire())
                except ConatError as e:
                    if isinstance(e, StorageError):
                        raise
                    results.append(e.to_wire())
        return results

    def _set(
        self,
        raw: object,
        encoding: object,
        headers: Any,
        key: object,
        ttl: object,
        previous_seq: object,
        msg_id: object,
    ) -> SetResult:
        raw, encoding, key, ttl, previous_seq, msg_id, header_text = _check_set(
            raw, encoding, headers, key, ttl, previous_seq, msg_id
        )
        now = time.time()
        if msg_id is not None:
            hit = self._db.execute(
                "SELECT seq, time FROM msg_ids WHERE msg_id=? AND time>?",
                (msg_id, round((now - MSG_ID_TTL_S) * 1000)),
            ).fetchone()
            if hit is not None:
                return SetResult(int(hit[0]), int(hit[1]))
        old_seq: int | None = None
        if key is not None:
            row = self._db.execute("SELECT seq FROM messages WHERE key=?", (key,)).fetchone()
            old_seq = row[0] if row else None
            if previous_seq is not None and (old_seq or 0) != previous_seq:
                raise WrongLastSequence(
                    f"wrong last sequence: key {key!r} is at seq {old_seq or 0}, not {previous_seq}"
                )
        size = len(raw) + (len(header_text) if header_text else 0) + (len(key) if key else 0)
        self._enforce(size, now, replaces=old_seq is not None)
        if len(raw) > COMPRESS_THRESHOLD:
            stored, compress = _compressor.compress(raw), _ZSTD
        else:
            stored, compress = raw, _NONE
        if old_seq is not None:
            self._delete_seqs([old_seq])
        cur = self._db.execute(
            "INSERT INTO messages(time, compress, encoding, raw, headers, key, size, ttl) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (now, compress, encoding, stored, header_text, key, size, ttl),
        )
        seq = int(cur.lastrowid or 0)
        self._count += 1
        self._bytes += size
        result = SetResult(seq, round(now * 1000))
        self._recent.append((now, size))
        if msg_id is not None:
            # REPLACE: an expired, not yet pruned row of the same msgID gives way
            self._db.execute(
                "INSERT OR REPLACE INTO msg_ids(msg_id, seq, time) VALUES (?, ?, ?)",
                (msg_id, seq, result.time),
            )
            self._prune_msg_ids(now)
        change: Change = {
            "seq": seq,
            "time": result.time,
            "encoding": encoding,
            "raw": raw,
        }
        if key is not None:
            change["key"] = key
        if headers is not None:
            change["headers"] = headers
        if msg_id is not None:
            change["msgID"] = msg_id
        self._pending.append(change)
        return result

    def delete(
        self,
        *,
        seq: object = None,
        seqs: object = None,
        last_seq: object = None,
        all: object = None,
    ) -> list[int]:
        """Delete by one seq, a list of seqs, everything up to last_seq, or all; returns the
        seqs actually deleted (and announces them)."""
        with self._transaction():
            if all:
                return self._delete_where("1=1", ())
            if last_seq is not None:
                return self._delete_where("seq<=?", (_int("last_seq", last_seq),))
            if seq is not None:
                return self._delete_seqs([_int("seq", seq)])
            if seqs is not None:
                if not isinstance(seqs, list):
                    raise BadRequest("seqs must be a list of integers")
                return self._delete_seqs([_int("seqs[]", s) for s in seqs])
        return []

    def config(self, update: object = None) -> Config:
        """Apply a partial config (None fields unchanged) and return the full config; new
        limits are enforced at once."""
        new = limits.merge(self._conf, update)
        with self._transaction():
            if new != self._conf:
                stored = limits.to_db(new)
                self._db.execute("DELETE FROM config")
                self._db.executemany(
                    "INSERT INTO config(field, value) VALUES (?, ?)", stored.items()
                )
            self._conf = self._cap_ephemeral(new) if self.file is None else new
            self._enforce(0, time.time(), replaces=False)
        return self._conf

    def expire(self) -> None:
        """Delete what max_age and per-message ttl say has expired (and announce it)."""
        self._refresh()  # every read starts here: see other connections' commits and config
        if self._conf.max_age > 0 or self._conf.allow_msg_ttl:
            with self._transaction():
                self._expire(time.time())

    # ---- reads --------------------------------------------------------------------------------
    def get(self, *, seq: object = None, key: object = None) -> StoredMessage | None:
        self.expire()
        try:
            if seq is not None:
                row = self._db.execute(_SELECT + " WHERE seq=?", (_int("seq", seq),)).fetchone()
            elif key is not None:
                if not isinstance(key, str):
                    raise BadRequest("key must be a string")
                row = self._db.execute(_SELECT + " WHERE key=?", (key,)).fetchone()
            else:
                raise BadRequest("get needs a seq or a key")
        except sqlite3.Error as e:
            raise StorageError(f"stream '{self.name}': cannot read: {_describe(e)}") from None
        return _row_to_message(row) if row else None

    def get_all(self, start_seq: object = None, end_seq: object = None) -> Iterator[StoredMessage]:
        """Messages with start_seq <= seq <= end_seq, oldest first."""
        for row in self.get_all_rows(start_seq, end_seq):
            yield StoredMessage.from_row(row)

    def get_all_rows(self, start_seq: object = None, end_seq: object = None) -> Iterator[Row]:
        """What get_all yields, as plain tuples: getAll reads a whole stream this way, and a
        tuple costs a third of a message object (the server's read rate depends on it)."""
        self.expire()
        where, params = [], []
        if start_seq is not None:
            where.append("seq>=?")
            params.append(_int("start_seq", start_seq))
        if end_seq is not None:
            where.append("seq<=?")
            params.append(_int("end_seq", end_seq))
        query = _SELECT_ROWS + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq"
        loads, decompress = json.loads, _decompressor.decompress
        try:
            for seq, t, encoding, raw, key, headers, compress in self._db.execute(query, params):
                if compress:
                    if compress != _ZSTD:
                        raise StorageError(f"message {seq} uses unknown compression {compress}")
                    raw = decompress(raw)
                yield (
                    seq,
                    round(t * 1000),
                    int(encoding),
                    raw,
                    key,
                    loads(headers) if headers else None,
                )
        except sqlite3.Error as e:
            raise StorageError(f"stream '{self.name}': cannot read: {_describe(e)}") from None

    def keys(self) -> list[str]:
        self.expire()
        rows = self._db.execute("SELECT key FROM messages WHERE key IS NOT NULL ORDER BY seq")
        return [r[0] for r in rows]

    def inventory(self) -> dict[str, Any]:
        self.expire()
        return {
            "bytes": self._bytes,
            "count": self._count,
            "limits": self._conf.changed(),
            "seq": self.last_seq(),
        }

    def last_seq(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='messages'").fetchone()
        return int(row[0]) if row else 0

    @property
    def conf(self) -> Config:
        return self._conf

    # ---- archive ------------------------------------------------------------------------------
    def archive_now(self) -> None:
        """Copy the stream to its archive file (sqlite backup API); errors are logged."""
        if self._archive is None or self.file is None:
            return
        try:
            self._archive.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._archive.with_name(self._archive.name + ".tmp")
            target = sqlite3.connect(str(tmp))
            try:
                self._db.backup(target)
            finally:
                target.close()
            os.replace(tmp, self._archive)
            self._dirty = False
            self._archived_at = time.monotonic()
        except (sqlite3.Error, OSError) as e:
            log.warning("stream %s: archive copy to %s failed: %s", self.name, self._archive, e)

    def archive_if_due(self) -> None:
        if self._dirty and time.monotonic() - self._archived_at >= self._archive_interval:
            self.archive_now()

    # ---- internals ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        if self.closed:
            raise StorageError(f"stream '{self.name}' is closed")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            # the write lock is held now: nobody else can commit until we do
            self._refresh()
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
            raise StorageError(f"stream '{self.name}': cannot write: {_describe(e)}") from None
        count, size, recent, conf = self._count, self._bytes, len(self._recent), self._conf
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException as e:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            self._pending.clear()
            self._count, self._bytes, self._conf = count, size, conf
            while len(self._recent) > recent:
                self._recent.pop()
            if isinstance(e, sqlite3.Error):
                raise StorageError(f"stream '{self.name}': cannot write: {_describe(e)}") from None
            raise
        if self._pending:
            self._dirty = True
            self._emit_pending()
        if self._archive is not None:
            self.archive_if_due()

    def _delete_where(self, where: str, params: tuple[Any, ...]) -> list[int]:
        rows = self._db.execute(
            f"DELETE FROM messages WHERE {where} RETURNING seq, size", params
        ).fetchall()
        return self._deleted(rows)

    def _delete_seqs(self, seqs: list[int]) -> list[int]:
        rows = []
        for s in seqs:
            rows.extend(
                self._db.execute("DELETE FROM messages WHERE seq=? RETURNING seq, size", (s,))
            )
        return self._deleted(rows)

    def _deleted(self, rows: list[Any]) -> list[int]:
        seqs = sorted(int(r[0]) for r in rows)
        if seqs:
            self._count -= len(rows)
            self._bytes -= sum(int(r[1]) for r in rows)
            self._pending.append({"op": "delete", "seqs": seqs})
        return seqs

    def _expire(self, now: float) -> None:
        if self._conf.max_age > 0:
            self._delete_where("time <= ?", (now - self._conf.max_age / 1000,))
        if self._conf.allow_msg_ttl:
            self._delete_where("ttl IS NOT NULL AND time + ttl / 1000.0 < ?", (now,))

    def _enforce(self, size: int, now: float, *, replaces: bool) -> None:
        """Make room for (or refuse) a new message of ``size`` bytes; size 0 re-checks the
        current contents after a config change."""
        conf = self._conf
        writing = size > 0
        if writing and conf.max_msg_size > -1 and size > conf.max_msg_size:
            raise Rejected(f"max_msg_size of {conf.max_msg_size} bytes exceeded ({size} bytes)")
        if writing and (conf.max_msgs_per_second > 0 or conf.max_bytes_per_second > 0):
            while self._recent and self._recent[0][0] < now - 1.0:
                self._recent.popleft()
            if conf.max_msgs_per_second > 0 and len(self._recent) >= conf.max_msgs_per_second:
                raise Rejected("max_msgs_per_second exceeded")
            recent_bytes = sum(s for _, s in self._recent)
            if conf.max_bytes_per_second > 0 and recent_bytes + size > conf.max_bytes_per_second:
                raise Rejected("max_bytes_per_second exceeded")
        self._expire(now)
        if conf.max_msgs > -1:
            excess = self._count + (1 if writing and not replaces else 0) - conf.max_msgs
            if excess > 0:
                if conf.discard_policy == "new" and writing:
                    raise Rejected(f"max_msgs limit of {conf.max_msgs} reached")
                if conf.discard_policy == "old":
                    self._delete_where(
                        "seq IN (SELECT seq FROM messages ORDER BY seq LIMIT ?)", (excess,)
                    )
        if conf.max_bytes > -1:
            if writing and size > conf.max_bytes:
                raise Rejected(f"message of {size} bytes exceeds max_bytes {conf.max_bytes}")
            to_free = self._bytes + size - conf.max_bytes
            if to_free > 0:
                if conf.discard_policy == "new" and writing:
                    raise Rejected(f"max_bytes limit of {conf.max_bytes} reached")
                if conf.discard_policy == "old":
                    freed, last = 0, None
                    for seq, msg_size in self._db.execute(
                        "SELECT seq, size FROM messages ORDER BY seq"
                    ):
                        if freed >= to_free:
                            break
                        freed += msg_size
                        last = seq
                    if last is not None:
                        self._delete_where("seq <= ?", (last,))

    def _prune_msg_ids(self, now: float) -> None:
        """Delete msgIDs older than the dedupe window; at most every few seconds, since it
        scans the table and most writes would find nothing to delete."""
        tick = time.monotonic()
        if tick - self._pruned_at < _MSG_ID_PRUNE_S:
            return
        self._pruned_at = tick
        self._db.execute("DELETE FROM msg_ids WHERE time<=?", (round((now - MSG_ID_TTL_S) * 1000),))

    def _read_config(self) -> Config:
        rows = dict(self._db.execute("SELECT field, value FROM config").fetchall())
        return limits.from_db(rows)

    @staticmethod
    def _cap_ephemeral(conf: Config) -> Config:
        if 0 < conf.max_bytes <= EPHEMERAL_MAX_BYTES:
            return conf
        return limits.merge(conf, {"max_bytes": EPHEMERAL_MAX_BYTES})


def _int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be an integer, not {type(value).__name__}")
    return value


def _check_set(
    raw: object,
    encoding: object,
    headers: Any,
    key: object,
    ttl: object,
    previous_seq: object,
    msg_id: object,
) -> tuple[bytes, int, str | None, float | None, int | None, str | None, str | None]:
    if isinstance(raw, bytearray | memoryview):
        raw = bytes(raw)
    if not isinstance(raw, bytes):
        raise BadRequest(f"raw must be binary, not {type(raw).__name__}")
    if encoding not in (0, 1) or isinstance(encoding, bool):
        raise BadRequest(f"unknown encoding {encoding!r}: use 0 (MessagePack) or 1 (JSON)")
    if key is not None and (not isinstance(key, str) or len(key) > MAX_KEY_LENGTH):
        raise BadRequest(f"key must be a string of at most {MAX_KEY_LENGTH} characters")
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 <= ttl < 1e15
    ):
        raise BadRequest("ttl must be a non-negative number of milliseconds")
    if previous_seq is not None:
        previous_seq = _int("previousSeq", previous_seq)
    if msg_id is not None and (not isinstance(msg_id, str) or len(msg_id) > MAX_MSG_ID_LENGTH):
        raise BadRequest(f"msgID must be a string of at most {MAX_MSG_ID_LENGTH} characters")
    header_text = None
    if headers is not None:
        try:
            header_text = json.dumps(headers, separators=(",", ":"))
        except (TypeError, ValueError) as e:
            raise BadRequest(f"headers must be JSON-able: {e}") from None
    return raw, int(encoding), key, ttl, previous_seq, msg_id, header_text  # type: ignore[return-value]


def _prepare(
    conn: sqlite3.Connection, name: str, *, ephemeral: bool, sync: bool, mode: Mode
) -> None:
    """Pragmas, schema creation and the schema version check."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]  # reads the header: corrupt?
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"stream '{name}' has schema version {version}, newer than this cohub supports "
            f"({SCHEMA_VERSION}); upgrade cohub"
        )
    if not ephemeral:
        journal = "wal" if mode == "disk" else "delete"  # WAL needs shared memory: not on NFS
        conn.execute(f"PRAGMA journal_mode={journal}").fetchone()
        conn.execute(f"PRAGMA synchronous={'FULL' if sync else 'NORMAL'}")
    existing = {r[1] for r in conn.execute("PRAGMA table_info(messages)").fetchall()}
    if existing and not _COLUMNS <= existing:
        raise StorageError(
            f"stream '{name}': its messages table lacks columns "
            f"{sorted(_COLUMNS - existing)}; it is not a persist stream file"
        )
    if version < SCHEMA_VERSION or not existing:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except sqlite3.Error:
            conn.execute("ROLLBACK")
            raise


def _restore_from_archive(file: Path, archive: Path) -> None:
    """Tiered storage: when the archive copy is newer than the local file, start from it.

    In WAL mode the newest commits may sit only in ``<file>-wal`` (the main file changes at
    checkpoints), so the local copy is as new as the newer of the two.
    """
    try:
        archive_mtime = archive.stat().st_mtime
    except FileNotFoundError:
        return
    local_mtime = 0.0
    for local in (file, Path(str(file) + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            local_mtime = max(local_mtime, local.stat().st_mtime)
    if archive_mtime > local_mtime:
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(file) + suffix)
        tmp = file.with_name(file.name + ".restore")
        shutil.copyfile(archive, tmp)
        os.replace(tmp, file)
