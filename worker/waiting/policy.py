"""How every task retries: one policy shape, in the manner of dramatiq's Retries middleware,
and the policy of each task.

A policy says which errors are worth another try (`retry_on`), how long to wait before it
(`wait`), and the ceiling (`max_retries`, `deadline`). `decide` turns an error into a
countdown, or None when the task must give up; the task then hands the error to its
`give_up` (fail the job, or log). A task states its policy by building it here with its
dependencies (`submit_policy`, `poll_policy`, `archive_policy`, `notify_policy`). Plain
code, tested without Celery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded

from worker.akool import SlotReserved
from worker.clock import Clock, wall_clock
from worker.config import Settings
from worker.errors import (
    AkoolBusy,
    AkoolRateLimited,
    AkoolRequestNotSent,
    PollAgain,
    TransientError,
)
from worker.store import NOTICE_LEASE_SECONDS, JobStore
from worker.waiting.backoff import Wait, exponential, extra_wait
from worker.waiting.schedule import archive_deadline, plan_next_poll, poll_settings

# (job id) -> epoch seconds after which no retry is made, or None for no deadline.
Deadline = Callable[[str], float | None]

# A submit that keeps meeting outages gives up after this many tries (about 12 minutes with
# the default POLL_MAX_SECONDS between them).
SUBMIT_MAX_RETRIES = 15
# About four minutes of tries (NOTIFY_INITIAL_SECONDS doubling to NOTIFY_MAX_SECONDS, with
# jitter) before a notification is given up.
NOTIFY_MAX_RETRIES = 8
NOTIFY_INITIAL_SECONDS = 1.0
NOTIFY_MAX_SECONDS = 120.0


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
    policy: RetryPolicy, job_id: str, retries: int, error: BaseException, *, now: float
) -> float | None:
    """Seconds until the next try of the failed task, or None when it must give up."""
    if not isinstance(error, policy.retry_on):
        return None
    counted = not isinstance(error, policy.uncounted)
    if counted and policy.max_retries is not None and retries >= policy.max_retries:
        return None
    if policy.deadline is not None:
        deadline = policy.deadline(job_id)
        if deadline is not None and now >= deadline:
            return None
    return policy.wait(job_id, retries, error)


def step_backoff(settings: Settings) -> Wait:
    """A step's backoff on POLL_INITIAL_SECONDS..POLL_MAX_SECONDS, or longer when told to
    wait."""
    return exponential(settings.poll_initial_seconds, settings.poll_max_seconds)


def expected_back(store: JobStore, settings: Settings, clock: Clock = wall_clock) -> Wait:
    """The step's backoff, telling the sweeper when to expect the task back (a submit
    waiting for the request budget or for Akool, an archive waiting on the file or S3), so
    the wait is not taken for a stall and re-driven in a second loop."""
    backoff = step_backoff(settings)

    def wait(job_id: str, retries: int, error: BaseException) -> float:
        delay = backoff(job_id, retries, error)
        store.heartbeat(job_id, clock() + delay + settings.stall_seconds)
        return delay

    return wait


def submit_policy(store: JobStore, settings: Settings, clock: Clock = wall_clock) -> RetryPolicy:
    """Waits for the fleet's request budget, or while Akool cannot be asked (no connection,
    1005, 429), do not count: they delay a submit, they prove nothing about it. Akool's own
    "try again later" about the job (1015, 1201, 1205) counts, up to SUBMIT_MAX_RETRIES."""
    return RetryPolicy(
        retry_on=(TransientError, SoftTimeLimitExceeded),
        wait=expected_back(store, settings, clock),
        max_retries=SUBMIT_MAX_RETRIES,
        uncounted=(AkoolRateLimited, AkoolRequestNotSent, AkoolBusy),
    )


def poll_policy(store: JobStore, settings: Settings, clock: Clock = wall_clock) -> RetryPolicy:
    """No ceiling here: the poll deadline (POLL_TIMEOUT_SECONDS) is the step's own, which
    asks Akool once more before it declares a timeout."""

    def next_poll(job_id: str, _retries: int, error: BaseException) -> float:
        # The poll schedule (backoff by polls made, clipped to the deadline), or the slot of
        # the request budget reserved for this poll; the sweeper is told when to expect it.
        if isinstance(error, PollAgain) and error.next_in is not None:
            return error.next_in  # planned and recorded by the poll itself
        schedule = poll_settings(settings, store.get(job_id))
        now = clock()
        if isinstance(error, SlotReserved):
            return plan_next_poll(store, job_id, schedule, now=now, reserved=error.retry_after)
        return plan_next_poll(store, job_id, schedule, now=now, at_least=extra_wait(error))

    return RetryPolicy(retry_on=(TransientError,), wait=next_poll)


def archive_policy(store: JobStore, settings: Settings, clock: Clock = wall_clock) -> RetryPolicy:
    """While Akool still has the video (its expires_at), an archive is worth trying again."""
    return RetryPolicy(
        retry_on=(TransientError, SoftTimeLimitExceeded),
        wait=expected_back(store, settings, clock),
        deadline=lambda job_id: archive_deadline(store.get(job_id)),
    )


def notify_policy(store: JobStore, clock: Clock = wall_clock) -> RetryPolicy:
    """The notification's backoff, up to NOTIFY_MAX_RETRIES; the job's outbox entry stays
    held by the task until its retry is due (plus the lease), and the job shows why it is
    not told yet."""
    backoff = exponential(NOTIFY_INITIAL_SECONDS, NOTIFY_MAX_SECONDS)

    def next_notice(job_id: str, retries: int, error: BaseException) -> float:
        delay = backoff(job_id, retries, error)
        store.outbox.hold(job_id, clock() + delay + NOTICE_LEASE_SECONDS)
        store.outbox.note(job_id, notify_error=str(error))
        return delay

    return RetryPolicy(retry_on=(TransientError,), wait=next_notice, max_retries=NOTIFY_MAX_RETRIES)
