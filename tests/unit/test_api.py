"""Tests of worker.api without Celery or Redis: waiting for a job to end, and what
submit_lipsync refuses before touching anything."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import pytest

from worker.api import submit_lipsync, wait_until_final
from worker.jobs import Job, JobStore, new_job_id
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
    done = dataclasses.replace(running, status=JobStatus.ARCHIVED)
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
    failed = job(status=JobStatus.FAILED)
    assert wait(FakeStore(failed), failed.id, 0, FakeClock()) == failed


@pytest.mark.parametrize("timeout", [-1.0, float("nan"), float("inf")])
def test_wait_refuses_a_timeout_that_is_not_a_finite_positive_number(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        wait(FakeStore(job()), "x", timeout, FakeClock())


def test_submit_refuses_a_notify_url_that_is_not_http_before_touching_anything() -> None:
    with pytest.raises(ValueError, match="notify_url"):
        submit_lipsync(VIDEO, AUDIO, notify_url="ftp://example.com/x")
    with pytest.raises(ValueError, match="on_complete"):
        submit_lipsync(VIDEO, AUDIO, on_complete={"no": "task"})
