"""Tests of worker.notify without Celery or Redis: how on_complete is stored, what an ended
job calls, and how its record is posted to notify_url."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
from celery import signature

from tests.postsink import PostSink, post_sink
from worker.celery_app import AKOOL_QUEUE
from worker.dev.stack import free_port
from worker.jobs import Job, JobStore, new_job_id
from worker.notify import (
    NOTIFY_TASK,
    NotifyFailed,
    NotifyRefused,
    deliver,
    encode_on_complete,
    signatures_for,
)
from worker.status import JobStatus

VIDEO = "https://example.invalid/v.mp4"
AUDIO = "https://example.invalid/a.wav"


def job(**values: Any) -> Job:
    values.setdefault("id", new_job_id())
    values.setdefault("status", JobStatus.PROCESSING)
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


def test_an_ended_job_calls_its_signature_and_its_notify_task() -> None:
    ended = job(
        status=JobStatus.ARCHIVED,
        on_complete=encode_on_complete(signature("app.done", queue="app-events")),
        notify_url="http://127.0.0.1:9/hook",
    )
    sigs = signatures_for(ended)
    assert [s["task"] for s in sigs] == ["app.done", NOTIFY_TASK]
    assert sigs[1]["options"] == {"queue": AKOOL_QUEUE}


def test_a_job_without_either_calls_nothing_and_a_broken_signature_is_skipped() -> None:
    assert signatures_for(job(status=JobStatus.FAILED)) == []
    assert signatures_for(job(status=JobStatus.FAILED, on_complete="{not json")) == []


@pytest.fixture
def recorder() -> Iterator[tuple[str, type[PostSink]]]:
    with post_sink("/hook?token=app-secret") as sink:
        yield sink


def test_notify_posts_the_job_record_as_json(recorder: tuple[str, type[PostSink]]) -> None:
    url, handler = recorder
    ended = job(status=JobStatus.ARCHIVED, notify_url=url, archive_uri="s3://b/k.mp4")
    assert deliver(cast(JobStore, FakeStore(ended)), ended.id) == 200
    assert handler.bodies[0]["id"] == ended.id
    assert handler.bodies[0]["status"] == JobStatus.ARCHIVED
    assert handler.bodies[0]["archive_uri"] == "s3://b/k.mp4"


@pytest.mark.parametrize("status", [500, 503, 429])
def test_notify_answered_busy_is_worth_trying_again(
    recorder: tuple[str, type[PostSink]], status: int
) -> None:
    url, handler = recorder
    handler.answers.append(status)
    ended = job(status=JobStatus.FAILED, notify_url=url)
    with pytest.raises(NotifyFailed, match=str(status)) as caught:
        deliver(cast(JobStore, FakeStore(ended)), ended.id)
    assert "app-secret" not in str(caught.value)


@pytest.mark.parametrize("status", [301, 404, 410])
def test_notify_refused_is_not_tried_again(
    recorder: tuple[str, type[PostSink]], status: int
) -> None:
    url, handler = recorder
    handler.answers.append(status)
    ended = job(status=JobStatus.FAILED, notify_url=url)
    with pytest.raises(NotifyRefused, match=str(status)):
        deliver(cast(JobStore, FakeStore(ended)), ended.id)


def test_notify_url_nobody_listens_on_is_worth_trying_again() -> None:
    ended = job(
        status=JobStatus.FAILED, notify_url=f"http://127.0.0.1:{free_port()}/hook?token=s3cret"
    )
    with pytest.raises(NotifyFailed, match="could not be reached") as caught:
        deliver(cast(JobStore, FakeStore(ended)), ended.id)
    assert "s3cret" not in str(caught.value)


def test_a_job_without_notify_url_posts_nothing() -> None:
    ended = job(status=JobStatus.FAILED)
    assert deliver(cast(JobStore, FakeStore(ended)), ended.id) is None
