"""When a job's next poll is due, and how long each step may wait before it is retried.

The poll schedule is exponential backoff with jitter by polls made, from POLL_INITIAL_SECONDS
to POLL_MAX_SECONDS, clipped to the poll deadline (POLL_TIMEOUT_SECONDS); a job our webhook
receiver was told about is polled only as a safety net, up to WEBHOOK_POLL_MAX_SECONDS. A job
waiting on Akool is polled at the schedule's ceiling. An archive is retried until the video's
expires_at. The request budget may push any of these later (worker/akool/budget.py).
"""

from __future__ import annotations

import dataclasses

from worker.config import AKOOL_CONNECT_TIMEOUT_SECONDS, LONGEST_POLL_COUNTDOWN_SECONDS, Settings
from worker.store import Job, JobStore
from worker.waiting.backoff import MAX_DOUBLINGS, backoff_seconds, clip_to_deadline

# The backoff attempt whose wait is at its ceiling (POLL_MAX_SECONDS) whatever the settings:
# a job waiting on Akool is polled at that pace.
CEILING_ATTEMPT = MAX_DOUBLINGS
# Archive retries stop at the job's expires_at (the video is gone then) or after this long
# when that is unknown.
ARCHIVE_FALLBACK_RETRY_SECONDS = 24 * 3600


def submit_stall_seconds(settings: Settings) -> float:
    """How long a running submit may stay silent: its longest Akool call plus the margin."""
    return settings.akool_timeout_seconds + AKOOL_CONNECT_TIMEOUT_SECONDS + settings.stall_seconds


def poll_settings(settings: Settings, job: Job) -> Settings:
    """The settings that schedule this job's polls: with our webhook receiver told about the
    job, polling is only the safety net, so its longest interval is WEBHOOK_POLL_MAX_SECONDS
    (capped, like POLL_MAX_SECONDS, far below the broker's visibility timeout)."""
    if not settings.akool_webhook_url or job.webhook_url:
        return settings
    longest = max(settings.webhook_poll_max_seconds, settings.poll_initial_seconds)
    return dataclasses.replace(
        settings, poll_max_seconds=min(longest, LONGEST_POLL_COUNTDOWN_SECONDS)
    )


def next_poll_delay(job: Job, settings: Settings, *, now: float) -> float:
    """Seconds until the next poll: exponential backoff with jitter, never past the deadline."""
    delay = backoff_seconds(
        max(job.polls - 1, 0), settings.poll_initial_seconds, settings.poll_max_seconds
    )
    deadline = job.poll_deadline_ts if job.poll_deadline_ts is not None else now + delay
    return clip_to_deadline(delay, now, deadline)


def plan_next_poll(
    store: JobStore,
    job_id: str,
    settings: Settings,
    *,
    now: float,
    at_least: float = 0.0,
    reserved: float | None = None,
) -> float:
    """Choose the countdown to the next poll and tell the sweeper when to expect it.

    A poll that was due but holds a slot of the request budget `reserved` seconds ahead
    comes back exactly then: the slot is its turn, and the backoff already passed.
    """
    if reserved is not None:
        delay = reserved
    else:
        delay = max(next_poll_delay(store.get(job_id), settings, now=now), at_least)
    store.heartbeat(job_id, now + delay + settings.stall_seconds)
    return delay


def waiting_poll_delay(schedule: Settings) -> float:
    """How long a job waiting on Akool waits for its next poll: the schedule's longest
    interval (POLL_MAX_SECONDS), with jitter so waiting jobs do not all come back at once."""
    return backoff_seconds(
        CEILING_ATTEMPT, schedule.poll_initial_seconds, schedule.poll_max_seconds
    )


def poll_period(jobs_in_flight: int, rate_per_second: float, backoff: float) -> float:
    """About how often each job is polled when the budget is shared by `jobs_in_flight`
    polling jobs: the backoff, or each job's turn in the queue when that is longer."""
    return max(backoff, jobs_in_flight / rate_per_second)


def archive_deadline(job: Job) -> float:
    """Until when an archive is worth retrying: while Akool still has the video."""
    started = job.completed_ts or job.created_ts
    return job.expires_ts or started + ARCHIVE_FALLBACK_RETRY_SECONDS
