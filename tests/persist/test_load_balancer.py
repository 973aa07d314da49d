"""The scope -> server assignment: Java's String.hashCode, then abs and modulo."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cohub.persist.load_balancer import java_string_hash, pick


def test_java_hash_known_values() -> None:
    assert java_string_hash("") == 0
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("polygenelubricants") == -(2**31)  # int32 wrap-around
    assert java_string_hash("hub") == 103669
    # outside the BMP: hashed over the two UTF-16 surrogates, 0xD83D and 0xDE00
    assert java_string_hash("\U0001f600") == 31 * 0xD83D + 0xDE00


@given(st.text())
def test_java_hash_is_int32(text: str) -> None:
    assert -(2**31) <= java_string_hash(text) < 2**31


def _reference(text: str) -> int:
    """A straight transcription of the Java definition, for comparison."""
    h = 0
    units = text.encode("utf-16-le")
    for i in range(0, len(units), 2):
        h = (h * 31 + int.from_bytes(units[i : i + 2], "little")) % 2**32
    return h - 2**32 if h >= 2**31 else h


@given(st.text(max_size=50))
def test_java_hash_matches_definition(text: str) -> None:
    assert java_string_hash(text) == _reference(text)


def test_pick_is_stable_and_spreads() -> None:
    ids = ["pod-0", "pod-1", "pod-2"]
    scopes = [f"account-{i:08d}-0000-4000-8000-000000000000" for i in range(300)]
    first = [pick(ids, s) for s in scopes]
    assert first == [pick(list(ids), s) for s in scopes]
    assert set(first) == set(ids)
    assert pick(["only"], "hub") == "only"
    assert pick(ids, "polygenelubricants") == ids[2**31 % 3]
