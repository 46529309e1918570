"""How every task retries: one policy shape, in the manner of dramatiq's Retries middleware.

A task states its policy: which errors are worth another try (`retry_on`), how long to wait
before it (`wait`), and the ceiling (`max_retries`, `deadline`). `decide` turns an error into
a countdown, or None when the task must give up; the task then hands the error to its
`give_up` (fail the job, or log). Plain code, tested without Celery.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from worker.backoff import backoff_seconds
from worker.errors import AkoolRateLimited
from worker.ratelimit import SlotReserved

# (job id, retries so far, error) -> seconds to wait before the next try.
Wait = Callable[[str, int, BaseException], float]
# (job id) -> epoch seconds after which no retry is made, or None for no deadline.
Deadline = Callable[[str], float | None]


@dataclass(frozen=True)
class RetryPolicy:
    """Which errors retry, how long each wait is, and when to stop."""

    retry_on: tuple[type[BaseException], ...]
    wait: Wait
    # At most this many retries (None: no count). Errors listed in `uncounted` may always
    # retry: waiting for the fleet's request budget delays a job, it does not fail it.
    max_retries: int | None = None
    uncounted: tuple[type[BaseException], ...] = ()
    # No retry once this moment has passed (for example: the video is deleted then).
    deadline: Deadline | None = None


def decide(
    policy: RetryPolicy,
    job_id: str,
    retries: int,
    error: BaseException,
    *,
    now: float | None = None,
) -> float | None:
    """Seconds until the next try of the failed task, or None when it must give up."""
    if not isinstance(error, policy.retry_on):
        return None
    counted = not isinstance(error, policy.uncounted)
    if counted and policy.max_retries is not None and retries >= policy.max_retries:
        return None
    if policy.deadline is not None:
        deadline = policy.deadline(job_id)
        if deadline is not None and (time.time() if now is None else now) >= deadline:
            return None
    return policy.wait(job_id, retries, error)


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
