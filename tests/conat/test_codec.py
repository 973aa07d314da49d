"""The message envelope: encodings, headers, chunking and reassembly."""

from __future__ import annotations

import msgpack
import pytest

from cohub.conat.codec import Assembler, check_encoding, check_headers, decode, encode, split
from cohub.conat.errors import BadRequest


@pytest.mark.parametrize("encoding", [0, 1])
@pytest.mark.parametrize(
    "value", [None, 1, "text", [1, "a"], {"k": [1, 2]}, {"nested": {"x": None}}]
)
def test_roundtrip(encoding: int, value: object) -> None:
    assert decode(encode(value, encoding), encoding) == value


def test_msgpack_keeps_bytes_and_json_refuses_them() -> None:
    assert decode(encode(b"\x00\xff", 0), 0) == b"\x00\xff"
    assert decode(encode({"b": b"x"}, 1), 1) == {"b": "b'x'"}  # JSON: str() of unknowns


@pytest.mark.parametrize("encoding", [2, -1, "0", None, 1.0, True])
def test_unknown_encodings_are_bad_requests(encoding: object) -> None:
    with pytest.raises(BadRequest, match="unknown encoding"):
        check_encoding(encoding)
    with pytest.raises(BadRequest):
        encode(1, encoding)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\xc1", "a byte that starts no MessagePack type"),  # msgpack's message is empty
        (b"\x92\x01", "truncated data"),
        (b"\xdb\xff\xff\xff\xff", "truncated data"),
        (b"", "truncated data"),
        (b"\x82\xa1a", "truncated data"),  # a map of 2 with one key
        (b"\x01\x02", "extra bytes after the first value"),
        (b"\x91" * 5000, "nested too deeply"),  # msgpack's message is empty
    ],
)
def test_garbage_msgpack_is_a_bad_request_that_says_why(raw: bytes, why: str) -> None:
    with pytest.raises(BadRequest, match="not valid MSGPACK") as e:
        decode(raw, 0)
    assert why in e.value.message
    assert e.value.message.split(": ", 1)[1].strip(), "nothing after the colon"


def test_garbage_json_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="not valid JSON"):
        decode(b"{nope", 1)
    with pytest.raises(BadRequest):
        decode(b"\xff\xfe", 1)


def test_headers_must_be_small_objects() -> None:
    assert check_headers(None) is None
    assert check_headers({"a": 1}) == {"a": 1}
    with pytest.raises(BadRequest, match="object"):
        check_headers(["a"])
    with pytest.raises(BadRequest, match="limit"):
        check_headers({"a": "x" * 70_000})


def test_split_sizes() -> None:
    assert list(split(b"")) == [b""]
    assert list(split(b"abc", 2)) == [b"ab", b"c"]
    raw = bytes(20 * 1024 * 1024)
    pieces = list(split(raw, 7_900_000))
    assert len(pieces) == 3 and b"".join(pieces) == raw


def test_reassembly_in_order() -> None:
    a = Assembler()
    raw = msgpack.packb(list(range(1000)))
    parts = list(split(raw, 100))
    out = None
    for seq, part in enumerate(parts):
        out = a.feed(
            "s",
            "id1",
            seq,
            seq == len(parts) - 1,
            0,
            part,
            {"h": 1} if seq == len(parts) - 1 else None,
        )
    assert out is not None and out.data == list(range(1000)) and out.headers == {"h": 1}
    assert len(a) == 0


def test_missing_middle_chunk_drops_the_message() -> None:
    a = Assembler()
    assert a.feed("s", "m", 0, False, 0, b"a") is None
    assert a.feed("s", "m", 2, True, 0, b"c") is None
    assert len(a) == 0  # dropped, not kept half-built
    assert a.feed("s", "m2", 1, True, 0, b"x") is None  # first chunk missing


def test_partial_messages_expire() -> None:
    a = Assembler(ttl=120)
    a.feed("s", "old", 0, False, 0, b"a", now=0.0)
    a.feed("s", "new", 0, False, 0, b"a", now=100.0)
    assert a.expire(now=121.0) == 1
    assert len(a) == 1
    assert a.feed("s", "old", 1, True, 0, b"b", now=121.0) is None


def test_partial_messages_expire_on_any_later_chunk() -> None:
    """A stale partial message goes when any chunk arrives, not only when another multi-chunk
    message starts: here only chunks of a message already in progress keep coming."""
    a = Assembler(ttl=120)
    a.feed("s", "stale", 0, False, 0, b"x" * 10, now=0.0)
    a.feed("s", "live", 0, False, 0, b"y", now=100.0)
    assert len(a) == 2 and a.held_bytes == 11
    a.feed("s", "live", 1, False, 0, b"y", now=121.0)
    assert len(a) == 1 and a.held_bytes == 2
    out = a.feed("s", "live", 2, True, 0, b"y", now=122.0)
    assert out is not None and out.raw == b"yyy"
    assert len(a) == 0 and a.held_bytes == 0


def test_partial_bytes_are_capped_by_dropping_the_oldest(caplog: pytest.LogCaptureFixture) -> None:
    a = Assembler(max_bytes=100)
    for i in range(5):  # 5 x 30 bytes of first chunks that never finish
        assert a.feed("s", f"m{i}", 0, False, 0, b"x" * 30, now=float(i)) is None
        assert a.held_bytes <= 100
    assert len(a) == 3 and a.held_bytes == 90
    assert "dropped the oldest partial message" in caplog.text
    # the oldest went: m0 and m1 cannot be finished any more, m4 can
    assert a.feed("s", "m0", 1, True, 0, b"z", now=5.0) is None
    assert a.feed("s", "m1", 1, True, 0, b"z", now=5.0) is None
    out = a.feed("s", "m4", 1, True, 0, b"z", now=5.0)
    assert out is not None and out.raw == b"x" * 30 + b"z"
    assert a.held_bytes == 60 and a.dropped == 2


def test_growing_message_keeps_room_for_itself() -> None:
    """Making room never drops the message the chunk belongs to, even when it is the oldest."""
    a = Assembler(max_bytes=100)
    a.feed("s", "big", 0, False, 0, b"a" * 40, now=0.0)
    a.feed("s", "other", 0, False, 0, b"b" * 40, now=1.0)
    assert a.feed("s", "big", 1, False, 0, b"a" * 40, now=2.0) is None  # 'other' makes room
    assert len(a) == 1 and a.held_bytes == 80
    out = a.feed("s", "big", 2, True, 0, b"a", now=3.0)
    assert out is not None and len(out.raw) == 81


def test_one_message_over_the_cap_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    a = Assembler(max_bytes=100)
    a.feed("s", "keep", 0, False, 0, b"k" * 10)
    a.feed("s", "huge", 0, False, 0, b"h" * 60)
    assert a.feed("s", "huge", 1, False, 0, b"h" * 60) is None
    assert "over 100 bytes before its last chunk" in caplog.text
    assert a.feed("s", "huge", 2, True, 0, b"h") is None  # gone, not half-kept
    assert len(a) == 1 and a.held_bytes == 10  # the other message is untouched


def test_production_partial_cap_fits_a_20_mb_message() -> None:
    a = Assembler()
    parts = list(split(bytes(20 * 1024 * 1024), 7_900_000))
    out = None
    for seq, part in enumerate(parts):
        out = a.feed("s", "m", seq, seq == len(parts) - 1, 0, part)
    assert out is not None and len(out.raw) == 20 * 1024 * 1024


def test_single_chunk_messages_expire_stale_partials_too() -> None:
    a = Assembler(ttl=120)
    a.feed("s", "stale", 0, False, 0, b"x", now=0.0)
    out = a.feed("s", "small", 0, True, 0, b"y", now=121.0)
    assert out is not None and out.raw == b"y"
    assert len(a) == 0 and a.held_bytes == 0
