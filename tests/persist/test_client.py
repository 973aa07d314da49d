"""Client-side pieces that need no server: the jittered reconnect backoff."""

from __future__ import annotations

import statistics

import pytest

from cohub.conat.errors import BadRequest
from cohub.persist.client import _entries, backoff


def test_backoff_grows_then_stays_under_the_cap() -> None:
    base, cap = 0.25, 10.0
    for attempt in range(200):  # far past the cap, and past where 1.8**n would overflow
        ceiling = min(cap, base * 1.8 ** min(attempt, 64))
        for _ in range(200):
            delay = backoff(attempt, base, cap)
            assert ceiling / 2 <= delay <= ceiling <= cap
    early = statistics.mean(backoff(0, base, cap) for _ in range(500))
    later = statistics.mean(backoff(5, base, cap) for _ in range(500))
    assert later > 5 * early  # exponential: 1.8**5 is about 19


def test_backoff_is_spread_so_clients_do_not_return_together() -> None:
    """A thousand clients that lost their persist server at the same moment."""
    for attempt in (0, 3, 50):
        delays = [backoff(attempt, 0.25, 10.0) for _ in range(1000)]
        ceiling = min(10.0, 0.25 * 1.8**attempt)
        assert len(set(delays)) > 990  # random, not a fixed schedule
        # spread over the whole upper half: the first and last tenth both get some
        assert sum(d < ceiling * 0.55 for d in delays) > 30
        assert sum(d > ceiling * 0.95 for d in delays) > 30
        assert statistics.pstdev(delays) > ceiling * 0.1


def test_compact_get_all_batches_are_checked() -> None:
    rows = [[1, 1750000000000, 0, b"\xa1a", None, None], [2, 1750000000001, 1, b"1", "k", {}]]
    entries = _entries(rows)
    assert [(e.seq, e.key, e.data) for e in entries] == [(1, None, "a"), (2, "k", 1)]
    for junk in ([[1, 2]], [[1, 2, 0, "not bytes", None, None]], [["1", 2, 0, b"", None, None]]):
        with pytest.raises(BadRequest):
            _entries(junk)
