"""Tests of worker.sweeper without Redis: the step a job resumes from, the step a stalled
job is re-driven from, the step an operator's retry re-drives, and what a sweep and a retry
do to the store (a small fake at that seam)."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import pytest

from worker import messages
from worker.config.settings import Settings
from worker.names import Step
from worker.status import QUEUED_STALL_SECONDS, JobStatus
from worker.store.jobs import Job, JobStore, new_job_id
from worker.sweeper import (
    MAX_REDRIVE_DOUBLINGS,
    reopen_for_retry,
    resume_step,
    retry_step,
    stalled_step,
    sweep,
)

VIDEO = "https://example.invalid/v.mp4"
AUDIO = "https://example.invalid/a.wav"
RESULT = "https://d1.cloudfront.net/out.mp4"
NOW = 1_700_000_000.0
SETTINGS = Settings(stall_seconds=30.0, poll_timeout_seconds=3600.0)


def job(**values: Any) -> Job:
    values.setdefault("id", new_job_id())
    values.setdefault("status", JobStatus.PROCESSING)
    return Job(video_url=VIDEO, audio_url=AUDIO, **values)


class FakeOutbox:
    """Notifications due for delivery."""

    def __init__(self) -> None:
        self.due_ids: list[str] = []

    def due(self, now: float, limit: int = 500) -> list[str]:
        return self.due_ids[:limit]


class FakeStore:
    """The JobStore methods the sweeper uses, backed by dicts, recording what was asked."""

    def __init__(self, *jobs: Job, reopens: bool = True) -> None:
        self.jobs = {j.id: j for j in jobs}
        self.dues: dict[str, float] = {}
        self.reopens = reopens
        self.reopened: list[tuple[str, JobStatus, float, float | None]] = []
        self.fresh_urls: list[bool] = []
        self.forgotten_dues: list[str] = []
        self.outbox = FakeOutbox()

    def get(self, job_id: str) -> Job:
        return self.jobs[job_id]

    def read(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def update(self, job_id: str, *, due: float | None = None, **values: Any) -> bool:
        if due is not None:
            self.dues[job_id] = due
        self.jobs[job_id] = dataclasses.replace(self.jobs[job_id], **values)
        return True

    def fail(self, job_id: str, error: str) -> bool:
        return self.update(job_id, status=JobStatus.FAILED, error=error)

    def update_without_akool_id(
        self, job_id: str, *, due: float | None = None, **values: Any
    ) -> bool:
        if self.jobs[job_id].akool_id:
            return False
        return self.update(job_id, due=due, **values)

    def reopen(
        self,
        job_id: str,
        status: JobStatus,
        *,
        due: float,
        poll_deadline: float | None = None,
        fresh_url: bool = False,
    ) -> bool:
        self.reopened.append((job_id, status, due, poll_deadline))
        self.fresh_urls.append(fresh_url)
        return self.reopens

    def overdue(self, now: float, limit: int = 500) -> list[str]:
        return [job_id for job_id, due in self.dues.items() if due <= now][:limit]

    def forget_due(self, job_id: str) -> None:
        self.forgotten_dues.append(job_id)
        self.dues.pop(job_id, None)


def reopen(store: FakeStore, job_id: str) -> Step:
    return reopen_for_retry(cast(JobStore, store), SETTINGS, job_id, now=NOW)


def sweep_once(store: FakeStore, now: float = NOW) -> list[tuple[str, Step]]:
    redriven: list[tuple[str, Step]] = []
    sweep(cast(JobStore, store), SETTINGS, lambda j, s: redriven.append((j, s)), now=now)
    return redriven


# --- resume_step and stalled_step ------------------------------------------------------------


def test_a_job_with_a_result_url_resumes_at_its_archive() -> None:
    assert resume_step(job(status=JobStatus.ARCHIVING, akool_id="a", result_url=RESULT)) == (
        Step.ARCHIVE
    )


def test_a_job_akool_knows_without_a_result_resumes_at_polling() -> None:
    assert resume_step(job(status=JobStatus.SUBMITTED, akool_id="a")) == Step.POLL


def test_a_job_without_an_akool_id_resumes_at_its_submit_even_with_a_claim() -> None:
    assert resume_step(job(status=JobStatus.QUEUED)) == Step.SUBMIT
    assert resume_step(job(status=JobStatus.QUEUED, submit_claimed_ts=1.0)) == Step.SUBMIT


@pytest.mark.parametrize("status", [JobStatus.ARCHIVED, JobStatus.FAILED])
def test_a_final_job_is_never_redriven_by_the_sweeper(status: JobStatus) -> None:
    assert stalled_step(job(status=status, akool_id="a", result_url=RESULT)) is None
    assert stalled_step(job(status=status)) is None


@pytest.mark.parametrize(
    ("values", "step"),
    [
        ({"status": JobStatus.QUEUED}, Step.SUBMIT),
        ({"status": JobStatus.SUBMITTED, "akool_id": "a"}, Step.POLL),
        ({"status": JobStatus.PROCESSING, "akool_id": "a"}, Step.POLL),
        ({"status": JobStatus.ARCHIVING, "akool_id": "a", "result_url": RESULT}, Step.ARCHIVE),
    ],
)
def test_a_stalled_job_is_redriven_from_the_step_its_record_reached(
    values: dict[str, Any], step: Step
) -> None:
    assert stalled_step(job(**values)) == step


# --- retry ------------------------------------------------------------------------------------


def test_retry_of_a_job_failed_in_the_archive_polls_for_a_fresh_url() -> None:
    # The URL it failed with may be stale: Akool is asked again before a new download.
    assert (
        retry_step(job(status=JobStatus.FAILED, akool_id="a", result_url="https://x/y"))
        == Step.POLL
    )


def test_retry_of_a_stuck_archive_archives_it() -> None:
    assert (
        retry_step(job(status=JobStatus.ARCHIVING, akool_id="a", result_url="https://x/y"))
        == Step.ARCHIVE
    )


def test_retry_polls_a_job_akool_knows_and_never_submits_it_again() -> None:
    assert (
        retry_step(job(status=JobStatus.FAILED, akool_id="a", submit_claimed_ts=1.0)) == Step.POLL
    )


def test_retry_submits_a_job_that_never_reached_akool() -> None:
    assert retry_step(job(status=JobStatus.FAILED)) == Step.SUBMIT
    assert retry_step(job(status=JobStatus.QUEUED)) == Step.SUBMIT


def test_retry_refuses_a_job_whose_submit_outcome_is_unknown() -> None:
    with pytest.raises(ValueError, match="outcome is unknown"):
        retry_step(job(status=JobStatus.FAILED, submit_claimed_ts=1.0))


def test_retry_refuses_an_archived_job() -> None:
    with pytest.raises(ValueError, match="archived"):
        retry_step(job(status=JobStatus.ARCHIVED, akool_id="a", result_url="https://x/y"))


def test_retry_refuses_a_cancelled_job() -> None:
    with pytest.raises(ValueError, match="cancelled"):
        retry_step(job(status=JobStatus.CANCELLED, akool_id="a"))


# --- reopen_for_retry ------------------------------------------------------------------------


def test_a_failed_poll_is_reopened_with_a_whole_new_poll_window() -> None:
    failed = job(status=JobStatus.FAILED, akool_id="a", submit_claimed_ts=1.0)
    store = FakeStore(failed)
    assert reopen(store, failed.id) == Step.POLL
    assert store.reopened == [
        (failed.id, JobStatus.PROCESSING, NOW + SETTINGS.stall_seconds, NOW + 3600.0)
    ]


def test_a_failed_archive_is_reopened_for_a_poll_that_asks_akool_for_a_fresh_url() -> None:
    failed = job(status=JobStatus.FAILED, akool_id="a", result_url=RESULT)
    store = FakeStore(failed)
    assert reopen(store, failed.id) == Step.POLL
    assert store.reopened == [
        (failed.id, JobStatus.PROCESSING, NOW + SETTINGS.stall_seconds, NOW + 3600.0)
    ]
    assert store.fresh_urls == [True]


def test_a_failed_job_that_never_reached_akool_is_queued_again_for_the_queued_stall() -> None:
    failed = job(status=JobStatus.FAILED)
    store = FakeStore(failed)
    assert reopen(store, failed.id) == Step.SUBMIT
    assert store.reopened == [(failed.id, JobStatus.QUEUED, NOW + QUEUED_STALL_SECONDS, None)]


def test_a_stuck_job_that_has_not_failed_is_only_made_due_again() -> None:
    stuck = job(status=JobStatus.PROCESSING, akool_id="a", redrives=4)
    store = FakeStore(stuck)
    assert reopen(store, stuck.id) == Step.POLL
    assert store.dues == {stuck.id: NOW + SETTINGS.stall_seconds}
    assert store.get(stuck.id).redrives == 0
    assert store.reopened == []


def test_a_job_that_changed_while_being_retried_is_refused() -> None:
    failed = job(status=JobStatus.FAILED, akool_id="a")
    store = FakeStore(failed, reopens=False)
    with pytest.raises(ValueError, match="changed while being retried"):
        reopen(store, failed.id)


def test_retrying_an_unknown_job_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        reopen(FakeStore(), new_job_id())


# --- sweep -------------------------------------------------------------------------------------


def test_an_overdue_job_whose_record_expired_is_dropped_from_the_due_set() -> None:
    store = FakeStore()
    gone = new_job_id()
    store.dues[gone] = NOW - 1
    assert sweep_once(store) == []
    assert store.forgotten_dues == [gone]


def test_a_final_job_left_in_the_due_set_is_dropped_not_redriven() -> None:
    done = job(status=JobStatus.ARCHIVED, akool_id="a", result_url=RESULT)
    store = FakeStore(done)
    store.dues[done.id] = NOW - 1
    assert sweep_once(store) == []
    assert store.forgotten_dues == [done.id]


def test_a_job_with_an_unknown_submit_is_failed_with_its_sentence_not_redriven() -> None:
    claimed = job(status=JobStatus.QUEUED, submit_claimed_ts=1.0)
    store = FakeStore(claimed)
    store.dues[claimed.id] = NOW - 1
    assert sweep_once(store) == []
    assert store.get(claimed.id).status == JobStatus.FAILED
    assert store.get(claimed.id).error == messages.SUBMIT_UNKNOWN


def test_the_redrive_backoff_stops_doubling_at_its_cap() -> None:
    slow = job(status=JobStatus.PROCESSING, akool_id="a", redrives=MAX_REDRIVE_DOUBLINGS + 3)
    store = FakeStore(slow)
    store.dues[slow.id] = NOW - 1
    assert sweep_once(store) == [(slow.id, Step.POLL)]
    assert store.dues[slow.id] == NOW + SETTINGS.stall_seconds * 2**MAX_REDRIVE_DOUBLINGS
    assert store.get(slow.id).redrives == MAX_REDRIVE_DOUBLINGS + 4


def test_a_sweep_announces_the_jobs_it_failed_and_the_notifications_left_due() -> None:
    unknown = job(status=JobStatus.SUBMITTED, submit_claimed_ts=1.0)
    store = FakeStore(unknown)
    store.dues[unknown.id] = NOW - 1
    store.outbox.due_ids = ["left-by-a-dead-worker"]
    announced: list[str] = []
    sweep(cast(JobStore, store), SETTINGS, lambda *_: None, announce=announced.append, now=NOW)
    assert announced == [unknown.id, "left-by-a-dead-worker"]


# --- an unknown submit, with webhooks on: wait for the callback, then fail -------------------

HOOKED = dataclasses.replace(
    SETTINGS,
    akool_webhook_url="https://hooks.example.com/webhooks/akool",
    submit_unknown_wait_seconds=600.0,
)


def sweep_hooked(store: FakeStore, now: float = NOW) -> list[str]:
    result = sweep(cast(JobStore, store), HOOKED, lambda *_: None, now=now)
    assert result.redriven == []
    return result.failed


def test_a_lost_submit_found_by_the_sweeper_waits_for_its_callback_with_webhooks_on() -> None:
    claimed = job(status=JobStatus.QUEUED, submit_claimed_ts=1.0, webhook_token="t" * 32)
    store = FakeStore(claimed)
    store.dues[claimed.id] = NOW - 1

    assert sweep_hooked(store) == []

    record = store.get(claimed.id)
    assert (record.status, record.submit_unknown_ts) == (JobStatus.SUBMITTED, NOW)
    assert record.submit_unknown_reason == messages.SUBMIT_UNKNOWN
    assert store.dues[claimed.id] == NOW + 600.0


def test_the_end_of_the_wait_fails_the_job_saying_its_outcome_is_unknown() -> None:
    reason = "the submit to Akool failed (HTTP 502); ... not sent again to avoid paying twice"
    waiting = job(
        status=JobStatus.SUBMITTED,
        submit_claimed_ts=NOW - 700,
        webhook_token="t" * 32,
        submit_unknown_ts=NOW - 600,
        submit_unknown_reason=reason,
    )
    store = FakeStore(waiting)
    store.dues[waiting.id] = NOW - 1

    assert sweep_hooked(store) == [waiting.id]

    record = store.get(waiting.id)
    assert record.status == JobStatus.FAILED
    assert record.error == messages.submit_wait_ended(reason, 600.0)
    assert record.error.startswith(reason) and "SUBMIT_UNKNOWN_WAIT_SECONDS" in record.error


def test_a_wait_made_longer_since_it_began_is_not_cut_short() -> None:
    waiting = job(
        status=JobStatus.SUBMITTED, submit_claimed_ts=1.0, webhook_token="t", submit_unknown_ts=NOW
    )
    store = FakeStore(waiting)
    store.dues[waiting.id] = NOW + 10  # due by the older, shorter wait

    assert sweep_hooked(store, now=NOW + 20) == []

    assert store.get(waiting.id).status == JobStatus.SUBMITTED
    assert store.dues[waiting.id] == NOW + 600.0


def test_a_job_a_callback_adopted_is_never_failed_by_the_end_of_its_wait() -> None:
    adopted = job(status=JobStatus.SUBMITTED, submit_claimed_ts=1.0, submit_unknown_ts=NOW - 900)
    store = FakeStore(adopted)
    store.dues[adopted.id] = NOW - 1
    # The sweeper read the job without an Akool id; a callback gives it one before the write.
    store.jobs[adopted.id] = dataclasses.replace(adopted, akool_id="akool-1")
    store.read = lambda job_id: adopted  # type: ignore[method-assign]

    assert sweep_hooked(store) == []

    assert store.get(adopted.id).status == JobStatus.SUBMITTED
