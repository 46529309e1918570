"""Tests of worker.waiting.policy without Celery: when a failed task gives up, and how long it waits
before the next try (Retry-After, the fleet's request budget, backoff)."""

from __future__ import annotations

import pytest

from worker.akool.budget import SlotReserved
from worker.errors import (
    AkoolPermanentError,
    AkoolRateLimited,
    AkoolTransientError,
    DownloadError,
    StoreUnavailable,
    TransientError,
)
from worker.waiting.backoff import exponential, extra_wait, told_wait
from worker.waiting.policy import RetryPolicy, decide

JOB_ID = "0123456789abcdef0123456789abcdef"
NOW = 1_700_000_000.0
WAIT = 42.0


class RecordedWait:
    """A wait that answers WAIT and remembers what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, BaseException]] = []

    def __call__(self, job_id: str, retries: int, error: BaseException) -> float:
        self.calls.append((job_id, retries, error))
        return WAIT


def policy(**values: object) -> RetryPolicy:
    values.setdefault("retry_on", (TransientError,))
    values.setdefault("wait", RecordedWait())
    return RetryPolicy(**values)  # type: ignore[arg-type]


def busy() -> AkoolTransientError:
    return AkoolTransientError("Akool is busy", status=503)


def spent(retry_after: float = 0.5) -> AkoolRateLimited:
    return AkoolRateLimited("the request budget is spent", retry_after=retry_after)


# --- decide --------------------------------------------------------------------------------


def test_an_error_not_in_retry_on_gives_up_at_once() -> None:
    wait = RecordedWait()
    rules = policy(wait=wait)
    assert decide(rules, JOB_ID, 0, AkoolPermanentError("refused", code=1204), now=NOW) is None
    assert decide(rules, JOB_ID, 0, ValueError("a bug"), now=NOW) is None
    assert wait.calls == []


def test_an_error_in_retry_on_waits_as_the_policy_says_and_is_told_the_retry_count() -> None:
    wait = RecordedWait()
    error = busy()
    assert decide(policy(wait=wait), JOB_ID, 3, error, now=NOW) == WAIT
    assert wait.calls == [(JOB_ID, 3, error)]


def test_a_subclass_of_an_error_in_retry_on_is_retried_too() -> None:
    rules = policy(retry_on=(AkoolTransientError,))
    assert decide(rules, JOB_ID, 0, spent(), now=NOW) == WAIT


def test_retries_stop_once_max_retries_is_reached() -> None:
    rules = policy(max_retries=3)
    assert decide(rules, JOB_ID, 2, busy(), now=NOW) == WAIT
    assert decide(rules, JOB_ID, 3, busy(), now=NOW) is None
    assert decide(rules, JOB_ID, 10, busy(), now=NOW) is None


def test_a_zero_max_retries_never_retries() -> None:
    assert decide(policy(max_retries=0), JOB_ID, 0, busy(), now=NOW) is None


def test_without_max_retries_a_task_retries_however_many_times_it_failed() -> None:
    assert decide(policy(), JOB_ID, 10_000, busy(), now=NOW) == WAIT


def test_an_uncounted_error_retries_past_max_retries() -> None:
    rules = policy(max_retries=3, uncounted=(AkoolRateLimited,))
    assert decide(rules, JOB_ID, 3, spent(), now=NOW) == WAIT
    assert decide(rules, JOB_ID, 50, spent(), now=NOW) == WAIT
    # Other errors of the same policy are still counted.
    assert decide(rules, JOB_ID, 3, busy(), now=NOW) is None


def test_an_uncounted_error_not_in_retry_on_still_gives_up() -> None:
    rules = policy(retry_on=(DownloadError,), uncounted=(AkoolRateLimited,))
    assert decide(rules, JOB_ID, 0, spent(), now=NOW) is None


def test_a_passed_deadline_gives_up_even_for_an_uncounted_error() -> None:
    deadlines: list[str] = []

    def deadline(job_id: str) -> float:
        deadlines.append(job_id)
        return NOW

    rules = policy(deadline=deadline, uncounted=(AkoolRateLimited,))
    assert decide(rules, JOB_ID, 0, busy(), now=NOW) is None
    assert decide(rules, JOB_ID, 0, spent(), now=NOW + 1) is None
    assert deadlines == [JOB_ID, JOB_ID]


def test_a_deadline_still_ahead_or_unknown_lets_the_task_retry() -> None:
    assert decide(policy(deadline=lambda _: NOW + 1), JOB_ID, 0, busy(), now=NOW) == WAIT
    assert decide(policy(deadline=lambda _: None), JOB_ID, 0, busy(), now=NOW) == WAIT


# --- told_wait, exponential and extra_wait ---------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_told_wait_waits_at_least_what_retry_after_asks_with_under_a_second_of_jitter(
    status: int,
) -> None:
    error = AkoolTransientError("busy", status=status, retry_after=7.0)
    for _ in range(50):
        assert 7.0 <= told_wait(error, 2.0) <= 8.0


def test_told_wait_keeps_the_backoff_when_it_is_longer_than_retry_after() -> None:
    error = AkoolTransientError("busy", status=429, retry_after=3.0)
    for _ in range(50):
        assert 10.0 <= told_wait(error, 10.0) <= 11.0


def test_told_wait_does_not_add_the_backoff_for_the_request_budget() -> None:
    error = spent(retry_after=0.25)
    for _ in range(50):
        assert 0.25 <= told_wait(error, 30.0) <= 1.25


def test_exponential_waits_the_backoff_when_the_error_says_nothing() -> None:
    wait = exponential(2.0, 60.0)
    for retries, (low, high) in enumerate([(1.0, 2.0), (2.0, 4.0), (4.0, 8.0)]):
        for _ in range(50):
            assert low <= wait(JOB_ID, retries, busy()) <= high
    for _ in range(50):
        assert 30.0 <= wait(JOB_ID, 20, StoreUnavailable("redis is down")) <= 60.0


def test_exponential_stretches_to_retry_after() -> None:
    wait = exponential(2.0, 60.0)
    told = AkoolTransientError("busy", status=429, retry_after=120.0)
    for _ in range(50):
        assert 120.0 <= wait(JOB_ID, 0, told) <= 121.0


def test_a_reserved_slot_is_waited_for_exactly_without_jitter_or_backoff() -> None:
    reserved = SlotReserved("spent", retry_after=42.5, reserved_at=1000.0)
    assert told_wait(reserved, 60.0) == 42.5
    assert exponential(2.0, 60.0)(JOB_ID, 20, reserved) == 42.5


def test_exponential_waits_only_for_the_budgets_next_slot_after_many_retries() -> None:
    wait = exponential(2.0, 60.0)
    for _ in range(50):
        assert 0.5 <= wait(JOB_ID, 20, spent(retry_after=0.5)) <= 1.5


def test_extra_wait_is_retry_after_with_jitter_or_nothing() -> None:
    told = AkoolTransientError("busy", status=503, retry_after=3.0)
    for _ in range(50):
        assert 3.0 <= extra_wait(told) <= 4.0
    assert extra_wait(busy()) == 0.0
    assert extra_wait(ValueError("no retry_after at all")) == 0.0
