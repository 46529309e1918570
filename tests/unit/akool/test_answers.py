"""Tests of worker.akool.answers beyond the lookup's status: the extra result files a
completed answer names, and the reason Akool gives for a failure."""

from __future__ import annotations

from typing import Any

import pytest

from worker import messages
from worker.akool.answers import parse_status

URL = "http://127.0.0.1/api/open/v3/content/video/infobymodelid"
VIDEO = "https://cdn.example/out.mp4"
SPLITS = {
    "original_srt_url": "https://cdn.example/o.srt",
    "translated_srt_url": "https://cdn.example/t.srt",
    "no_caption_video_url": "https://cdn.example/n.mp4",
}


def test_a_completed_translation_names_its_extra_files_by_field() -> None:
    status = parse_status("a", {"video_status": 3, "video": VIDEO, "audio_splits": SPLITS}, URL)
    assert status.assets == SPLITS


@pytest.mark.parametrize(
    "splits",
    [
        [{"original_srt_url": SPLITS["original_srt_url"]}, {"translated_srt_url": "null"}],
        [{"original_srt_url": SPLITS["original_srt_url"], "translated_srt_url": 7}],
    ],
)
def test_extra_files_given_as_a_list_keep_only_usable_urls(splits: Any) -> None:
    data = {"video_status": 3, "video": VIDEO, "audio_splits": splits}
    assert parse_status("a", data, URL).assets == {"original_srt_url": SPLITS["original_srt_url"]}


@pytest.mark.parametrize("splits", [None, "x", 3, {}, [], [None], {"other": VIDEO}])
def test_an_answer_naming_no_usable_extra_file_has_none(splits: Any) -> None:
    data = {"video_status": 3, "video": VIDEO, "audio_splits": splits}
    assert parse_status("a", data, URL).assets == {}


def test_a_failure_carries_akools_code_and_reason_and_a_success_none() -> None:
    failed = parse_status(
        "a", {"video_status": 4, "error_code": "1203", "error_reason": "no speech"}, URL
    )
    assert (failed.error_code, failed.error_reason) == (1203, "no speech")
    done = parse_status("a", {"video_status": 3, "video": VIDEO, "error_code": 9}, URL)
    assert (done.error_code, done.error_reason) == (None, None)


@pytest.mark.parametrize("code", [True, 1.5, "12x", "-3", [], "9" * 20])
def test_a_failure_code_that_is_no_whole_number_is_left_out(code: Any) -> None:
    failed = parse_status("a", {"video_status": 4, "error_code": code}, URL)
    assert failed.error_code is None


def test_the_failure_sentence_quotes_a_bounded_reason_and_the_code() -> None:
    long = "x" * (messages.AKOOL_REASON_CHARS + 50)
    sentence = messages.akool_job_failed(1203, long)
    assert sentence.startswith("Akool reported that the job failed (video_status 4): xxx")
    assert sentence.endswith("... (error_code 1203)")
    assert len(sentence) < messages.AKOOL_REASON_CHARS + 100
    assert messages.akool_job_failed(None, None) == messages.AKOOL_JOB_FAILED
