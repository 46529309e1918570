"""Tests of worker.archiving's step with small fakes at the seams (store, archiver): one
copy, adopted objects, and what a failed copy waits on until the rule of proof says it is
gone (worker/waiting/proof.py)."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest

from tests.unit.step_fakes import NOW, RESULT, FakeArchiver, FakeStore, submitted
from worker.archive import Archiver, ArchiveResult
from worker.archiving import HEARTBEAT_INTERVAL_SECONDS, archive_step
from worker.errors import (
    DownloadError,
    JobStateError,
    PermanentError,
    SourceGoneError,
    SourceRefusedError,
    StorageError,
    StorageRefusedError,
    TransientError,
    VideoLost,
    WaitingOnArchive,
)
from worker.status import JobStatus, Wait
from worker.store.jobs import JobStore

GRACE = 3600.0


def archive(
    store: FakeStore, archiver: FakeArchiver, job_id: str, *, now: float, grace: float = GRACE
) -> str | None:
    return archive_step(
        cast(JobStore, store), cast(Archiver, archiver), job_id, clock=lambda: now, grace=grace
    )


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


def test_an_archived_job_is_not_copied_again(store: FakeStore) -> None:
    uri = "s3://videos/lipsync/x.mp4"
    job = submitted(store, status=JobStatus.ARCHIVED, result_url=RESULT, archive_uri=uri)
    archiver = FakeArchiver()
    assert archive(store, archiver, job.id, now=NOW) == uri
    assert archiver.calls == []


def test_a_failed_job_is_not_archived(store: FakeStore) -> None:
    job = submitted(store, status=JobStatus.FAILED, result_url=RESULT)
    archiver = FakeArchiver()
    assert archive(store, archiver, job.id, now=NOW) is None
    assert archiver.calls == []


def test_a_finished_job_is_copied_once_and_marked_archived(store: FakeStore) -> None:
    job = submitted(store, status=JobStatus.ARCHIVING, result_url=RESULT)
    archiver = FakeArchiver()
    uri = archive(store, archiver, job.id, now=NOW)
    assert uri == f"s3://videos/lipsync/{job.id}.mp4"
    assert archiver.calls == [(job.id, "akool-1", RESULT)]
    record = store.get(job.id)
    assert record.status == JobStatus.ARCHIVED
    assert record.archive_uri == uri
    assert record.archived_ts == NOW
    assert record.archive_bytes == 1234
    assert archive(store, archiver, job.id, now=NOW + 1) == uri
    assert len(archiver.calls) == 1


def test_a_first_archive_attempt_clears_nothing_in_s3(store: FakeStore) -> None:
    job = submitted(store, status=JobStatus.ARCHIVING, result_url=RESULT)
    archiver = FakeArchiver()
    archive(store, archiver, job.id, now=NOW)
    assert archiver.cleanups == []


def test_an_archive_attempt_after_a_stopped_one_clears_its_pending_upload_first(
    store: FakeStore,
) -> None:
    job = submitted(store, status=JobStatus.ARCHIVING, result_url=RESULT, archive_attempts=1)
    archiver = FakeArchiver()
    archive(store, archiver, job.id, now=NOW)
    assert archiver.cleanups == [job.id]
    assert archiver.calls == [(job.id, "akool-1", RESULT)]


class SlowArchiver(FakeArchiver):
    """A copy whose one read takes longer than a heartbeat interval (a slow file host)."""

    def archive(self, job_id: str, akool_id: str, url: str, **kwargs: Any) -> ArchiveResult:
        time.sleep(HEARTBEAT_INTERVAL_SECONDS * 2.5)
        return super().archive(job_id, akool_id, url, **kwargs)


def test_a_slow_copy_keeps_telling_the_sweeper_it_is_alive_between_reads(
    store: FakeStore,
) -> None:
    job = submitted(store, status=JobStatus.ARCHIVING, result_url=RESULT)
    store.dues.clear()
    beats: list[float] = []
    heartbeat = store.heartbeat

    def counted(job_id: str, due: float, **kwargs: Any) -> bool:
        beats.append(due)
        return heartbeat(job_id, due, **kwargs)

    store.heartbeat = counted  # type: ignore[method-assign]
    archive_step(cast(JobStore, store), cast(Archiver, SlowArchiver()), job.id, clock=lambda: NOW)
    # One at the start of the attempt, then one a second from the keep-alive thread.
    assert len(beats) >= 3


def test_a_job_without_a_result_url_cannot_be_archived(store: FakeStore) -> None:
    job = submitted(store, status=JobStatus.PROCESSING)
    archiver = FakeArchiver()
    with pytest.raises(JobStateError):
        archive(store, archiver, job.id, now=NOW)
    assert archiver.calls == []


def test_an_archive_already_stored_is_adopted_without_downloading(store: FakeStore) -> None:
    job = submitted(store, status="archiving", result_url="https://d1.cloudfront.net/x.mp4")
    key = f"lipsync/{job.id}.mp4"
    archiver = FakeArchiver(stored=ArchiveResult(f"s3://videos/{key}", "videos", key, 99, ""))

    uri = archive(store, archiver, job.id, now=NOW)

    assert uri == f"s3://videos/{key}" and archiver.calls == []
    assert store.get(job.id).status == "archived"


# --- what a failed copy waits on -----------------------------------------------------------

GONE = SourceGoneError("the result URL answers HTTP 404", status=404)


def test_a_404_makes_the_job_wait_on_the_file_and_try_again(store: FakeStore) -> None:
    job = submitted(store, status=JobStatus.ARCHIVING, result_url=RESULT)
    archiver = FakeArchiver(errors=[GONE])
    with pytest.raises(WaitingOnArchive) as info:
        archive(store, archiver, job.id, now=NOW)
    assert isinstance(info.value, TransientError) and info.value.__cause__ is GONE
    record = store.get(job.id)
    assert (record.status, record.wait_on, record.wait_tries) == (JobStatus.ARCHIVING, Wait.FILE, 1)
    assert record.waiting is not None and "HTTP 404; tried 1 time since" in record.waiting


def test_the_file_is_archived_once_it_is_served_and_the_wait_ends(store: FakeStore) -> None:
    job = submitted(store, status=JobStatus.ARCHIVING, result_url=RESULT)
    archiver = FakeArchiver(errors=[GONE, GONE])
    for when in (NOW, NOW + 5):
        with pytest.raises(WaitingOnArchive):
            archive(store, archiver, job.id, now=when)
    assert archive(store, archiver, job.id, now=NOW + 10) is not None
    record = store.get(job.id)
    assert (record.status, record.wait_on, record.waiting) == (JobStatus.ARCHIVED, None, None)


def test_gone_on_every_try_for_the_grace_fails_naming_the_grace_setting(store: FakeStore) -> None:
    job = submitted(store, status=JobStatus.ARCHIVING, result_url=RESULT)
    archiver = FakeArchiver(errors=[GONE, GONE, GONE])
    for when in (NOW, NOW + GRACE - 1):
        with pytest.raises(WaitingOnArchive):
            archive(store, archiver, job.id, now=when)
    with pytest.raises(VideoLost) as info:
        archive(store, archiver, job.id, now=NOW + GRACE)
    assert isinstance(info.value, PermanentError)
    assert "ARCHIVE_GONE_GRACE_SECONDS" in str(info.value) and "HTTP 404" in str(info.value)
    assert "3 tries" in str(info.value)


def test_a_gone_streak_broken_by_a_failing_download_starts_again(store: FakeStore) -> None:
    job = submitted(store, status=JobStatus.ARCHIVING, result_url=RESULT)
    broke = DownloadError("the file host answered HTTP 503", status=503)
    archiver = FakeArchiver(errors=[GONE, broke, GONE])
    for when in (NOW, NOW + 10, NOW + GRACE + 1):
        with pytest.raises(WaitingOnArchive):
            archive(store, archiver, job.id, now=when)
    assert store.get(job.id).wait_since_ts == NOW + GRACE + 1


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (DownloadError("the download broke off after 5 bytes"), Wait.DOWNLOAD),
        (StorageError("could not reach S3 to store s3://b/k"), Wait.STORAGE),
        (StorageRefusedError("S3 refused to store s3://b/k (AccessDenied)"), Wait.STORAGE),
    ],
)
def test_download_and_s3_failures_wait_whatever_their_length(
    store: FakeStore, error: Exception, kind: Wait
) -> None:
    job = submitted(store, status=JobStatus.ARCHIVING, result_url=RESULT)
    archiver = FakeArchiver(errors=[error, error])
    for when in (NOW, NOW + 10 * GRACE):
        with pytest.raises(WaitingOnArchive):
            archive(store, archiver, job.id, now=when)
    assert store.get(job.id).wait_on == kind


def test_our_own_refusal_of_a_result_url_is_not_a_wait(store: FakeStore) -> None:
    job = submitted(store, status=JobStatus.ARCHIVING, result_url=RESULT)
    refused = SourceRefusedError("the result URL's host is not in ARCHIVE_ALLOWED_HOSTS")
    with pytest.raises(SourceRefusedError):
        archive(store, FakeArchiver(errors=[refused]), job.id, now=NOW)
    assert store.get(job.id).wait_on is None


# --- a kind's extra result files ----------------------------------------------------------------

SRT_URL = "https://cdn.example/out.translated.srt"
BARE_URL = "https://cdn.example/out.no_caption.mp4"


def test_a_translations_extra_files_are_archived_beside_its_video_with_their_types(
    store: FakeStore,
) -> None:
    urls = {"translated_srt_url": SRT_URL, "no_caption_video_url": BARE_URL}
    job = submitted(
        store,
        status=JobStatus.ARCHIVING,
        result_url=RESULT,
        kind="video_translation",
        asset_urls=urls,
        archive_key="talks/17.mp4",
    )
    archiver = FakeArchiver()
    uri = archive(store, archiver, job.id, now=NOW)
    assert uri == "s3://videos/lipsync/talks/17.mp4"
    assert [call[2] for call in archiver.calls] == [RESULT, BARE_URL, SRT_URL]
    assert archiver.content_types == ["video/mp4", "video/mp4", "application/x-subrip"]
    assert store.get(job.id).assets == {
        "no_caption_video_url": "s3://videos/lipsync/talks/17.no_caption.mp4",
        "translated_srt_url": "s3://videos/lipsync/talks/17.translated.srt",
    }


def test_a_missing_extra_file_makes_the_job_wait_like_a_missing_video(store: FakeStore) -> None:
    job = submitted(
        store,
        status=JobStatus.ARCHIVING,
        result_url=RESULT,
        kind="video_translation",
        asset_urls={"original_srt_url": SRT_URL},
    )
    gone = SourceGoneError("the file is gone (HTTP 404 from its host)", url=SRT_URL)
    archiver = FakeArchiver(errors=[])
    original = archiver.archive

    def failing_on_the_srt(job_id: str, akool_id: str, url: str, **options: Any) -> ArchiveResult:
        if url == SRT_URL:
            raise gone
        return original(job_id, akool_id, url, **options)

    archiver.archive = failing_on_the_srt  # type: ignore[method-assign]
    with pytest.raises(WaitingOnArchive):
        archive(store, archiver, job.id, now=NOW)
    record = store.get(job.id)
    assert record.status == JobStatus.ARCHIVING and record.wait_on == Wait.FILE


def test_an_answer_that_names_no_extra_file_archives_the_video_alone(store: FakeStore) -> None:
    job = submitted(store, status=JobStatus.ARCHIVING, result_url=RESULT, kind="video_translation")
    archiver = FakeArchiver()
    archive(store, archiver, job.id, now=NOW)
    assert len(archiver.calls) == 1 and store.get(job.id).assets is None
