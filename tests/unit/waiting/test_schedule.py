"""Tests of worker.waiting.schedule: when the next poll is due, how webhooks stretch the
schedule, and how long an archive is worth retrying."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.step_fakes import AUDIO, NOW, RECEIVER, SETTINGS, VIDEO
from worker.config.settings import LONGEST_POLL_COUNTDOWN_SECONDS, Settings
from worker.status import JobStatus
from worker.store.jobs import Job, new_job_id
from worker.waiting.schedule import (
    ARCHIVE_FALLBACK_RETRY_SECONDS,
    archive_deadline,
    next_poll_delay,
    poll_period,
    poll_settings,
    waiting_poll_delay,
)


def a_job(**values: Any) -> Job:
    """A job record not held by any store (for the pure decisions)."""
    values.setdefault("id", new_job_id())
    values.setdefault("status", JobStatus.PROCESSING)
    return Job(video_url=VIDEO, audio_url=AUDIO, **values)


# --- next_poll_delay -------------------------------------------------------------------------


@pytest.mark.parametrize("polls", [0, 1, 2, 5, 20, 1000])
@pytest.mark.parametrize("left", [0.05, 0.5, 3.0, 30.0, 120.0, 10_000.0])
def test_the_next_poll_is_never_planned_past_the_deadline(polls: int, left: float) -> None:
    job = Job(
        id=new_job_id(),
        status=JobStatus.PROCESSING,
        video_url=VIDEO,
        audio_url=AUDIO,
        polls=polls,
        poll_deadline_ts=NOW + left,
    )
    for _ in range(20):
        delay = next_poll_delay(job, SETTINGS, now=NOW)
        assert 0 < delay <= left
        assert delay <= SETTINGS.poll_max_seconds


def test_the_first_poll_waits_about_the_initial_interval() -> None:
    job = Job(
        id=new_job_id(), status=JobStatus.SUBMITTED, video_url=VIDEO, audio_url=AUDIO, polls=1
    )
    for _ in range(20):
        delay = next_poll_delay(job, SETTINGS, now=NOW)
        assert SETTINGS.poll_initial_seconds / 2 <= delay <= SETTINGS.poll_initial_seconds


def test_a_poll_past_the_deadline_is_planned_almost_at_once() -> None:
    job = Job(
        id=new_job_id(),
        status=JobStatus.PROCESSING,
        video_url=VIDEO,
        audio_url=AUDIO,
        polls=3,
        poll_deadline_ts=NOW - 100,
    )
    assert next_poll_delay(job, SETTINGS, now=NOW) == 0.05


def test_with_webhooks_on_polls_wait_up_to_the_webhook_poll_max() -> None:
    settings = Settings(akool_webhook_url=RECEIVER, webhook_poll_max_seconds=600.0)
    assert poll_settings(settings, a_job()).poll_max_seconds == 600.0


def test_the_webhook_poll_max_is_capped_below_the_visibility_timeout() -> None:
    settings = Settings(akool_webhook_url=RECEIVER, webhook_poll_max_seconds=5000.0)
    assert poll_settings(settings, a_job()).poll_max_seconds == LONGEST_POLL_COUNTDOWN_SECONDS


def test_polls_keep_their_schedule_without_webhooks_or_with_the_callers_own() -> None:
    plain = Settings(webhook_poll_max_seconds=600.0)
    assert poll_settings(plain, a_job()) is plain
    hooked = Settings(akool_webhook_url=RECEIVER, webhook_poll_max_seconds=600.0)
    assert poll_settings(hooked, a_job(webhook_url="https://caller.example.com/cb")) is hooked


def test_each_job_is_polled_at_its_backoff_or_its_turn_in_the_queue() -> None:
    assert poll_period(100, 5.0, 60.0) == 60.0
    assert poll_period(1000, 5.0, 60.0) == 200.0


def test_a_job_waiting_on_akool_is_polled_at_the_schedules_ceiling() -> None:
    for _ in range(20):
        delay = waiting_poll_delay(SETTINGS)
        assert SETTINGS.poll_max_seconds / 2 <= delay <= SETTINGS.poll_max_seconds


def test_an_archive_is_retried_until_the_video_expires_or_a_day_when_that_is_unknown() -> None:
    assert archive_deadline(a_job(expires_ts=NOW + 5, completed_ts=NOW)) == NOW + 5
    unknown = a_job(completed_ts=NOW)
    assert archive_deadline(unknown) == NOW + ARCHIVE_FALLBACK_RETRY_SECONDS
