"""Tests of worker.waiting.backoff: exponential backoff with equal jitter, clipped to a deadline."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.waiting.backoff import backoff_seconds, clip_to_deadline

INITIAL = 2.0
MAXIMUM = 60.0


def bounds(attempt: int, initial: float = INITIAL, maximum: float = MAXIMUM) -> tuple[float, float]:
    base = min(maximum, initial * 2**attempt)
    return base / 2, base


@pytest.mark.parametrize("attempt", range(12))
def test_each_wait_lies_in_the_upper_half_of_its_base(attempt: int) -> None:
    rng = random.Random(attempt)
    low, high = bounds(attempt)
    for _ in range(200):
        assert low <= backoff_seconds(attempt, INITIAL, MAXIMUM, rng=rng) <= high


def test_the_base_doubles_with_each_attempt_until_the_cap() -> None:
    assert [bounds(a)[1] for a in range(7)] == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    # With the jitter drawn at its extremes, the wait is exactly half or all of the base.
    for attempt in range(5):
        low, high = bounds(attempt)
        lowest = backoff_seconds(attempt, INITIAL, MAXIMUM, rng=FixedRandom(0.0))
        highest = backoff_seconds(attempt, INITIAL, MAXIMUM, rng=FixedRandom(1.0))
        assert lowest == low == INITIAL * 2**attempt / 2
        assert highest == high == INITIAL * 2**attempt


def test_the_shortest_wait_grows_exponentially() -> None:
    waits = [backoff_seconds(a, 1.0, 1e9, rng=FixedRandom(0.0)) for a in range(10)]
    assert all(later == 2 * earlier for earlier, later in zip(waits, waits[1:], strict=False))


@pytest.mark.parametrize("attempt", [5, 6, 10, 62, 63, 1000, 10**9])
def test_waits_never_pass_the_maximum_even_for_huge_attempts(attempt: int) -> None:
    rng = random.Random(7)
    for _ in range(50):
        wait = backoff_seconds(attempt, INITIAL, MAXIMUM, rng=rng)
        assert MAXIMUM / 2 <= wait <= MAXIMUM


def test_a_seeded_random_gives_the_same_waits() -> None:
    first = [backoff_seconds(a, INITIAL, MAXIMUM, rng=random.Random(42)) for a in range(10)]
    again = [backoff_seconds(a, INITIAL, MAXIMUM, rng=random.Random(42)) for a in range(10)]
    assert first == again
    rng_a, rng_b = random.Random(3), random.Random(3)
    seq_a = [backoff_seconds(4, INITIAL, MAXIMUM, rng=rng_a) for _ in range(20)]
    seq_b = [backoff_seconds(4, INITIAL, MAXIMUM, rng=rng_b) for _ in range(20)]
    assert seq_a == seq_b
    assert len(set(seq_a)) > 1


def test_without_a_random_the_wait_still_stays_in_bounds() -> None:
    low, high = bounds(3)
    for _ in range(100):
        assert low <= backoff_seconds(3, INITIAL, MAXIMUM) <= high


@pytest.mark.parametrize("attempt", [-1, -100])
def test_a_negative_attempt_is_rejected(attempt: int) -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff_seconds(attempt, INITIAL, MAXIMUM)


@settings(max_examples=200, deadline=None, database=None)
@given(
    attempt=st.integers(0, 10_000),
    initial=st.floats(0.01, 100),
    maximum=st.floats(0.01, 10_000),
    seed=st.integers(0, 2**32),
)
def test_any_wait_is_within_half_and_all_of_its_capped_base(
    attempt: int, initial: float, maximum: float, seed: int
) -> None:
    wait = backoff_seconds(attempt, initial, maximum, rng=random.Random(seed))
    base = min(maximum, initial * 2 ** min(attempt, 62))
    assert base / 2 <= wait <= base
    assert wait <= maximum


class FixedRandom(random.Random):
    """A Random whose uniform(a, b) always returns the point `fraction` of the way."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


# --- clip_to_deadline ------------------------------------------------------------------------


def test_a_delay_well_before_the_deadline_is_kept() -> None:
    assert clip_to_deadline(5.0, now=100.0, deadline=200.0) == 5.0


def test_a_delay_past_the_deadline_is_cut_to_the_time_left() -> None:
    assert clip_to_deadline(30.0, now=100.0, deadline=110.0) == 10.0


def test_a_deadline_already_passed_gives_the_minimum() -> None:
    assert clip_to_deadline(30.0, now=200.0, deadline=110.0) == 0.05
    assert clip_to_deadline(30.0, now=200.0, deadline=110.0, minimum=1.0) == 1.0


@settings(max_examples=200, deadline=None, database=None)
@given(
    delay=st.floats(0, 1e6),
    now=st.floats(0, 1e9),
    left=st.floats(-1e6, 1e6),
    minimum=st.floats(0, 10),
)
def test_a_clipped_delay_never_exceeds_the_time_left_nor_drops_below_the_minimum(
    delay: float, now: float, left: float, minimum: float
) -> None:
    deadline = now + left
    clipped = clip_to_deadline(delay, now, deadline, minimum=minimum)
    assert clipped >= minimum
    assert clipped <= max(delay, minimum)
    if deadline - now >= minimum:
        assert clipped <= deadline - now
