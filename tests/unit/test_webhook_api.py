"""Tests of what comes with webhooks, without Celery or Redis: waiting for a job, being told
when it ends (on_complete, notify_url), the poll schedule with webhooks on, and the step an
operator's retry re-drives a job from."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
from celery import signature

from config.settings import Settings
from tests.postsink import PostSink, post_sink
from worker.api import submit_lipsync, wait_until_final
from worker.celery_app import AKOOL_QUEUE
from worker.devstack import free_port
from worker.jobs import ARCHIVED, FAILED, PROCESSING, QUEUED, Job, JobStore, new_job_id
from worker.notify import (
    NOTIFY_TASK,
    NotifyFailed,
    NotifyRefused,
    deliver,
    encode_on_complete,
    signatures_for,
)
from worker.pipeline import LONGEST_POLL_COUNTDOWN_SECONDS, poll_settings, webhook_for
from worker.sweeper import ARCHIVE, POLL, SUBMIT, retry_step

VIDEO = "https://example.invalid/v.mp4"
AUDIO = "https://example.invalid/a.wav"
RECEIVER = "https://hooks.example.com/webhooks/akool"


def job(**values: Any) -> Job:
    values.setdefault("id", new_job_id())
    values.setdefault("status", PROCESSING)
    return Job(video_url=VIDEO, audio_url=AUDIO, **values)


class FakeStore:
    """get() answers each snapshot in turn, then the last one again."""

    def __init__(self, *snapshots: Job) -> None:
        self.snapshots = list(snapshots)
        self.reads = 0

    def get(self, job_id: str) -> Job:
        if not self.snapshots or self.snapshots[0].id != job_id:
            raise KeyError(job_id)
        self.reads += 1
        return self.snapshots[min(self.reads, len(self.snapshots)) - 1]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def wait(store: FakeStore, job_id: str, timeout: float, clock: FakeClock) -> Job:
    return wait_until_final(cast(JobStore, store), job_id, timeout, sleep=clock.sleep, clock=clock)


# --- wait_for_job ------------------------------------------------------------------------------


def test_wait_returns_the_job_once_it_is_final() -> None:
    running = job()
    done = dataclasses.replace(running, status=ARCHIVED)
    clock = FakeClock()
    assert wait(FakeStore(running, running, done), running.id, 60, clock) == done
    assert len(clock.sleeps) == 2


def test_wait_raises_timeout_error_when_the_job_is_not_final_in_time() -> None:
    running = job()
    clock = FakeClock()
    with pytest.raises(TimeoutError, match="still processing after 5 s"):
        wait(FakeStore(running), running.id, 5, clock)
    assert clock.now == pytest.approx(5)
    assert max(clock.sleeps) <= 1.0  # reads at least once a second


def test_wait_raises_key_error_for_an_unknown_job() -> None:
    with pytest.raises(KeyError):
        wait(FakeStore(job()), new_job_id(), 5, FakeClock())


def test_wait_with_a_zero_timeout_reads_the_job_once() -> None:
    failed = job(status=FAILED)
    assert wait(FakeStore(failed), failed.id, 0, FakeClock()) == failed


@pytest.mark.parametrize("timeout", [-1.0, float("nan"), float("inf")])
def test_wait_refuses_a_timeout_that_is_not_a_finite_positive_number(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        wait(FakeStore(job()), "x", timeout, FakeClock())


# --- on_complete and notify_url ------------------------------------------------------------------


def test_on_complete_is_stored_as_the_json_of_its_signature() -> None:
    sig = signature("app.done", args=("extra",), queue="app-events")
    stored = json.loads(encode_on_complete(sig))
    assert stored["task"] == "app.done"
    assert stored["args"] == ["extra"]
    assert stored["options"] == {"queue": "app-events"}


@pytest.mark.parametrize("value", [{"args": []}, {"task": ""}, "app.done"])
def test_on_complete_that_is_not_a_signature_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="signature"):
        encode_on_complete(value)


def test_on_complete_that_json_cannot_carry_is_refused() -> None:
    with pytest.raises(ValueError, match="JSON"):
        encode_on_complete(signature("app.done", args=(object(),)))


def test_submit_refuses_a_notify_url_that_is_not_http_before_touching_anything() -> None:
    with pytest.raises(ValueError, match="notify_url"):
        submit_lipsync(VIDEO, AUDIO, notify_url="ftp://example.com/x")
    with pytest.raises(ValueError, match="on_complete"):
        submit_lipsync(VIDEO, AUDIO, on_complete={"no": "task"})


def test_an_ended_job_calls_its_signature_and_its_notify_task() -> None:
    ended = job(
        status=ARCHIVED,
        on_complete=encode_on_complete(signature("app.done", queue="app-events")),
        notify_url="http://127.0.0.1:9/hook",
    )
    sigs = signatures_for(ended)
    assert [s["task"] for s in sigs] == ["app.done", NOTIFY_TASK]
    assert sigs[1]["options"] == {"queue": AKOOL_QUEUE}


def test_a_job_without_either_calls_nothing_and_a_broken_signature_is_skipped() -> None:
    assert signatures_for(job(status=FAILED)) == []
    assert signatures_for(job(status=FAILED, on_complete="{not json")) == []


@pytest.fixture
def recorder() -> Iterator[tuple[str, type[PostSink]]]:
    with post_sink("/hook?token=app-secret") as sink:
        yield sink


def test_notify_posts_the_job_record_as_json(recorder: tuple[str, type[PostSink]]) -> None:
    url, handler = recorder
    ended = job(status=ARCHIVED, notify_url=url, archive_uri="s3://b/k.mp4")
    assert deliver(cast(JobStore, FakeStore(ended)), ended.id) == 200
    assert handler.bodies[0]["id"] == ended.id
    assert handler.bodies[0]["status"] == ARCHIVED
    assert handler.bodies[0]["archive_uri"] == "s3://b/k.mp4"


@pytest.mark.parametrize("status", [500, 503, 429])
def test_notify_answered_busy_is_worth_trying_again(
    recorder: tuple[str, type[PostSink]], status: int
) -> None:
    url, handler = recorder
    handler.answers.append(status)
    ended = job(status=FAILED, notify_url=url)
    with pytest.raises(NotifyFailed, match=str(status)) as caught:
        deliver(cast(JobStore, FakeStore(ended)), ended.id)
    assert "app-secret" not in str(caught.value)


@pytest.mark.parametrize("status", [301, 404, 410])
def test_notify_refused_is_not_tried_again(
    recorder: tuple[str, type[PostSink]], status: int
) -> None:
    url, handler = recorder
    handler.answers.append(status)
    ended = job(status=FAILED, notify_url=url)
    with pytest.raises(NotifyRefused, match=str(status)):
        deliver(cast(JobStore, FakeStore(ended)), ended.id)


def test_notify_url_nobody_listens_on_is_worth_trying_again() -> None:
    ended = job(status=FAILED, notify_url=f"http://127.0.0.1:{free_port()}/hook?token=s3cret")
    with pytest.raises(NotifyFailed, match="could not be reached") as caught:
        deliver(cast(JobStore, FakeStore(ended)), ended.id)
    assert "s3cret" not in str(caught.value)


def test_a_job_without_notify_url_posts_nothing() -> None:
    ended = job(status=FAILED)
    assert deliver(cast(JobStore, FakeStore(ended)), ended.id) is None


# --- webhooks on: what is sent to Akool and how often we poll ------------------------------------


def test_submit_names_our_receiver_unless_the_caller_gave_a_webhook_url() -> None:
    hooked = Settings(akool_webhook_url=RECEIVER)
    assert webhook_for(job(), hooked) == RECEIVER
    caller = "https://caller.example.com/cb"
    assert webhook_for(job(webhook_url=caller), hooked) == caller
    assert webhook_for(job(), Settings()) is None


def test_with_webhooks_on_polls_wait_up_to_the_webhook_poll_max() -> None:
    settings = Settings(akool_webhook_url=RECEIVER, webhook_poll_max_seconds=600.0)
    assert poll_settings(settings, job()).poll_max_seconds == 600.0


def test_the_webhook_poll_max_is_capped_below_the_visibility_timeout() -> None:
    settings = Settings(akool_webhook_url=RECEIVER, webhook_poll_max_seconds=5000.0)
    assert poll_settings(settings, job()).poll_max_seconds == LONGEST_POLL_COUNTDOWN_SECONDS


def test_polls_keep_their_schedule_without_webhooks_or_with_the_callers_own() -> None:
    plain = Settings(webhook_poll_max_seconds=600.0)
    assert poll_settings(plain, job()) is plain
    hooked = Settings(akool_webhook_url=RECEIVER, webhook_poll_max_seconds=600.0)
    assert poll_settings(hooked, job(webhook_url="https://caller.example.com/cb")) is hooked


# --- retry ------------------------------------------------------------------------------------


def test_retry_archives_a_job_with_a_result() -> None:
    assert retry_step(job(status=FAILED, akool_id="a", result_url="https://x/y")) == ARCHIVE


def test_retry_polls_a_job_akool_knows_and_never_submits_it_again() -> None:
    assert retry_step(job(status=FAILED, akool_id="a", submit_claimed_ts=1.0)) == POLL


def test_retry_submits_a_job_that_never_reached_akool() -> None:
    assert retry_step(job(status=FAILED)) == SUBMIT
    assert retry_step(job(status=QUEUED)) == SUBMIT


def test_retry_refuses_a_job_whose_submit_outcome_is_unknown() -> None:
    with pytest.raises(ValueError, match="outcome is unknown"):
        retry_step(job(status=FAILED, submit_claimed_ts=1.0))


def test_retry_refuses_an_archived_job() -> None:
    with pytest.raises(ValueError, match="archived"):
        retry_step(job(status=ARCHIVED, akool_id="a", result_url="https://x/y"))
