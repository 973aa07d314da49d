"""Tests for cohub.conat.subjects: validation, matching, the interest trie and its cache.

Every test runs twice, with the match cache on and off (``use_cache``), in the manner of
nats-server's ``sublist_test.go``.
"""

from __future__ import annotations

import random
import sys
import unicodedata
from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cohub.conat import subjects
from cohub.conat.subjects import (
    MAX_SUBJECT_LENGTH,
    Interest,
    InvalidSubject,
    is_valid_pattern,
    is_valid_subject,
    matches,
    validate_pattern,
    validate_subject,
)

pytestmark = pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "nocache"])

Snapshot = dict[str, dict[str, frozenset[object]]]


def snapshot(result: Iterable[tuple[str, dict[str, set[object]]]]) -> Snapshot:
    """A match result as comparable plain data; fails on a pattern reported twice."""
    out: Snapshot = {}
    for pattern, queues in result:
        assert pattern not in out, f"pattern {pattern!r} reported twice"
        assert queues, f"pattern {pattern!r} reported with no queues"
        for queue, members in queues.items():
            assert members, f"pattern {pattern!r} queue {queue!r} reported with no members"
        out[pattern] = {q: frozenset(m) for q, m in queues.items()}
    return out


def make(use_cache: bool, cache_size: int = 10_000) -> Interest[object]:
    return Interest(cache_size=cache_size, use_cache=use_cache)


def trie_nodes(interest: Interest[object]) -> int:
    """Number of trie nodes below the root (white-box: proves pruning)."""
    count = 0
    stack = [interest._root]
    while stack:
        node = stack.pop()
        children = list(node.literals.values())
        children += [c for c in (node.star, node.gt) if c is not None]
        count += len(children)
        stack.extend(children)
    return count


def cache_len(interest: Interest[object]) -> int:
    return len(interest._cache)


# --------------------------------------------------------------------------------------------
# Validation tables

VALID_SUBJECTS = [
    "a",
    "a.b",
    "a.b.c.d.e.f.g",
    "foo*",  # a literal, not a wildcard
    "*foo",
    "a.foo*.b",
    "a>b",
    ">a",
    "a>",
    "a.b>",
    "a.>b",
    "**",
    ">>",
    "a.**.b",
    "hub.account.3f2a.api",
    "project.P.conat",
    "_INBOX.abc123.xyz",
    "$SYS.req",
    "a-b_c:d/e=f+g@h#i%j",
    "héllo.wörld",
    "日本.語",
    "π.λ.Ω",
    "🚀.rocket",
    "ok\u200b.zero-width-space-is-not-whitespace",
    "x" * MAX_SUBJECT_LENGTH,
    ".".join(["a"] * (MAX_SUBJECT_LENGTH // 2)),  # 2048 tokens, 4095 characters
    "é" * MAX_SUBJECT_LENGTH,  # length counts characters, not bytes
]

WILDCARD_ONLY_PATTERNS = [
    "*",
    ">",
    "a.*",
    "*.a",
    "a.*.b",
    "*.*",
    "*.*.*",
    "a.>",
    "*.>",
    "a.*.>",
    "foo*.>",
    "a>b.*",
    "日本.*",
    ".".join(["*"] * (MAX_SUBJECT_LENGTH // 2)),
    ".".join(["*"] * (MAX_SUBJECT_LENGTH // 2 - 1) + [">"]),
]

# (input, fragment of the error message) for rules shared by subjects and patterns.
INVALID_BOTH = [
    ("", "is empty"),
    (".", "starts with '.'"),
    (".a", "starts with '.'"),
    ("..", "starts with '.'"),
    ("a.", "ends with '.'"),
    ("a.b.", "ends with '.'"),
    ("a..b", "empty token"),
    ("a...b", "empty token"),
    ("a b", "whitespace"),
    (" a", "whitespace"),
    ("a ", "whitespace"),
    ("a.b c", "whitespace"),
    ("a\tb", "whitespace"),
    ("a\nb", "whitespace"),
    ("a\n", "whitespace"),
    ("a\rb", "whitespace"),
    ("a\x0bb", "whitespace"),
    ("a\x0cb", "whitespace"),
    ("a\x00b", "control character"),
    ("a\x01", "control character"),
    ("a\x1bb", "control character"),
    ("a\x7fb", "control character"),
    ("a\x85b", "whitespace"),
    ("a\x9fb", "control character"),
    ("a\u00a0b", "whitespace"),  # no-break space
    ("a\u1680b", "whitespace"),
    ("a\u2003b", "whitespace"),  # em space
    ("a\u2028b", "whitespace"),  # line separator
    ("a\u2029b", "whitespace"),
    ("a\u3000b", "whitespace"),  # ideographic space
    ("日本\u3000語", "whitespace"),
    ("x" * (MAX_SUBJECT_LENGTH + 1), "too long"),
    ("é" * (MAX_SUBJECT_LENGTH + 1), "too long"),
    (".".join(["a"] * (MAX_SUBJECT_LENGTH // 2 + 1)), "too long"),
]

INVALID_SUBJECT_ONLY = [
    ("*", "wildcard token '*'"),
    ("a.*", "wildcard token '*'"),
    ("*.a", "wildcard token '*'"),
    ("a.*.b", "wildcard token '*'"),
    (">", "wildcard token '>'"),
    ("a.>", "wildcard token '>'"),
    ("*.>", "wildcard token '*'"),
    ("a.>.b", "wildcard token '>'"),  # a '>' token anywhere is a wildcard, never a literal
]

INVALID_PATTERN_ONLY = [
    (">.a", "only allowed as the last token"),
    ("a.>.b", "only allowed as the last token"),
    (">.>", "only allowed as the last token"),
    (">.*", "only allowed as the last token"),
    ("a.>.>", "only allowed as the last token"),
]

NOT_STR = [None, 1, 1.5, b"a.b", ["a"], ("a",), {"a": 1}, object()]


@pytest.mark.parametrize("subject", VALID_SUBJECTS)
def test_valid_subject(use_cache: bool, subject: str) -> None:
    validate_subject(subject)
    assert is_valid_subject(subject)
    # Every valid subject is also a valid (literal) pattern, and matches itself.
    validate_pattern(subject)
    assert is_valid_pattern(subject)
    assert matches(subject, subject)
    interest = make(use_cache)
    interest.add(subject, "q", 1)
    assert snapshot(interest.match(subject)) == {subject: {"q": frozenset({1})}}


@pytest.mark.parametrize("pattern", WILDCARD_ONLY_PATTERNS)
def test_valid_wildcard_pattern(use_cache: bool, pattern: str) -> None:
    validate_pattern(pattern)
    assert is_valid_pattern(pattern)
    assert not is_valid_subject(pattern)
    with pytest.raises(InvalidSubject):
        validate_subject(pattern)
    interest = make(use_cache)
    interest.add(pattern, "q", 1)
    assert interest.patterns() == 1


@pytest.mark.parametrize(("bad", "why"), INVALID_BOTH)
def test_invalid_subject_and_pattern(use_cache: bool, bad: str, why: str) -> None:
    with pytest.raises(InvalidSubject, match=why):
        validate_subject(bad)
    with pytest.raises(InvalidSubject, match=why):
        validate_pattern(bad)
    assert not is_valid_subject(bad)
    assert not is_valid_pattern(bad)
    interest = make(use_cache)
    with pytest.raises(InvalidSubject, match=why):
        interest.add(bad, "q", 1)
    with pytest.raises(InvalidSubject, match=why):
        interest.match(bad)
    assert not interest.remove(bad, "q", 1)
    assert len(interest) == 0 and interest.patterns() == 0 and interest.generation == 0
    assert cache_len(interest) == 0


@pytest.mark.parametrize(("bad", "why"), INVALID_SUBJECT_ONLY)
def test_invalid_publish_subject(use_cache: bool, bad: str, why: str) -> None:
    with pytest.raises(InvalidSubject, match=why):
        validate_subject(bad)
    assert not is_valid_subject(bad)
    interest = make(use_cache)
    interest.add(">", "q", 1)
    with pytest.raises(InvalidSubject, match=why):
        interest.match(bad)
    with pytest.raises(InvalidSubject, match=why):
        interest.has_interest(bad)
    assert cache_len(interest) == 0


@pytest.mark.parametrize(("bad", "why"), INVALID_PATTERN_ONLY)
def test_invalid_pattern(use_cache: bool, bad: str, why: str) -> None:
    with pytest.raises(InvalidSubject, match=why):
        validate_pattern(bad)
    assert not is_valid_pattern(bad)
    assert not is_valid_subject(bad)
    interest = make(use_cache)
    with pytest.raises(InvalidSubject, match=why):
        interest.add(bad, "q", 1)
    assert not interest.remove(bad, "q", 1)
    assert len(interest) == 0 and interest.patterns() == 0 and trie_nodes(interest) == 0


@pytest.mark.parametrize("value", NOT_STR, ids=lambda v: type(v).__name__)
def test_not_a_string(use_cache: bool, value: object) -> None:
    assert not is_valid_subject(value)
    assert not is_valid_pattern(value)
    with pytest.raises(InvalidSubject, match="must be a str"):
        validate_subject(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidSubject, match="must be a str"):
        validate_pattern(value)  # type: ignore[arg-type]
    interest = make(use_cache)
    with pytest.raises(InvalidSubject, match="must be a str"):
        interest.add(value, "q", 1)  # type: ignore[arg-type]
    assert not interest.remove(value, "q", 1)  # type: ignore[arg-type]


def test_invalid_subject_is_a_value_error(use_cache: bool) -> None:
    assert issubclass(InvalidSubject, ValueError)
    with pytest.raises(ValueError):
        make(use_cache).add("a..b", "q", 1)


def test_error_message_names_input_and_is_bounded(use_cache: bool) -> None:
    with pytest.raises(InvalidSubject) as info:
        validate_subject("a.b..c")
    assert "'a.b..c'" in str(info.value)
    with pytest.raises(InvalidSubject) as info:
        validate_pattern("y" * 5000)
    message = str(info.value)
    assert "5000" in message and str(MAX_SUBJECT_LENGTH) in message
    assert len(message) < 300
    with pytest.raises(InvalidSubject) as info:
        validate_subject("a\tb")
    assert "'\\t'" in str(info.value) and "index 1" in str(info.value)


def test_whitespace_and_control_set_is_exactly_isspace_plus_cc(use_cache: bool) -> None:
    """The module's character class agrees with str.isspace() and category Cc everywhere."""
    everything = "".join(map(chr, range(sys.maxunicode + 1)))
    flagged = {m.start() for m in subjects._BAD_CHAR.finditer(everything)}
    expected = {
        cp for cp, ch in enumerate(everything) if ch.isspace() or unicodedata.category(ch) == "Cc"
    }
    assert flagged == expected
    for cp in sorted(expected):
        token = "x" + chr(cp) + "y"
        assert not is_valid_subject(token), hex(cp)
        assert not is_valid_pattern("a." + token + ".>"), hex(cp)


def test_unicode_letters_symbols_and_format_chars_allowed(use_cache: bool) -> None:
    interest = make(use_cache)
    rng = random.Random(7)
    allowed = [
        chr(cp)
        for cp in range(0x80, 0x3000)
        if not chr(cp).isspace() and unicodedata.category(chr(cp)) not in ("Cc", "Cs")
    ]
    for _ in range(200):
        token = "".join(rng.choice(allowed) for _ in range(rng.randint(1, 5)))
        if token in ("*", ">"):
            continue
        subject = f"u.{token}"
        validate_subject(subject)
        interest.add(subject, "", token)
        assert token in interest.match(subject)[0][1][""]


def test_length_limit_is_exact(use_cache: bool) -> None:
    at_limit = "a" * (MAX_SUBJECT_LENGTH - 2) + ".b"
    over = "a" * (MAX_SUBJECT_LENGTH - 1) + ".b"
    assert MAX_SUBJECT_LENGTH == 4096
    assert is_valid_subject(at_limit) and is_valid_pattern(at_limit)
    assert not is_valid_subject(over) and not is_valid_pattern(over)
    assert is_valid_pattern("a" * (MAX_SUBJECT_LENGTH - 2) + ".>")
    assert not is_valid_pattern("a" * (MAX_SUBJECT_LENGTH - 1) + ".>")
    interest = make(use_cache)
    interest.add(at_limit, "q", 1)
    assert interest.has_interest(at_limit)
    with pytest.raises(InvalidSubject, match="too long"):
        interest.match(over)


# --------------------------------------------------------------------------------------------
# Matching tables

MATCH_TABLE = [
    # literals
    ("a", "a", True),
    ("a", "b", False),
    ("a", "a.b", False),
    ("a.b", "a", False),
    ("a.b", "a.b", True),
    ("a.b", "a.bc", False),
    ("ab", "a", False),
    ("a", "ab", False),
    ("a.b.c", "a.b.c", True),
    ("a.b.c", "a.b.d", False),
    ("A", "a", False),  # case-sensitive
    # '>' needs one or more tokens
    ("a.>", "a", False),
    ("a.>", "a.b", True),
    ("a.>", "a.b.c", True),
    ("a.>", "a.b.c.d.e.f", True),
    ("a.>", "b.c", False),
    ("a.>", "ab.c", False),
    ("a.b.>", "a.b", False),
    ("a.b.>", "a.b.c", True),
    ("a.b.>", "a.c.d", False),
    (">", "a", True),
    (">", "a.b", True),
    (">", "a.b.c.d", True),
    (">", "foo*", True),
    # '*' is exactly one token
    ("*", "a", True),
    ("*", "a.b", False),
    ("a.*", "a", False),
    ("a.*", "a.b", True),
    ("a.*", "a.b.c", False),
    ("*.b", "a.b", True),
    ("*.b", "a.c", False),
    ("*.b", "b", False),
    ("*.*", "a", False),
    ("*.*", "a.b", True),
    ("*.*", "a.b.c", False),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a.b.d", False),
    ("a.*.c", "a.c", False),
    ("*.*.*", "x.y.z", True),
    ("*.>", "a", False),
    ("*.>", "a.b", True),
    ("*.>", "a.b.c", True),
    ("a.*.>", "a.b", False),
    ("a.*.>", "a.b.c", True),
    ("*.b.>", "a.b.c", True),
    ("*.b.>", "a.c.c", False),
    # wildcard characters inside a token are literals
    ("foo*", "foo*", True),
    ("foo*", "foo", False),
    ("foo*", "foobar", False),
    ("foo*", "foo*x", False),
    ("*foo", "*foo", True),
    ("*foo", "xfoo", False),
    ("foo*.>", "foo*.a", True),
    ("foo*.>", "foo.a", False),
    ("a>b", "a>b", True),
    ("a>b", "a", False),
    ("a>b", "a.b", False),
    ("a.b>", "a.b>", True),
    ("a.b>", "a.bc", False),
    ("a.b>", "a.b.c", False),
    (">a", ">a", True),
    (">a", "a", False),
    ("**", "**", True),
    ("**", "a", False),
    ("a.*", "a.foo*", True),
    ("a.*", "a.>x", True),
    ("*", "foo*", True),
    ("a.>", "a.foo*.b>", True),
    # unicode
    ("日本.*", "日本.語", True),
    ("日本.*", "日本", False),
    ("é.>", "é.e", True),
    ("é.>", "e.e", False),
    ("🚀.*", "🚀.x", True),
]


@pytest.mark.parametrize(("pattern", "subject", "expected"), MATCH_TABLE)
def test_matches_table(use_cache: bool, pattern: str, subject: str, expected: bool) -> None:
    assert matches(pattern, subject) is expected
    interest = make(use_cache)
    interest.add(pattern, "q", "m")
    # noise that must never match these subjects
    interest.add("zzz.>", "q", "noise")
    interest.add("zzz.*", "q", "noise")
    want = {pattern: {"q": frozenset({"m"})}} if expected else {}
    for _ in range(3):  # first a miss, then (with the cache) hits
        assert snapshot(interest.match(subject)) == want
        assert interest.has_interest(subject) is expected


def test_matches_validates_its_arguments(use_cache: bool) -> None:
    with pytest.raises(InvalidSubject, match="pattern"):
        matches("a.>.b", "a.b.b")
    with pytest.raises(InvalidSubject, match="pattern"):
        matches("a..b", "a.b")
    with pytest.raises(InvalidSubject, match="subject"):
        matches("a.*", "a.*")
    with pytest.raises(InvalidSubject, match="subject"):
        matches(">", "a.>")
    with pytest.raises(InvalidSubject, match="subject"):
        matches(">", "a b")
    with pytest.raises(InvalidSubject, match="subject"):
        matches(">", "")


def test_all_matching_patterns_reported(use_cache: bool) -> None:
    interest = make(use_cache)
    patterns = ["a.b.c", "a.b.*", "a.*.c", "*.b.c", "a.*.*", "*.*.*", "a.>", "a.b.>", "*.>", ">"]
    misses = ["a.b", "a.b.c.d.*", "b.*.c", "a.c.>", "a.b.c.>", "a.b.d"]
    for i, p in enumerate(patterns + misses):
        interest.add(p, "q", i)
    assert interest.patterns() == len(patterns) + len(misses)
    got = snapshot(interest.match("a.b.c"))
    assert set(got) == set(patterns)
    assert {p: next(iter(got[p]["q"])) for p in got} == {p: i for i, p in enumerate(patterns)}


def test_literal_and_wildcard_tokens_never_confused(use_cache: bool) -> None:
    interest = make(use_cache)
    interest.add("a.foo*", "q", "literal")
    interest.add("a.*", "q", "star")
    interest.add("a.>", "q", "gt")
    interest.add("a.b>", "q", "literal-gt")
    # The wildcards live in their own slots, never as dictionary keys.
    a = interest._root.literals["a"]
    assert set(a.literals) == {"foo*", "b>"}
    assert a.star is not None and a.gt is not None
    assert snapshot(interest.match("a.foo")) == {
        "a.*": {"q": frozenset({"star"})},
        "a.>": {"q": frozenset({"gt"})},
    }
    assert set(snapshot(interest.match("a.foo*"))) == {"a.foo*", "a.*", "a.>"}
    assert set(snapshot(interest.match("a.b>"))) == {"a.b>", "a.*", "a.>"}
    assert set(snapshot(interest.match("a.b"))) == {"a.*", "a.>"}
    # Removing the wildcard leaves the literal alone, and vice versa.
    assert interest.remove("a.*", "q", "star")
    assert a.star is None
    assert set(snapshot(interest.match("a.foo*"))) == {"a.foo*", "a.>"}
    assert not interest.remove("a.*", "q", "literal")
    assert interest.remove("a.foo*", "q", "literal")
    assert set(snapshot(interest.match("a.foo*"))) == {"a.>"}
    assert interest.remove("a.>", "q", "gt")
    assert a.gt is None
    assert snapshot(interest.match("a.foo*")) == {}
    assert set(a.literals) == {"b>"}


def test_star_and_gt_at_root(use_cache: bool) -> None:
    interest = make(use_cache)
    interest.add("*", "q", 1)
    interest.add(">", "q", 2)
    root = interest._root
    assert not root.literals and root.star is not None and root.gt is not None
    assert snapshot(interest.match("x")) == {"*": {"q": frozenset({1})}, ">": {"q": frozenset({2})}}
    assert snapshot(interest.match("x.y")) == {">": {"q": frozenset({2})}}


def test_tap_on_gt_receives_everything(use_cache: bool) -> None:
    interest = make(use_cache)
    interest.add(">", "tap", "admin")
    for subject in ["a", "a.b", "hub.account.A.api", "_INBOX.x.y.z", "foo*", "日本"]:
        assert snapshot(interest.match(subject)) == {">": {"tap": frozenset({"admin"})}}


def test_deep_subjects_do_not_exhaust_the_stack(use_cache: bool) -> None:
    n = MAX_SUBJECT_LENGTH // 2  # 2048 tokens
    subject = ".".join(["a"] * n)
    stars = ".".join(["*"] * n)
    mixed = ".".join(["a", "*"] * (n // 2))
    star_gt = ".".join(["*"] * (n - 1) + [">"])
    interest = make(use_cache)
    for p in (subject, stars, mixed, star_gt, "a.>", "*.>"):
        interest.add(p, "q", p)
    got = snapshot(interest.match(subject))
    assert set(got) == {subject, stars, mixed, star_gt, "a.>", "*.>"}
    assert snapshot(interest.match(".".join(["a"] * (n - 1)))).keys() == {"a.>", "*.>"}
    assert interest.remove(stars, "q", stars)
    assert interest.remove(star_gt, "q", star_gt)
    assert set(snapshot(interest.match(subject))) == {subject, mixed, "a.>", "*.>"}


def test_branching_wildcards_visit_every_branch(use_cache: bool) -> None:
    """Every level has both a literal and a '*' child: 2**k candidate paths."""
    k = 8
    interest = make(use_cache)
    expected = set()
    for bits in range(2**k):
        p = ".".join("*" if bits >> j & 1 else "t" for j in range(k))
        interest.add(p, "q", bits)
        expected.add(p)
    subject = ".".join(["t"] * k)
    assert set(snapshot(interest.match(subject))) == expected
    assert snapshot(interest.match(".".join(["u"] * k))) == {
        ".".join(["*"] * k): {"q": frozenset({2**k - 1})}
    }


# --------------------------------------------------------------------------------------------
# Queue groups and members


def test_same_pattern_two_queues(use_cache: bool) -> None:
    interest = make(use_cache)
    interest.add("foo", "q", "A")
    interest.add("foo", "q", "B")
    interest.add("foo", "rnd-1", "C")
    assert snapshot(interest.match("foo")) == {
        "foo": {"q": frozenset({"A", "B"}), "rnd-1": frozenset({"C"})}
    }
    assert len(interest) == 3
    assert interest.patterns() == 1


def test_same_queue_many_members(use_cache: bool) -> None:
    interest = make(use_cache)
    for i in range(50):
        interest.add("svc.api", "0", ("sock", i))
    [(pattern, queues)] = interest.match("svc.api")
    assert pattern == "svc.api"
    assert queues == {"0": {("sock", i) for i in range(50)}}
    assert len(interest) == 50


def test_member_on_two_patterns_reported_per_pattern(use_cache: bool) -> None:
    interest = make(use_cache)
    interest.add("a.*", "q1", ("s1", "a.*"))
    interest.add("a.b", "q2", ("s1", "a.b"))
    assert snapshot(interest.match("a.b")) == {
        "a.*": {"q1": frozenset({("s1", "a.*")})},
        "a.b": {"q2": frozenset({("s1", "a.b")})},
    }


def test_same_member_in_two_queues_of_one_pattern(use_cache: bool) -> None:
    interest = make(use_cache)
    interest.add("a", "q1", "m")
    interest.add("a", "q2", "m")
    assert len(interest) == 2
    assert interest.remove("a", "q1", "m")
    assert snapshot(interest.match("a")) == {"a": {"q2": frozenset({"m"})}}


def test_empty_queue_name_is_a_queue_like_any_other(use_cache: bool) -> None:
    interest = make(use_cache)
    interest.add("a", "", 1)
    interest.add("a", "0", 2)
    assert snapshot(interest.match("a")) == {"a": {"": frozenset({1}), "0": frozenset({2})}}


def test_duplicate_add_is_idempotent(use_cache: bool) -> None:
    interest = make(use_cache)
    interest.add("a.b", "q", 1)
    gen = interest.generation
    interest.add("a.b", "q", 1)
    assert len(interest) == 1
    assert interest.patterns() == 1
    assert interest.generation == gen
    assert interest.remove("a.b", "q", 1)
    assert not interest.remove("a.b", "q", 1)
    assert len(interest) == 0


def test_empty_interest(use_cache: bool) -> None:
    interest = make(use_cache)
    assert interest.match("a.b") == []
    assert not interest.has_interest("a")
    assert len(interest) == 0
    assert interest.patterns() == 0
    assert interest.generation == 0


# --------------------------------------------------------------------------------------------
# Remove and prune


def test_remove_absent_returns_false(use_cache: bool) -> None:
    interest = make(use_cache)
    assert not interest.remove("a", "q", 1)
    interest.add("a.b.c", "q", 1)
    gen = interest.generation
    assert not interest.remove("a.b.c", "q", 2)  # wrong member
    assert not interest.remove("a.b.c", "other", 1)  # wrong queue
    assert not interest.remove("a.b", "q", 1)  # a prefix: the node exists, no pattern ends there
    assert not interest.remove("a", "q", 1)
    assert not interest.remove("a.b.c.d", "q", 1)  # longer
    assert not interest.remove("a.b.*", "q", 1)  # wildcard in place of a literal
    assert not interest.remove("a.b.>", "q", 1)
    assert not interest.remove("a.>", "q", 1)
    assert not interest.remove("x.b.c", "q", 1)
    assert not interest.remove("a..c", "q", 1)  # invalid
    assert not interest.remove("", "q", 1)
    assert interest.generation == gen
    assert len(interest) == 1 and interest.patterns() == 1
    assert interest.has_interest("a.b.c")


def test_remove_partially(use_cache: bool) -> None:
    interest = make(use_cache)
    interest.add("p.*", "q1", "A")
    interest.add("p.*", "q1", "B")
    interest.add("p.*", "q2", "C")
    assert interest.remove("p.*", "q1", "A")
    assert snapshot(interest.match("p.x")) == {
        "p.*": {"q1": frozenset({"B"}), "q2": frozenset({"C"})}
    }
    assert interest.remove("p.*", "q1", "B")
    # the empty queue is gone, not left as an empty set
    assert snapshot(interest.match("p.x")) == {"p.*": {"q2": frozenset({"C"})}}
    assert interest.patterns() == 1
    assert interest.remove("p.*", "q2", "C")
    assert interest.match("p.x") == []
    assert interest.patterns() == 0 and len(interest) == 0
    assert trie_nodes(interest) == 0


def test_prune_keeps_siblings_and_prefixes(use_cache: bool) -> None:
    interest = make(use_cache)
    interest.add("a.b", "q", 1)
    interest.add("a.b.c.d", "q", 2)
    interest.add("a.b.x", "q", 3)
    assert trie_nodes(interest) == 5  # a, b, c, d, x
    assert interest.remove("a.b.c.d", "q", 2)
    assert trie_nodes(interest) == 3  # c and d pruned
    assert set(snapshot(interest.match("a.b"))) == {"a.b"}
    assert set(snapshot(interest.match("a.b.x"))) == {"a.b.x"}
    assert interest.remove("a.b", "q", 1)
    assert trie_nodes(interest) == 3  # b still leads to x
    assert interest.match("a.b") == []
    assert interest.remove("a.b.x", "q", 3)
    assert trie_nodes(interest) == 0


def test_remove_everything_prunes_everything(use_cache: bool) -> None:
    rng = random.Random(1234)
    tokens = ["a", "b", "c", "*", "日"]
    interest = make(use_cache, cache_size=64)
    entries = set()
    for _ in range(500):
        n = rng.randint(1, 5)
        toks = [rng.choice(tokens) for _ in range(n)]
        if rng.random() < 0.3:
            toks.append(">")
        entry = (".".join(toks), rng.choice(["", "0", "q"]), rng.randint(0, 5))
        interest.add(*entry)
        entries.add(entry)
        interest.match(".".join(rng.choice("abc") for _ in range(rng.randint(1, 6))))
    assert len(interest) == len(entries)
    assert interest.patterns() == len({p for p, _, _ in entries})
    order = sorted(entries)
    rng.shuffle(order)
    for entry in order:
        assert interest.remove(*entry)
        assert not interest.remove(*entry)
    assert len(interest) == 0
    assert interest.patterns() == 0
    assert trie_nodes(interest) == 0
    assert interest._root.is_empty()
    assert interest.match("a.b.c") == []


def test_generation_counts_changes_only(use_cache: bool) -> None:
    interest = make(use_cache)
    gens = [interest.generation]

    def step() -> int:
        gens.append(interest.generation)
        return gens[-1] - gens[-2]

    interest.add("a", "q", 1)
    assert step() == 1
    interest.add("a", "q", 2)  # new member, existing pattern
    assert step() == 1
    interest.add("a", "q2", 1)  # new queue
    assert step() == 1
    interest.add("a", "q", 1)  # no-op
    assert step() == 0
    interest.match("a")
    interest.has_interest("a")
    assert step() == 0
    assert not interest.remove("a", "q", 99)
    assert step() == 0
    assert interest.remove("a", "q", 1)
    assert step() == 1
    assert interest.remove("a", "q", 2)
    assert step() == 1
    assert interest.remove("a", "q2", 1)
    assert step() == 1
    assert gens == sorted(gens)


# --------------------------------------------------------------------------------------------
# Insert and remove between matches (the stale cache must never be returned)


def test_changes_between_repeated_matches(use_cache: bool) -> None:
    interest = make(use_cache)
    subject = "a.b"
    assert interest.match(subject) == []
    interest.add("a.*", "q", 1)
    assert snapshot(interest.match(subject)) == {"a.*": {"q": frozenset({1})}}
    interest.add("a.*", "q", 2)  # new member of a cached pattern
    assert snapshot(interest.match(subject)) == {"a.*": {"q": frozenset({1, 2})}}
    interest.add("a.*", "other", 3)  # new queue of a cached pattern
    assert snapshot(interest.match(subject)) == {
        "a.*": {"q": frozenset({1, 2}), "other": frozenset({3})}
    }
    interest.add("a.>", "q", 4)  # new pattern
    assert snapshot(interest.match(subject))["a.>"] == {"q": frozenset({4})}
    interest.add("a.b.c", "q", 5)  # new pattern, not matching
    assert set(snapshot(interest.match(subject))) == {"a.*", "a.>"}
    assert interest.remove("a.*", "q", 1)
    assert snapshot(interest.match(subject))["a.*"] == {
        "q": frozenset({2}),
        "other": frozenset({3}),
    }
    assert interest.remove("a.*", "other", 3)
    assert snapshot(interest.match(subject))["a.*"] == {"q": frozenset({2})}
    assert interest.remove("a.*", "q", 2)  # pattern gone
    assert snapshot(interest.match(subject)) == {"a.>": {"q": frozenset({4})}}
    assert interest.remove("a.>", "q", 4)
    assert interest.match(subject) == []
    assert not interest.has_interest(subject)
    interest.add("a.*", "q", 6)  # re-add after removal
    assert snapshot(interest.match(subject)) == {"a.*": {"q": frozenset({6})}}


def test_cache_hit_returns_same_result_until_pattern_set_changes(use_cache: bool) -> None:
    interest = make(use_cache)
    interest.add("a.*", "q", 1)
    first = interest.match("a.b")
    second = interest.match("a.b")
    assert (first is second) is use_cache
    assert (cache_len(interest) == 1) is use_cache
    interest.add("a.*", "q", 2)  # no new pattern: cached result stays valid (it is live)
    assert (interest.match("a.b") is first) is use_cache
    assert snapshot(interest.match("a.b")) == {"a.*": {"q": frozenset({1, 2})}}
    interest.add("x", "q", 1)  # a new pattern clears the cache
    assert cache_len(interest) == 0
    third = interest.match("a.b")
    assert third is not first
    assert snapshot(third) == {"a.*": {"q": frozenset({1, 2})}}
    assert interest.remove("x", "q", 1)  # a vanished pattern clears it too
    assert cache_len(interest) == 0


def test_many_subjects_cached_then_invalidated(use_cache: bool) -> None:
    interest = make(use_cache)
    subjects_ = [f"s.{i}" for i in range(100)]
    for s in subjects_:
        assert interest.match(s) == []
    interest.add("s.*", "q", "m")
    for s in subjects_:
        assert snapshot(interest.match(s)) == {"s.*": {"q": frozenset({"m"})}}
    interest.add("s.7", "q", "seven")
    assert set(snapshot(interest.match("s.7"))) == {"s.*", "s.7"}
    assert set(snapshot(interest.match("s.8"))) == {"s.*"}
    assert interest.remove("s.*", "q", "m")
    for s in subjects_:
        assert set(snapshot(interest.match(s))) == ({"s.7"} if s == "s.7" else set())


def test_churn_against_reference(use_cache: bool) -> None:
    """Random add/remove interleaved with repeated matches of the same few subjects."""
    rng = random.Random(99)
    interest = make(use_cache, cache_size=8)
    model: dict[str, dict[str, set[int]]] = {}
    pats = ["a", "a.b", "a.*", "*.b", "a.>", ">", "*", "*.*", "a.b.c", "a.*.c", "b.>"]
    subs = ["a", "b", "a.b", "a.c", "b.b", "a.b.c", "a.x.c", "b.c.d", "c"]
    for _ in range(3000):
        p, q, m = rng.choice(pats), rng.choice(["", "q"]), rng.randint(0, 2)
        if rng.random() < 0.5:
            interest.add(p, q, m)
            model.setdefault(p, {}).setdefault(q, set()).add(m)
        else:
            present = m in model.get(p, {}).get(q, set())
            assert interest.remove(p, q, m) is present
            if present:
                model[p][q].discard(m)
                if not model[p][q]:
                    del model[p][q]
                if not model[p]:
                    del model[p]
        s = rng.choice(subs)
        want = {
            pp: {qq: frozenset(mm) for qq, mm in qs.items()}
            for pp, qs in model.items()
            if matches(pp, s)
        }
        assert snapshot(interest.match(s)) == want
        assert interest.patterns() == len(model)
        assert len(interest) == sum(len(mm) for qs in model.values() for mm in qs.values())


# --------------------------------------------------------------------------------------------
# The cache cap


@pytest.mark.parametrize("cache_size", [1, 2, 3, 10, 100])
def test_cache_never_exceeds_cap(use_cache: bool, cache_size: int) -> None:
    interest = make(use_cache, cache_size=cache_size)
    interest.add("s.*", "q", 1)
    for i in range(1000):
        subject = f"s.{i % 337}"
        assert snapshot(interest.match(subject)) == {"s.*": {"q": frozenset({1})}}
        assert cache_len(interest) <= (cache_size if use_cache else 0)
    if use_cache:
        assert cache_len(interest) >= 1


def test_cache_keeps_recent_subjects_after_eviction(use_cache: bool) -> None:
    interest = make(use_cache, cache_size=10)
    interest.add(">", "q", 1)
    for i in range(10):
        interest.match(f"old.{i}")
    interest.match("new")  # the cache is full: the oldest half goes
    if use_cache:
        assert "new" in interest._cache
        assert "old.9" in interest._cache
        assert "old.0" not in interest._cache
        assert cache_len(interest) <= 10
    else:
        assert cache_len(interest) == 0


def test_cache_size_zero_disables_cache(use_cache: bool) -> None:
    interest = make(use_cache, cache_size=0)
    interest.add("a", "q", 1)
    for _ in range(3):
        assert snapshot(interest.match("a")) == {"a": {"q": frozenset({1})}}
    assert cache_len(interest) == 0


def test_negative_cache_size_rejected(use_cache: bool) -> None:
    with pytest.raises(ValueError, match="cache_size"):
        Interest(cache_size=-1, use_cache=use_cache)


def test_default_cache_size(use_cache: bool) -> None:
    interest: Interest[int] = Interest(use_cache=use_cache)
    interest.add(">", "q", 1)
    for i in range(10_500):
        interest.match(f"x.{i}")
    assert cache_len(interest) <= (10_000 if use_cache else 0)
    assert cache_len(interest) > (4_000 if use_cache else -1)


# --------------------------------------------------------------------------------------------
# Property test: the trie against a brute-force reference built on matches()

_LIT = st.sampled_from(["a", "b", "c", "a*", "b>"])
_PAT_TOKEN = st.one_of(_LIT, st.just("*"))


@st.composite
def _patterns(draw: st.DrawFn) -> str:
    toks = draw(st.lists(_PAT_TOKEN, min_size=1, max_size=4))
    if draw(st.booleans()) and len(toks) < 5:
        toks = [*toks[:-1], ">"] if draw(st.booleans()) else [*toks, ">"]
    return ".".join(toks)


_SUBJECTS = st.lists(_LIT, min_size=1, max_size=5).map(".".join)
_OPS = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "remove"]),
        _patterns(),
        st.sampled_from(["", "q"]),
        st.integers(0, 2),
        st.lists(_SUBJECTS, min_size=0, max_size=3),
    ),
    max_size=40,
)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ops=_OPS, cache_size=st.integers(1, 6))
def test_property_trie_equals_brute_force(
    use_cache: bool, ops: list[tuple[str, str, str, int, list[str]]], cache_size: int
) -> None:
    interest: Interest[int] = Interest(cache_size=cache_size, use_cache=use_cache)
    model: dict[str, dict[str, set[int]]] = {}
    seen_subjects: list[str] = []
    for op, pattern, queue, member, probe in ops:
        assert is_valid_pattern(pattern)
        if op == "add":
            interest.add(pattern, queue, member)
            model.setdefault(pattern, {}).setdefault(queue, set()).add(member)
        else:
            present = member in model.get(pattern, {}).get(queue, set())
            assert interest.remove(pattern, queue, member) is present
            if present:
                model[pattern][queue].discard(member)
                if not model[pattern][queue]:
                    del model[pattern][queue]
                if not model[pattern]:
                    del model[pattern]
        seen_subjects.extend(probe)
        # Re-probe earlier subjects too, so cached answers get checked after the change.
        for subject in [*probe, *seen_subjects[-6:]]:
            want = {
                p: {q: frozenset(m) for q, m in qs.items()}
                for p, qs in model.items()
                if matches(p, subject)
            }
            assert snapshot(interest.match(subject)) == want
            assert interest.has_interest(subject) is bool(want)
        assert interest.patterns() == len(model)
        assert len(interest) == sum(len(m) for qs in model.values() for m in qs.values())
        assert cache_len(interest) <= (cache_size if use_cache else 0)
    if not model:
        assert trie_nodes(interest) == 0


@settings(max_examples=300, deadline=None, database=None)
@given(pattern=_patterns(), subject=_SUBJECTS)
def test_property_matches_equals_token_reference(
    use_cache: bool, pattern: str, subject: str
) -> None:
    """matches() against an independent token-by-token definition."""
    p, s = pattern.split("."), subject.split(".")
    if p[-1] == ">":
        head = p[:-1]
        want = len(s) > len(head) and all(x in ("*", y) for x, y in zip(head, s, strict=False))
    else:
        want = len(p) == len(s) and all(x in ("*", y) for x, y in zip(p, s, strict=True))
    assert matches(pattern, subject) is want
    interest: Interest[int] = Interest(use_cache=use_cache)
    interest.add(pattern, "", 0)
    assert interest.has_interest(subject) is want


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.text(max_size=12))
def test_property_validation_rules(use_cache: bool, text: str) -> None:
    """is_valid_* agree with the rules written out independently."""
    tokens = text.split(".")
    base = (
        0 < len(text) <= MAX_SUBJECT_LENGTH
        and all(tokens)
        and not any(c.isspace() or unicodedata.category(c) == "Cc" for c in text)
    )
    assert is_valid_subject(text) is (base and "*" not in tokens and ">" not in tokens)
    assert is_valid_pattern(text) is (base and ">" not in tokens[:-1])
    assert is_valid_subject(text) is (is_valid_pattern(text) and not (set(tokens) & {"*", ">"}))


# --------------------------------------------------------------------------------------------
# Surface


def test_public_surface(use_cache: bool) -> None:
    assert set(subjects.__all__) == {
        "MAX_SUBJECT_LENGTH",
        "Interest",
        "InvalidSubject",
        "SubjectIndex",
        "is_valid_pattern",
        "is_valid_subject",
        "matches",
        "validate_pattern",
        "validate_subject",
    }
    public = {n for n in vars(subjects) if not n.startswith("_")}
    # only the exports plus imported names and the type variable
    assert public - set(subjects.__all__) <= {"annotations", "re", "Generic", "TypeVar", "T"}
    interest = make(use_cache)
    for name in ("add", "remove", "match", "has_interest", "patterns", "generation"):
        assert hasattr(interest, name)


def test_members_may_be_any_hashable(use_cache: bool) -> None:
    interest: Interest[tuple[str, str]] = Interest(use_cache=use_cache)
    interest.add("a.*", "q", ("socket-1", "a.*"))
    interest.add("a.*", "q", ("socket-2", "a.*"))
    [(pattern, queues)] = interest.match("a.z")
    assert pattern == "a.*"
    assert queues["q"] == {("socket-1", "a.*"), ("socket-2", "a.*")}
