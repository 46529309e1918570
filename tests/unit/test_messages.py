"""Tests of worker.messages: the sentences a user reads on a failed job never carry a
stranger's text (it could hold a URL with a token, or a secret)."""

from __future__ import annotations

import pytest

from worker import messages
from worker.errors import (
    AkoolAuthError,
    AkoolTransientError,
    DownloadError,
    LipsyncError,
    PollTimeout,
    StoreUnavailable,
)

SECRET_URL = "https://files.example.com/out.mp4?X-Amz-Signature=s3cr3t-token"


@pytest.mark.parametrize(
    "error",
    [
        LipsyncError("the job could not be found"),
        AkoolAuthError("Akool refused the API key (code 1101)", code=1101),
        AkoolTransientError("Akool answered 503; it may be busy", status=503),
        DownloadError("the download broke off after 12 MiB", url=SECRET_URL),
        PollTimeout("Akool had not finished the job after 3600 s"),
        StoreUnavailable("Redis could not be reached"),
    ],
)
def test_a_lipsync_error_gives_its_own_sentence(error: LipsyncError) -> None:
    assert messages.failure(error) == str(error)
    assert SECRET_URL not in messages.failure(error)


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError(f"GET {SECRET_URL} failed"),
        ValueError("password=hunter2"),
        KeyError("s3cr3t-token"),
        OSError(111, "Connection refused to https://user:hunter2@example.com/"),
    ],
)
def test_any_other_exception_names_only_its_type_never_its_text(error: Exception) -> None:
    sentence = messages.failure(error)
    assert type(error).__name__ in sentence
    for secret in ("s3cr3t-token", "hunter2", "example.com"):
        assert secret not in sentence
    assert sentence == messages.failure(type(error)())


def test_an_unexpected_error_points_to_the_log() -> None:
    assert messages.failure(RuntimeError("x")) == (
        "an unexpected error (RuntimeError) stopped the job; see the log"
    )


def test_a_job_that_could_not_be_queued_names_only_the_errors_type() -> None:
    sentence = messages.not_queued(ConnectionError(f"broker at {SECRET_URL} refused"))
    assert sentence == "the job could not be queued (ConnectionError)"


def test_a_submit_that_may_have_reached_akool_says_it_was_not_sent_again() -> None:
    sentence = messages.submit_maybe_created(AkoolTransientError("Akool answered 502"))
    assert "Akool answered 502" in sentence
    assert "not sent again" in sentence and "paying twice" in sentence


def test_a_poll_timeout_names_the_seconds_waited_and_its_setting() -> None:
    sentence = messages.poll_timeout(3599.6, "the last poll said processing")
    assert sentence.startswith("Akool had not finished the job after 3600 s")
    assert "POLL_TIMEOUT_SECONDS" in sentence
    assert sentence.endswith("the last poll said processing")
