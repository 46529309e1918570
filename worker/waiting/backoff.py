"""Backoff: how long to wait before the next poll or the next try after a transient error,
and how an error that says how long to wait (Retry-After, the request budget's next slot)
stretches it."""

from __future__ import annotations

import random
from collections.abc import Callable

from worker.akool import SlotReserved
from worker.errors import AkoolRateLimited

# (job id, retries so far, error) -> seconds to wait before the next try.
Wait = Callable[[str, int, BaseException], float]
# Doublings past this many no longer change the base (it is at its ceiling long before):
# the exponent stays a small integer.
MAX_DOUBLINGS = 62


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
    base = min(maximum, initial * 2 ** min(attempt, MAX_DOUBLINGS))
    return base / 2 + uniform(0, base / 2)


def clip_to_deadline(delay: float, now: float, deadline: float, *, minimum: float = 0.05) -> float:
    """Wait no longer than until `deadline`, so the last poll happens on time."""
    return max(minimum, min(delay, deadline - now))


def exponential(initial: float, maximum: float) -> Wait:
    """Backoff with jitter from `initial` doubling to `maximum` seconds, stretched to what
    the error's `retry_after` asks (Akool's Retry-After, or the request budget's next slot)."""

    def wait(_job_id: str, retries: int, error: BaseException) -> float:
        delay = backoff_seconds(retries, initial, maximum)
        return told_wait(error, delay) if _told(error) else delay

    return wait


def _told(error: BaseException) -> bool:
    return bool(getattr(error, "retry_after", None))


def told_wait(error: BaseException, backoff: float) -> float:
    """The wait when the error says how long to wait: at least that, plus up to a second of
    jitter so the waiting jobs do not all come back at once. A refusal by our own request
    budget names the exact free slot, so the backoff does not add to it, and a slot reserved
    for the task is exactly that far away: jitter would only waste it."""
    if isinstance(error, SlotReserved):
        return error.retry_after or 0.0
    retry_after = float(getattr(error, "retry_after", None) or 0.0)
    floor = 0.0 if isinstance(error, AkoolRateLimited) else backoff
    return max(floor, retry_after) + random.uniform(0, 1)


def extra_wait(error: BaseException) -> float:
    """What the error adds to a schedule of its own (poll times): its retry_after with up
    to a second of jitter, or nothing."""
    retry_after = getattr(error, "retry_after", None)
    return float(retry_after) + random.uniform(0, 1) if retry_after else 0.0
