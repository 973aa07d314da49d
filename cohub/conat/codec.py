"""The Conat message envelope: payload encoding, headers, chunking and reassembly. No I/O.

A message travels as one or more chunks. Every chunk of a message shares a random ``id``;
``seq`` counts 0, 1, 2, ... and ``done`` is set on the last one, which alone carries the
headers. The receiver drops a message whose chunks do not arrive in order, and forgets
partial messages older than ``PARTIAL_MESSAGE_TTL_S``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .errors import BadRequest
from .protocol import CHUNK_SIZE, MAX_HEADERS_BYTES, PARTIAL_MESSAGE_TTL_S, Encoding

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
        raise BadRequest(f"payload is not valid {Encoding(encoding).name}: {e}") from e
    raise BadRequest(f"unknown encoding {encoding!r}: use 0 (MessagePack) or 1 (JSON)")


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


class Assembler:
    """Reassembles chunked deliveries for one receiver."""

    def __init__(self, ttl: float = PARTIAL_MESSAGE_TTL_S) -> None:
        self._ttl = ttl
        self._partial: dict[str, _Partial] = {}

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
        if seq == 0 and done:
            return Message(subject, chunk, encoding, headers)  # the common single-chunk case
        now = time.monotonic() if now is None else now
        partial = self._partial.get(msg_id)
        if partial is None:
            if seq != 0:
                return None  # first chunk missing: drop
            partial = _Partial(subject, encoding, 0, [], now)
            self._partial[msg_id] = partial
            self.expire(now)
        if seq != partial.next_seq:
            del self._partial[msg_id]  # out of order or a chunk missing: drop the message
            return None
        partial.parts.append(chunk)
        partial.next_seq += 1
        if not done:
            return None
        del self._partial[msg_id]
        return Message(partial.subject, b"".join(partial.parts), partial.encoding, headers)

    def expire(self, now: float | None = None) -> int:
        """Forget partial messages older than the TTL; returns how many were dropped."""
        now = time.monotonic() if now is None else now
        stale = [k for k, p in self._partial.items() if now - p.started > self._ttl]
        for k in stale:
            del self._partial[k]
        return len(stale)
