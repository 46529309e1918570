"""Backoff: how long to wait before the next poll or the next try after a transient error."""

from __future__ import annotations

import random


def backoff_seconds(
    attempt: int, initial: float, maximum: float, *, rng: random.Random | None = None
) -> float:
    """Exponential backoff with jitter for the `attempt`-th wait (0-based).

    The base doubles from `initial` up to `maximum`; the wait is drawn uniformly from the
    upper half of the base ("equal jitter"), so that jobs started together spread out while
    each still waits at least half the base.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    uniform = rng.uniform if rng is not None else random.uniform
    base = min(maximum, initial * 2 ** min(attempt, 62))
    return base / 2 + uniform(0, base / 2)


def clip_to_deadline(delay: float, now: float, deadline: float, *, minimum: float = 0.05) -> float:
    """Wait no longer than until `deadline`, so the last poll happens on time."""
    return max(minimum, min(delay, deadline - now))
