"""Conat subjects: validation, ``*``/``>`` matching, and the interest trie with its match cache.

A subject is a non-empty sequence of ``.``-separated tokens. Tokens are non-empty and contain no
whitespace or control characters; any other Unicode is allowed. In a subscription *pattern* a
token that is exactly ``*`` matches one token, and a token that is exactly ``>`` (only allowed
last) matches one or more tokens, so ``a.>`` matches ``a.b`` and ``a.b.c`` but not ``a``. Only a
whole token is a wildcard: ``foo*`` and ``a>b`` are ordinary literal tokens. A *publish* subject
contains no wildcard token at all.

:class:`Interest` maps pattern -> queue group -> set of members. It is a token trie in the
manner of nats-server's ``sublist.go``: each level keeps a dict of literal tokens and two separate
slots for the ``*`` and ``>`` children, so a literal can never be mistaken for a wildcard.

Match results are cached per subject. A result holds the live ``{queue: members}`` dicts of the
matching patterns, so adding or removing a member of a pattern that already exists changes no
cached result; the cache is cleared only when a pattern appears or disappears (never on a timer)
and is capped at ``cache_size`` entries, dropping the oldest half when full. ``generation``
increases on every change, so caches held elsewhere can notice staleness.

:class:`SubjectIndex` is the reverse: literal subjects -> items, looked up by a *pattern*. The
router keeps its ``wait-for-interest`` waiters there, so a new subscription finds exactly the
waiters it satisfies instead of waking all of them.

This module does no I/O.
"""

from __future__ import annotations

import re
from typing import Generic, TypeVar

__all__ = [
    "MAX_SUBJECT_LENGTH",
    "Interest",
    "InvalidSubject",
    "SubjectIndex",
    "is_valid_pattern",
    "is_valid_subject",
    "matches",
    "validate_pattern",
    "validate_subject",
]

MAX_SUBJECT_LENGTH = 4096
"""Longest subject or pattern accepted, in characters."""

T = TypeVar("T")

# ``\s`` on str patterns matches exactly the characters for which ``str.isspace()`` is true (the
# tests check every code point); the ranges add the remaining C0/C1 control characters.
_BAD_CHAR = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


class InvalidSubject(ValueError):
    """A subject or pattern breaks the rules above; the message says which rule."""


def _show(s: str) -> str:
    """repr() of a subject for an error message, shortened if it is long."""
    return repr(s) if len(s) <= 80 else repr(s[:77]) + "..."


def _check(s: object, kind: str, wildcards: bool) -> None:
    if not isinstance(s, str):
        raise InvalidSubject(f"{kind} must be a str, not {type(s).__name__}")
    if not s:
        raise InvalidSubject(f"{kind} is empty")
    if len(s) > MAX_SUBJECT_LENGTH:
        raise InvalidSubject(
            f"{kind} {_show(s)} is too long ({len(s)} characters, limit {MAX_SUBJECT_LENGTH})"
        )
    bad = _BAD_CHAR.search(s)
    if bad is not None:
        raise InvalidSubject(
            f"{kind} {_show(s)} contains whitespace or a control character "
            f"({bad.group()!r} at index {bad.start()})"
        )
    if s[0] == ".":
        raise InvalidSubject(f"{kind} {_show(s)} starts with '.'")
    if s[-1] == ".":
        raise InvalidSubject(f"{kind} {_show(s)} ends with '.'")
    tokens = s.split(".")
    if "" in tokens:
        raise InvalidSubject(f"{kind} {_show(s)} has an empty token ('..')")
    if wildcards:
        if ">" in tokens and tokens.index(">") != len(tokens) - 1:
            raise InvalidSubject(f"{kind} {_show(s)}: '>' is only allowed as the last token")
    else:
        if "*" in tokens:
            raise InvalidSubject(f"{kind} {_show(s)} contains the wildcard token '*'")
        if ">" in tokens:
            raise InvalidSubject(f"{kind} {_show(s)} contains the wildcard token '>'")


def validate_subject(subject: str) -> None:
    """Raise :class:`InvalidSubject` unless ``subject`` is a valid publish subject.

    A publish subject has no ``*`` or ``>`` token (tokens such as ``foo*`` are literals).
    """
    _check(subject, "subject", wildcards=False)


def validate_pattern(pattern: str) -> None:
    """Raise :class:`InvalidSubject` unless ``pattern`` is a valid subscription pattern.

    ``*`` tokens may appear anywhere; a ``>`` token only last.
    """
    _check(pattern, "pattern", wildcards=True)


def is_valid_subject(s: object) -> bool:
    """True if ``s`` is a valid publish subject (never raises)."""
    try:
        _check(s, "subject", wildcards=False)
    except InvalidSubject:
        return False
    return True


def is_valid_pattern(s: object) -> bool:
    """True if ``s`` is a valid subscription pattern (never raises)."""
    try:
        _check(s, "pattern", wildcards=True)
    except InvalidSubject:
        return False
    return True


def _tokens_match(pattern: list[str], subject: list[str]) -> bool:
    n = len(subject)
    for i, tok in enumerate(pattern):
        if tok == ">":
            return n > i
        if i >= n or (tok != "*" and tok != subject[i]):
            return False
    return len(pattern) == n


def matches(pattern: str, subject: str) -> bool:
    """True if the publish ``subject`` matches the subscription ``pattern``.

    Both are validated first (:class:`InvalidSubject` if either is invalid).
    """
    validate_pattern(pattern)
    validate_subject(subject)
    return _tokens_match(pattern.split("."), subject.split("."))


_Entry = tuple[str, dict[str, set[T]]]


class _Node(Generic[T]):
    """One trie level: literal children by token, plus the ``*`` and ``>`` children in slots.

    ``entry`` is ``(pattern, {queue: members})`` when a pattern ends here, else None; it is the
    very tuple that :meth:`Interest.match` hands out, so matching allocates nothing per pattern.
    """

    __slots__ = ("entry", "gt", "literals", "star")

    def __init__(self) -> None:
        self.literals: dict[str, _Node[T]] = {}
        self.star: _Node[T] | None = None
        self.gt: _Node[T] | None = None
        self.entry: _Entry[T] | None = None

    def is_empty(self) -> bool:
        return self.entry is None and not self.literals and self.star is None and self.gt is None


def _collect(root: _Node[T], tokens: list[str], out: list[_Entry[T]]) -> None:
    """Append to ``out`` the entry of every pattern in the trie at ``root`` matching ``tokens``.

    Iterative, so a pattern of thousands of ``*`` tokens cannot exhaust the Python stack; the
    pending-branch stack is only allocated when a level has both a ``*`` and a literal child.
    """
    n = len(tokens)
    stack: list[tuple[_Node[T], int]] | None = None
    node = root
    i = 0
    while True:
        if i == n:
            if node.entry is not None:
                out.append(node.entry)
        else:
            gt = node.gt
            if gt is not None and gt.entry is not None:
                out.append(gt.entry)
            star = node.star
            nxt = node.literals.get(tokens[i])
            if star is not None:
                if nxt is None:
                    nxt = star
                else:
                    if stack is None:
                        stack = []
                    stack.append((star, i + 1))
            if nxt is not None:
                node = nxt
                i += 1
                continue
        if not stack:
            return
        node, i = stack.pop()


class Interest(Generic[T]):
    """The interest table: pattern -> queue -> set of members (``T`` hashable).

    :meth:`match` returns, for each pattern matching a subject, ``(pattern, {queue: members})``.
    The list and the dicts and sets in it are live internal state shared with the cache: callers
    must not mutate them, and should copy what they iterate across an ``await``.
    """

    __slots__ = ("_cache", "_cache_size", "_entries", "_patterns", "_root", "generation")

    def __init__(self, cache_size: int = 10_000, use_cache: bool = True) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, not {cache_size}")
        self._root: _Node[T] = _Node()
        self._cache: dict[str, list[_Entry[T]]] = {}
        # 0 means "no cache"; the hot path then tests one int.
        self._cache_size = cache_size if use_cache else 0
        self._patterns = 0
        self._entries = 0
        self.generation = 0
        """Incremented by every :meth:`add` and :meth:`remove` that changes the table."""

    def add(self, pattern: str, queue: str, member: T) -> None:
        """Add ``member`` to ``queue`` of ``pattern`` (validated; :class:`InvalidSubject`)."""
        validate_pattern(pattern)
        node = self._root
        for tok in pattern.split("."):
            if tok == "*":
                nxt = node.star
                if nxt is None:
                    nxt = node.star = _Node()
            elif tok == ">":
                nxt = node.gt
                if nxt is None:
                    nxt = node.gt = _Node()
            else:
                nxt = node.literals.get(tok)
                if nxt is None:
                    nxt = node.literals[tok] = _Node()
            node = nxt
        entry = node.entry
        if entry is None:
            entry = node.entry = (pattern, {})
            self._patterns += 1
            # A new pattern can change any cached result. Existing patterns need no
            # invalidation: cached results hold their live queue dicts.
            self._cache.clear()
        members = entry[1].get(queue)
        if members is None:
            members = entry[1][queue] = set()
        if member in members:
            return
        members.add(member)
        self._entries += 1
        self.generation += 1

    def remove(self, pattern: str, queue: str, member: T) -> bool:
        """Remove ``member`` from ``queue`` of ``pattern``; False if it was not there.

        Empty queues, patterns and trie nodes are pruned.
        """
        if not is_valid_pattern(pattern):
            return False
        path: list[tuple[_Node[T], str]] = []
        node = self._root
        for tok in pattern.split("."):
            if tok == "*":
                nxt = node.star
            elif tok == ">":
                nxt = node.gt
            else:
                nxt = node.literals.get(tok)
            if nxt is None:
                return False
            path.append((node, tok))
            node = nxt
        entry = node.entry
        if entry is None:
            return False
        queues = entry[1]
        members = queues.get(queue)
        if members is None or member not in members:
            return False
        members.remove(member)
        self._entries -= 1
        self.generation += 1
        if members:
            return True
        del queues[queue]
        if queues:
            return True
        node.entry = None
        self._patterns -= 1
        self._cache.clear()
        for parent, tok in reversed(path):
            if not node.is_empty():
                break
            if tok == "*":
                parent.star = None
            elif tok == ">":
                parent.gt = None
            else:
                del parent.literals[tok]
            node = parent
        return True

    def match(self, subject: str) -> list[tuple[str, dict[str, set[T]]]]:
        """Every pattern matching the publish ``subject``, with its queues and members.

        The subject is validated when it is not served from the cache
        (:class:`InvalidSubject`).
        """
        cache = self._cache
        hit = cache.get(subject)
        if hit is not None:
            return hit
        validate_subject(subject)
        out: list[_Entry[T]] = []
        if self._patterns:
            _collect(self._root, subject.split("."), out)
        size = self._cache_size
        if size:
            if len(cache) >= size:
                self._evict()
            cache[subject] = out
        return out

    def _evict(self) -> None:
        """Drop the oldest half of the cache (insertion order), at least one entry."""
        cache = self._cache
        drop = max(1, len(cache) // 2)
        it = iter(cache)
        for key in [next(it) for _ in range(drop)]:
            del cache[key]

    def has_interest(self, subject: str) -> bool:
        """True if at least one pattern matches ``subject``."""
        return bool(self.match(subject))

    def patterns(self) -> int:
        """Number of distinct patterns held."""
        return self._patterns

    def __len__(self) -> int:
        """Number of (pattern, queue, member) entries."""
        return self._entries


class _SubjectNode(Generic[T]):
    """One level of a :class:`SubjectIndex`: children by literal token, and ``(subject, items)``
    when a subject ends here."""

    __slots__ = ("children", "entry")

    def __init__(self) -> None:
        self.children: dict[str, _SubjectNode[T]] = {}
        self.entry: tuple[str, set[T]] | None = None


class SubjectIndex(Generic[T]):
    """Publish subjects -> sets of items (``T`` hashable), found by the patterns matching them.

    :meth:`match` walks a token trie of the stored subjects along the pattern: a literal token
    follows one child, ``*`` every child, and ``>`` takes every subject below. So its cost is
    the part of the trie the pattern covers, never the whole index for a literal prefix.
    """

    __slots__ = ("_root", "_size")

    def __init__(self) -> None:
        self._root: _SubjectNode[T] = _SubjectNode()
        self._size = 0

    def add(self, subject: str, item: T) -> None:
        """Add ``item`` under the publish ``subject`` (validated; :class:`InvalidSubject`)."""
        validate_subject(subject)
        node = self._root
        for tok in subject.split("."):
            nxt = node.children.get(tok)
            if nxt is None:
                nxt = node.children[tok] = _SubjectNode()
            node = nxt
        if node.entry is None:
            node.entry = (subject, set())
        items = node.entry[1]
        if item not in items:
            items.add(item)
            self._size += 1

    def discard(self, subject: str, item: T) -> bool:
        """Remove ``item`` from ``subject``; False if it was not there. Empty nodes are pruned."""
        path: list[tuple[_SubjectNode[T], str]] = []
        node = self._root
        for tok in subject.split("."):
            nxt = node.children.get(tok)
            if nxt is None:
                return False
            path.append((node, tok))
            node = nxt
        entry = node.entry
        if entry is None or item not in entry[1]:
            return False
        entry[1].remove(item)
        self._size -= 1
        if entry[1]:
            return True
        node.entry = None
        for parent, tok in reversed(path):
            if node.entry is not None or node.children:
                break
            del parent.children[tok]
            node = parent
        return True

    def match(self, pattern: str) -> list[tuple[str, set[T]]]:
        """``(subject, items)`` for every stored subject matching ``pattern`` (validated;
        :class:`InvalidSubject`). The sets are live: copy them before changing the index."""
        validate_pattern(pattern)
        out: list[tuple[str, set[T]]] = []
        if not self._size:
            return out
        tokens = pattern.split(".")
        n = len(tokens)
        stack: list[tuple[_SubjectNode[T], int]] = [(self._root, 0)]
        while stack:  # iterative: a pattern of thousands of tokens must not exhaust the stack
            node, i = stack.pop()
            if i == n:
                if node.entry is not None:
                    out.append(node.entry)
                continue
            tok = tokens[i]
            if tok == ">":
                below = list(node.children.values())
                while below:
                    child = below.pop()
                    if child.entry is not None:
                        out.append(child.entry)
                    below.extend(child.children.values())
            elif tok == "*":
                stack.extend((child, i + 1) for child in node.children.values())
            else:
                child = node.children.get(tok)
                if child is not None:
                    stack.append((child, i + 1))
        return out

    def __len__(self) -> int:
        """Number of (subject, item) entries."""
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0
