"""The Conat message envelope: payload encoding, headers, chunking and reassembly. No I/O.

A message travels as one or more chunks. Every chunk of a message shares a random ``id``;
``seq`` counts 0, 1, 2, ... and ``done`` is set on the last one, which alone carries the
headers. The receiver drops a message whose chunks do not arrive in order, forgets
partial messages older than ``PARTIAL_MESSAGE_TTL_S`` and holds at most
``PARTIAL_MESSAGE_MAX_BYTES`` in them.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .errors import BadRequest
from .protocol import (
    CHUNK_SIZE,
    MAX_HEADERS_BYTES,
    PARTIAL_MESSAGE_MAX_BYTES,
    PARTIAL_MESSAGE_TTL_S,
    Encoding,
)

log = logging.getLogger("cohub.conat.codec")

Headers = dict[str, Any]


def encode(data: Any, encoding: int = Encoding.MSGPACK) -> bytes:
    """Serialize a payload; raises BadRequest for an unknown encoding or unserializable data."""
    check_encoding(encoding)
    try:
        if encoding == Encoding.MSGPACK:
            return msgpack.packb(data, use_bin_type=True, datetime=True)
        if encoding == Encoding.JSON:
            return json.dumps(data, separators=(",", ":"), default=str).encode()
    except (TypeError, ValueError, OverflowError) as e:
        raise BadRequest(f"cannot encode payload: {e}") from e
    raise BadRequest(f"unknown encoding {encoding!r}: use 0 (MessagePack) or 1 (JSON)")


def decode(raw: bytes, encoding: int) -> Any:
    """Deserialize a payload; raises BadRequest on garbage or an unknown encoding."""
    check_encoding(encoding)
    try:
        if encoding == Encoding.MSGPACK:
            return msgpack.unpackb(raw, raw=False, strict_map_key=False, timestamp=3)
        if encoding == Encoding.JSON:
            return json.loads(raw) if raw else None
    except Exception as e:  # msgpack raises many unrelated types on garbage
        raise BadRequest(
            f"payload is not valid {Encoding(encoding).name}: {_describe_decode_error(e)}"
        ) from e
    raise BadRequest(f"unknown encoding {encoding!r}: use 0 (MessagePack) or 1 (JSON)")


def _describe_decode_error(e: Exception) -> str:
    """What is wrong with a payload, in words: several msgpack errors have no message."""
    text = str(e)
    if isinstance(e, msgpack.ExtraData):
        return "extra bytes after the first value"
    if isinstance(e, msgpack.FormatError):
        return "a byte that starts no MessagePack type (such as 0xc1)"
    if isinstance(e, msgpack.StackError):
        return "values nested too deeply"
    if "incomplete input" in text or "exceeds max_" in text:
        # msgpack caps declared lengths by the buffer's size: a longer one is cut off data
        return f"truncated data ({text})"
    return text or type(e).__name__


def check_encoding(encoding: object) -> int:
    """The encoding as a plain int; BadRequest unless it is 0 or 1 (bools and floats too)."""
    if (
        not isinstance(encoding, int)
        or isinstance(encoding, bool)
        or encoding not in (Encoding.MSGPACK, Encoding.JSON)
    ):
        raise BadRequest(f"unknown encoding {encoding!r}: use 0 (MessagePack) or 1 (JSON)")
    return int(encoding)


def check_headers(headers: object) -> Headers | None:
    """Headers must be a JSON-able object of bounded size."""
    if headers is None:
        return None
    if not isinstance(headers, dict):
        raise BadRequest("headers must be an object")
    if len(headers) <= 16:  # the common case: a few short strings, sized without encoding
        size = 0
        for k, v in headers.items():
            if type(k) is not str or type(v) is not str:
                break
            size += len(k) + len(v)
        else:
            if 6 * size <= MAX_HEADERS_BYTES:  # even if every character were escaped
                return headers
    try:
        size = len(json.dumps(headers, default=str))
    except (TypeError, ValueError) as e:
        raise BadRequest(f"headers are not JSON-able: {e}") from e
    if size > MAX_HEADERS_BYTES:
        raise BadRequest(f"headers are {size} bytes; the limit is {MAX_HEADERS_BYTES}")
    return headers


def new_message_id() -> str:
    return secrets.token_urlsafe(8)


def split(raw: bytes, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Chunks of a serialized payload; an empty payload is one empty chunk."""
    if len(raw) <= chunk_size:
        yield raw
        return
    view = memoryview(raw)
    for start in range(0, len(raw), chunk_size):
        yield bytes(view[start : start + chunk_size])


@dataclass(slots=True)
class Message:
    """A received message. ``data`` decodes the raw payload on first use."""

    subject: str
    raw: bytes
    encoding: int = Encoding.MSGPACK
    headers: Headers | None = None
    _decoded: Any = field(default=None, repr=False)
    _has_decoded: bool = field(default=False, repr=False)

    @property
    def data(self) -> Any:
        if not self._has_decoded:
            self._decoded = decode(self.raw, self.encoding)
            self._has_decoded = True
        return self._decoded

    @property
    def reply_to(self) -> str | None:
        value = (self.headers or {}).get("CN-Reply")
        return value if isinstance(value, str) else None


@dataclass(slots=True)
class _Partial:
    subject: str
    encoding: int
    next_seq: int
    parts: list[bytes]
    started: float
    size: int = 0


class Assembler:
    """Reassembles chunked deliveries for one receiver.

    Anyone allowed to publish to a subject can start many large messages and never finish
    them, so what partial messages hold is bounded twice: by age (``ttl``, checked on every
    chunk and by :meth:`expire`) and by bytes (``max_bytes``; the oldest partial messages
    are dropped to make room, and a message that alone exceeds it is dropped).
    """

    def __init__(
        self, ttl: float = PARTIAL_MESSAGE_TTL_S, max_bytes: int = PARTIAL_MESSAGE_MAX_BYTES
    ) -> None:
        self._ttl = ttl
        self._max_bytes = max_bytes
        # insertion order is start order (the clock only goes forward), so the oldest
        # partial message is always first: expiry and eviction look at the front only
        self._partial: dict[str, _Partial] = {}
        self.held_bytes = 0
        self.dropped = 0  # partial messages given up on (expired, evicted, out of order)

    def __len__(self) -> int:
        return len(self._partial)

    def feed(
        self,
        subject: str,
        msg_id: str,
        seq: int,
        done: bool,
        encoding: int,
        chunk: bytes,
        headers: Headers | None = None,
        now: float | None = None,
    ) -> Message | None:
        """Add one chunk; returns the whole message once its last chunk arrives."""
        if seq == 0 and done:  # the common single-chunk case
            if self._partial:
                self.expire(now)
            return Message(subject, chunk, encoding, headers)
        now = time.monotonic() if now is None else now
        if self._partial:
            self.expire(now)
        partial = self._partial.get(msg_id)
        if partial is None:
            if seq != 0:
                return None  # first chunk missing (or already given up on): drop
            partial = _Partial(subject, encoding, 0, [], now)
            self._partial[msg_id] = partial
        if seq != partial.next_seq:
            self._drop(msg_id)  # out of order or a chunk missing: drop the message
            return None
        if done:
            self._drop(msg_id, counted=False)
            partial.parts.append(chunk)
            return Message(partial.subject, b"".join(partial.parts), partial.encoding, headers)
        if partial.size + len(chunk) > self._max_bytes:
            self._drop(msg_id)
            log.warning(
                "dropped a partial message on %s: over %d bytes before its last chunk",
                subject,
                self._max_bytes,
            )
            return None
        if self.held_bytes + len(chunk) > self._max_bytes:
            self._make_room(len(chunk), keep=msg_id)
        partial.parts.append(chunk)
        partial.size += len(chunk)
        partial.next_seq += 1
        self.held_bytes += len(chunk)
        return None

    def _make_room(self, size: int, keep: str) -> None:
        """Drop the oldest partial messages but ``keep`` until ``size`` more bytes fit (the
        caller made sure ``keep`` plus ``size`` alone fits)."""
        for msg_id in list(self._partial):
            if self.held_bytes + size <= self._max_bytes:
                return
            if msg_id != keep:
                log.warning(
                    "dropped the oldest partial message on %s: partial messages would hold "
                    "over %d bytes",
                    self._partial[msg_id].subject,
                    self._max_bytes,
                )
                self._drop(msg_id)

    def _drop(self, msg_id: str, *, counted: bool = True) -> None:
        partial = self._partial.pop(msg_id)
        self.held_bytes -= partial.size
        self.dropped += counted

    def expire(self, now: float | None = None) -> int:
        """Forget partial messages older than the TTL; returns how many were dropped."""
        now = time.monotonic() if now is None else now
        stale = 0
        while self._partial:
            oldest = next(iter(self._partial))
            if now - self._partial[oldest].started <= self._ttl:
                break
            self._drop(oldest)
            stale += 1
        if stale:
            log.info("dropped %d partial message(s) older than %s s", stale, self._ttl)
        return stale
