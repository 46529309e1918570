"""Tests of worker.api without Celery or Redis: waiting for a job to end, and what
submit_lipsync refuses before touching anything."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import pytest

from tests.unit.job_fakes import AUDIO, VIDEO, FakeStore, job
from worker import api, contract, deps
from worker.api import submit_lipsync, wait_until_final
from worker.status import JobStatus
from worker.store.jobs import Job, JobStore, new_job_id


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeEnding:
    """A subscription to a job's ending that never hears one: each wait takes its time."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def __enter__(self) -> FakeEnding:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def wait(self, seconds: float) -> bool:
        self.clock.sleep(seconds)
        return False


def wait(store: FakeStore, job_id: str, timeout: float, clock: FakeClock) -> Job:
    ending = FakeEnding(clock)
    return wait_until_final(cast(JobStore, store), job_id, timeout, ending=ending, clock=clock)


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
    # Between notifications it reads the record again at least every WAIT_RECHECK_SECONDS.
    assert max(clock.sleeps) <= api.WAIT_RECHECK_SECONDS


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


# --- which URLs submit_lipsync stores ---------------------------------------------------------


class RecordingStore:
    """The job store at submit_lipsync's seam: records what would be stored."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def insert(self, job: Job, *, due: float) -> str:
        self.created.append(dataclasses.asdict(job))
        return job.id

    def fail(self, job_id: str, error: str) -> bool:
        raise AssertionError(f"nothing should fail here: {error}")


class RecordingSignature:
    def __init__(self, sent: list[str], job_id: str) -> None:
        self.sent = sent
        self.job_id = job_id

    def apply_async(self) -> None:
        self.sent.append(self.job_id)


@pytest.fixture
def seams(monkeypatch: pytest.MonkeyPatch) -> tuple[RecordingStore, list[str]]:
    """A recording store and queue in place of Redis and Celery."""
    store, sent = RecordingStore(), []
    monkeypatch.setattr(deps, "job_store", lambda: store)
    monkeypatch.setattr(api, "pipeline_signature", lambda job_id: RecordingSignature(sent, job_id))
    return store, sent


URL_ARGUMENTS = ["video_url", "audio_url", "webhook_url", "notify_url"]
BASE = "https://example.invalid/v.mp4"
REFUSED_URLS = {
    "CR": "https://example.invalid/v\r.mp4",
    "LF": "https://example.invalid/v\n.mp4",
    "NUL": "https://example.invalid/v\x00.mp4",
    "ESC": "https://example.invalid/v\x1b.mp4",
    "DEL": "https://example.invalid/v\x7f.mp4",
    "C1": "https://example.invalid/v\x9b.mp4",
    "tab": "https://example.invalid/v\t.mp4",
    "leading-space": " " + BASE,
    "inner-space": "https://example.invalid/v .mp4",
    "trailing-space": BASE + " ",
    "trailing-newline": BASE + "\n",
    "no-break-space": "https://example.invalid/v\u00a0.mp4",
    "ideographic-space": "https://example.invalid/v\u3000.mp4",
    "userinfo": "https://user:pw@host/x",
    "user-only": "https://user@host/x",
    "userinfo-and-a-space": "https://user:pw@host/x y",
    "userinfo-and-a-bad-host": "https://user:pw@[::1/x",
    "8193-characters": BASE + "?" + "a" * (8192 - len(BASE)),
    "bad-ipv6-host": "https://[::1/x",
}


def submit_with(name: str, url: str) -> str:
    """submit_lipsync with `url` as the argument `name` and good values for the rest."""
    urls = {"video_url": VIDEO, "audio_url": AUDIO, name: url}
    return submit_lipsync(
        urls["video_url"],
        urls["audio_url"],
        urls.get("webhook_url"),
        notify_url=urls.get("notify_url"),
    )


@pytest.mark.parametrize("url", REFUSED_URLS.values(), ids=REFUSED_URLS.keys())
@pytest.mark.parametrize("name", URL_ARGUMENTS)
def test_submit_refuses_a_url_with_controls_whitespace_userinfo_or_over_8_kib_storing_nothing(
    name: str, url: str, seams: tuple[RecordingStore, list[str]]
) -> None:
    store, sent = seams
    with pytest.raises(ValueError, match=name) as caught:
        submit_with(name, url)
    assert (store.created, sent) == ([], [])
    message = str(caught.value)
    assert len(message) < 300 + len(name)
    assert ":pw@" not in message  # no credentials echoed


@pytest.mark.parametrize("name", URL_ARGUMENTS)
def test_submit_stores_an_8192_character_url_exactly_as_given(
    name: str, seams: tuple[RecordingStore, list[str]]
) -> None:
    store, sent = seams
    longest = BASE + "?" + "a" * (8191 - len(BASE))
    assert len(longest) == contract.MAX_URL_CHARS == 8192
    job_id = submit_with(name, longest)
    [created] = store.created
    assert created[name] == longest
    assert sent == [job_id]
