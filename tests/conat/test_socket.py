"""The client socket's reconnect backoff (conat.md section 1: 0.5 s up to 15 s, jittered)."""

from __future__ import annotations

import itertools
import random

import pytest

from cohub.conat._socket import reconnect_delays


def _first(n: int, rand: float) -> list[float]:
    return list(itertools.islice(reconnect_delays(0.5, 15.0, lambda: rand), n))


def test_without_jitter_the_delay_doubles_up_to_the_cap() -> None:
    assert _first(8, 0.5) == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]


def test_jitter_never_leaves_half_a_second_to_fifteen() -> None:
    # the extremes of random(): the old formula gave 0.25 s and 22.5 s here
    assert _first(8, 0.0) == [0.5, 0.5, 1.0, 2.0, 4.0, 7.5, 7.5, 7.5]
    assert _first(8, 0.999999) == pytest.approx([0.75, 1.5, 3.0, 6.0, 12.0, 15.0, 15.0, 15.0])
    rng = random.Random(7)
    delays = list(itertools.islice(reconnect_delays(rand=rng.random), 1000))
    assert all(0.5 <= d <= 15.0 for d in delays)
    assert len({round(d, 6) for d in delays[10:]}) > 1  # still jittered at the cap's level


def test_the_client_options_set_the_range() -> None:
    delays = list(itertools.islice(reconnect_delays(2.0, 5.0, lambda: 0.0), 4))
    assert delays == [2.0, 2.0, 2.5, 2.5]
