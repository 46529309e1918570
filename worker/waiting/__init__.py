"""One home for waiting: backoff, every task's retry policy (policy), the poll schedule
(schedule) and the rule of proof (proof), which says when a wait becomes a verdict.
"""

from __future__ import annotations

from worker.waiting import policy, proof, schedule
from worker.waiting.backoff import backoff_seconds, clip_to_deadline, exponential
from worker.waiting.policy import (
    RetryPolicy,
    archive_policy,
    decide,
    notify_policy,
    poll_policy,
    submit_policy,
)
from worker.waiting.schedule import (
    archive_deadline,
    next_poll_delay,
    plan_next_poll,
    poll_period,
    poll_settings,
    submit_stall_seconds,
    waiting_poll_delay,
)

__all__ = [
    "RetryPolicy",
    "archive_deadline",
    "archive_policy",
    "backoff_seconds",
    "clip_to_deadline",
    "decide",
    "exponential",
    "next_poll_delay",
    "notify_policy",
    "plan_next_poll",
    "policy",
    "poll_period",
    "poll_policy",
    "poll_settings",
    "proof",
    "schedule",
    "submit_policy",
    "submit_stall_seconds",
    "waiting_poll_delay",
]
