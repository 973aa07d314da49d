"""Tests for cohub.conat.subjects.SubjectIndex: stored publish subjects found by a pattern
(the router's wait-for-interest waiters), checked against :func:`subjects.matches`."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cohub.conat.subjects import InvalidSubject, SubjectIndex, matches

_TOKENS = ["a", "b", "c", "foo*", "a>b"]


def found(index: SubjectIndex[int], pattern: str) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for subject, items in index.match(pattern):
        assert subject not in out, f"{subject!r} reported twice"
        assert items, f"{subject!r} reported with no items"
        out[subject] = set(items)
    return out


def test_literal_star_and_tail_patterns() -> None:
    index: SubjectIndex[int] = SubjectIndex()
    for i, subject in enumerate(["a.b", "a.c", "a.b.c", "a", "x.b"]):
        index.add(subject, i)
    assert found(index, "a.b") == {"a.b": {0}}
    assert found(index, "a.*") == {"a.b": {0}, "a.c": {1}}
    assert found(index, "*.b") == {"a.b": {0}, "x.b": {4}}
    assert found(index, "a.>") == {"a.b": {0}, "a.c": {1}, "a.b.c": {2}}  # not "a"
    assert found(index, ">") == {s: {i} for i, s in enumerate(["a.b", "a.c", "a.b.c", "a", "x.b"])}
    assert found(index, "a.b.c.d") == {}
    assert found(index, "a.*.*.>") == {}
    assert found(index, "b") == {}


def test_wildcard_like_literals_are_literals() -> None:
    index: SubjectIndex[int] = SubjectIndex()
    index.add("a.foo*", 1)
    index.add("a.x", 2)
    assert found(index, "a.foo*") == {"a.foo*": {1}}
    assert found(index, "a.*") == {"a.foo*": {1}, "a.x": {2}}


def test_add_discard_counts_and_prunes() -> None:
    index: SubjectIndex[int] = SubjectIndex()
    assert not index and len(index) == 0
    index.add("a.b.c", 1)
    index.add("a.b.c", 1)  # already there
    index.add("a.b.c", 2)
    index.add("a.b", 3)
    assert len(index) == 3 and index
    assert index.discard("a.b.c", 1)
    assert not index.discard("a.b.c", 1)
    assert not index.discard("a.b.x", 2)
    assert not index.discard("nowhere.at.all", 2)
    assert found(index, "a.>") == {"a.b.c": {2}, "a.b": {3}}
    assert index.discard("a.b.c", 2)
    assert index.discard("a.b", 3)
    assert len(index) == 0 and not index
    assert index._root.children == {}  # every node pruned


def test_invalid_input_is_refused() -> None:
    index: SubjectIndex[int] = SubjectIndex()
    with pytest.raises(InvalidSubject):
        index.add("a.*", 1)  # a pattern is no publish subject
    with pytest.raises(InvalidSubject):
        index.add("a..b", 1)
    with pytest.raises(InvalidSubject):
        index.match("a.>.b")
    assert len(index) == 0


def test_deep_patterns_do_not_recurse() -> None:
    depth = sys.getrecursionlimit() + 100
    index: SubjectIndex[int] = SubjectIndex()
    deep = ".".join(["t"] * depth)
    index.add(deep, 1)
    assert found(index, ".".join(["*"] * depth)) == {deep: {1}}
    assert found(index, "t.>") == {deep: {1}}
    assert index.discard(deep, 1)


_subject = st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=4).map(".".join)
_pattern = (
    st.lists(st.sampled_from([*_TOKENS, "*"]), min_size=1, max_size=4)
    .flatmap(lambda toks: st.sampled_from([toks, [*toks[:-1], ">"]]))
    .map(".".join)
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_subject, max_size=20), st.lists(_pattern, min_size=1, max_size=10))
def test_agrees_with_matches(stored: list[str], patterns: list[str]) -> None:
    index: SubjectIndex[int] = SubjectIndex()
    for i, subject in enumerate(stored):
        index.add(subject, i)
    for pattern in patterns:
        expected: dict[str, set[int]] = {}
        for i, subject in enumerate(stored):
            if matches(pattern, subject):
                expected.setdefault(subject, set()).add(i)
        assert found(index, pattern) == expected
    for i, subject in enumerate(stored):
        assert index.discard(subject, i)
    assert len(index) == 0 and index._root.children == {}
