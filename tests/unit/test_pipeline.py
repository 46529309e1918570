"""Tests of worker.pipeline's steps with small fakes at the seams (store, client, archiver)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, cast

import pytest

from worker import messages
from worker.akool import AkoolClient, AkoolStatus
from worker.archive import Archiver, ArchiveResult
from worker.errors import (
    AkoolError,
    AkoolJobFailed,
    AkoolPermanentError,
    AkoolRateLimited,
    AkoolRequestNotSent,
    AkoolSubmitUnknown,
    AkoolTransientError,
    JobStateError,
    PermanentError,
    PollTimeout,
    StillProcessing,
    TransientError,
)
from worker.jobs import Job, JobStore, new_job_id
from worker.pipeline import (
    HEARTBEAT_INTERVAL_SECONDS,
    LONGEST_POLL_COUNTDOWN_SECONDS,
    archive_step,
    next_poll_delay,
    poll_settings,
    poll_step,
    submit_step,
    webhook_for,
)
from worker.settings import AKOOL_FILE_LIFETIME_SECONDS, Settings
from worker.status import FINAL_STATUSES, JobStatus

NOW = 1_700_000_000.0
TIMEOUT = 3600.0
SETTINGS = Settings(poll_initial_seconds=5.0, poll_max_seconds=60.0, poll_timeout_seconds=TIMEOUT)
VIDEO = "https://example.invalid/v.mp4"
AUDIO = "https://example.invalid/a.wav"
RESULT = "https://d1.cloudfront.net/out.mp4"
RECEIVER = "https://hooks.example.com/webhooks/akool"


class FakeStore:
    """The JobStore methods the pipeline uses, backed by a dict (final jobs never change)."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.releases = 0
        self.dues: dict[str, float] = {}

    def add(self, **values: Any) -> Job:
        values.setdefault("id", new_job_id())
        values.setdefault("status", JobStatus.QUEUED)
        values.setdefault("video_url", VIDEO)
        values.setdefault("audio_url", AUDIO)
        values.setdefault("created_ts", NOW - 10)
        job = Job(**values)
        self.jobs[job.id] = job
        return job

    def get(self, job_id: str) -> Job:
        return self.jobs[job_id]

    def update(self, job_id: str, *, due: float | None = None, **values: Any) -> bool:
        job = self.jobs[job_id]
        if job.status in FINAL_STATUSES:
            return False
        if due is not None:
            self.dues[job_id] = due
        values.setdefault("updated_ts", NOW)
        self.jobs[job_id] = dataclasses.replace(job, **values)
        return True

    def fail(self, job_id: str, error: str) -> bool:
        return self.update(job_id, status=JobStatus.FAILED, error=error)

    def update_without_akool_id(
        self, job_id: str, *, due: float | None = None, **values: Any
    ) -> bool:
        if self.jobs[job_id].akool_id:
            return False
        return self.update(job_id, due=due, **values)

    def claim_submit(self, job_id: str) -> bool:
        if self.jobs[job_id].submit_claimed_ts is not None:
            return False
        self.jobs[job_id] = dataclasses.replace(self.jobs[job_id], submit_claimed_ts=NOW)
        return True

    def release_submit(self, job_id: str) -> None:
        self.releases += 1
        self.jobs[job_id] = dataclasses.replace(self.jobs[job_id], submit_claimed_ts=None)

    def heartbeat(
        self,
        job_id: str,
        due: float,
        *,
        progress_bytes: int | None = None,
        total_bytes: int | None = None,
        archive_attempt: bool = False,
    ) -> None:
        self.dues[job_id] = due
        if archive_attempt:
            job = self.jobs[job_id]
            self.jobs[job_id] = dataclasses.replace(job, archive_attempts=job.archive_attempts + 1)

    @property
    def metrics(self) -> Any:
        return FakeMetrics()

    def count_poll(self, job_id: str) -> int:
        job = self.jobs[job_id]
        self.jobs[job_id] = dataclasses.replace(job, polls=job.polls + 1)
        return job.polls + 1

    def record_poll(
        self, job_id: str, akool_status: int, *, due: float | None = None, **values: Any
    ) -> bool:
        if self.jobs[job_id].status in FINAL_STATUSES:
            return False
        self.count_poll(job_id)
        return self.update(job_id, due=due, **values)


class FakeMetrics:
    """Metrics are best effort and not what these tests are about."""

    def archived(self, size: int, seconds: float, lag: float | None) -> None:
        pass


class FakeClient:
    """An AkoolClient stand-in answering from scripted results or errors, counting calls."""

    def __init__(
        self,
        *,
        akool_id: str = "akool-1",
        submit_errors: list[AkoolError] | None = None,
        statuses: list[AkoolStatus | AkoolError] | None = None,
    ) -> None:
        self.akool_id = akool_id
        self.submit_errors = list(submit_errors or [])
        self.statuses = list(statuses or [])
        self.submits: list[tuple[str, str, str | None]] = []
        self.polls: list[str] = []
        self.bookings: list[float] = []
        # How far ahead the request budget's next free slot is (0: no queue).
        self.queue_seconds = 0.0

    def submit(
        self,
        video_url: str,
        audio_url: str,
        webhook_url: str | None = None,
        *,
        before_send: Callable[[], None] | None = None,
    ) -> str:
        if before_send is not None:
            before_send()  # as the real client does, right before the POST leaves
        self.submits.append((video_url, audio_url, webhook_url))
        if self.submit_errors:
            raise self.submit_errors.pop(0)
        return self.akool_id

    def book_next(self, not_before: float) -> tuple[float, float | None]:
        self.bookings.append(not_before)
        if self.queue_seconds > not_before:  # the budget's queue is longer than the backoff
            return self.queue_seconds, NOW + self.queue_seconds
        return not_before, None

    def status(self, akool_id: str) -> AkoolStatus:
        self.polls.append(akool_id)
        answer = self.statuses.pop(0)
        if isinstance(answer, AkoolError):
            raise answer
        return answer


class FakeArchiver:
    """An Archiver stand-in that records what it was asked to copy."""

    def __init__(self, stored: ArchiveResult | None = None) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.cleanups: list[str] = []
        self.stored = stored

    def existing(self, job_id: str) -> ArchiveResult | None:
        return self.stored

    def abort_pending_uploads(self, job_id: str) -> int:
        self.cleanups.append(job_id)
        return 0

    def archive(
        self,
        job_id: str,
        akool_id: str,
        url: str,
        *,
        on_progress: Callable[[int, int | None], None] | None = None,
    ) -> ArchiveResult:
        self.calls.append((job_id, akool_id, url))
        if on_progress is not None:
            on_progress(1234, 1234)
        key = f"lipsync/{job_id}.mp4"
        return ArchiveResult(f"s3://videos/{key}", "videos", key, 1234, "0" * 64)


def submit(store: FakeStore, client: FakeClient, job_id: str, *, now: float) -> str | None:
    return submit_step(cast(JobStore, store), cast(AkoolClient, client), job_id, SETTINGS, now=now)


def poll(store: FakeStore, client: FakeClient, job_id: str, *, now: float) -> AkoolStatus | None:
    return poll_step(cast(JobStore, store), cast(AkoolClient, client), job_id, now=now)


def archive(store: FakeStore, archiver: FakeArchiver, job_id: str, *, now: float) -> str | None:
    return archive_step(cast(JobStore, store), cast(Archiver, archiver), job_id, now=now)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


def submitted(store: FakeStore, **values: Any) -> Job:
    values.setdefault("status", JobStatus.SUBMITTED)
    values.setdefault("akool_id", "akool-1")
    values.setdefault("submitted_ts", NOW - 60)
    values.setdefault("poll_deadline_ts", NOW - 60 + TIMEOUT)
    values.setdefault("submit_claimed_ts", NOW - 60)
    return store.add(**values)


# --- submit_step -----------------------------------------------------------------------------


def test_submit_sends_once_and_records_the_akool_id_and_deadlines(store: FakeStore) -> None:
    job = store.add(webhook_url="https://hooks.example/cb")
    client = FakeClient(akool_id="akool-42")
    assert submit(store, client, job.id, now=NOW) == "akool-42"
    assert client.submits == [(VIDEO, AUDIO, "https://hooks.example/cb")]
    record = store.get(job.id)
    assert record.status == JobStatus.SUBMITTED
    assert record.akool_id == "akool-42"
    assert record.submitted_ts == NOW
    assert record.expires_ts == NOW + 7 * 24 * 3600 == NOW + AKOOL_FILE_LIFETIME_SECONDS
    assert record.poll_deadline_ts == NOW + TIMEOUT
    assert record.submit_claimed_ts is not None


def test_a_repeated_submit_task_does_nothing_and_stops_its_chain(store: FakeStore) -> None:
    job = store.add()
    client = FakeClient(akool_id="akool-7")
    first = submit(store, client, job.id, now=NOW)
    second = submit(store, client, job.id, now=NOW + 5)
    assert first == "akool-7" and second is None
    assert len(client.submits) == 1
    assert store.get(job.id).akool_id == "akool-7"
    assert store.get(job.id).submitted_ts == NOW


@pytest.mark.parametrize("status", [JobStatus.ARCHIVED, JobStatus.FAILED])
def test_a_final_job_is_not_submitted(store: FakeStore, status: str) -> None:
    job = store.add(status=status)
    client = FakeClient()
    assert submit(store, client, job.id, now=NOW) is None
    assert client.submits == []


def test_a_taken_claim_without_an_akool_id_is_not_sent_again(store: FakeStore) -> None:
    job = store.add(submit_claimed_ts=NOW - 30)
    client = FakeClient()
    with pytest.raises(AkoolSubmitUnknown) as info:
        submit(store, client, job.id, now=NOW)
    assert isinstance(info.value, PermanentError)
    assert client.submits == []
    assert store.get(job.id).akool_id is None


def test_submit_answered_with_502_is_not_sent_again(store: FakeStore) -> None:
    job = store.add()
    client = FakeClient(submit_errors=[AkoolTransientError("HTTP 502", status=502)])
    with pytest.raises(AkoolSubmitUnknown) as info:
        submit(store, client, job.id, now=NOW)
    assert info.value.status == 502
    assert isinstance(info.value, PermanentError)
    assert store.get(job.id).submit_claimed_ts is not None
    assert store.releases == 0
    with pytest.raises(AkoolSubmitUnknown):
        submit(store, client, job.id, now=NOW + 60)
    assert len(client.submits) == 1


@pytest.mark.parametrize(
    "error",
    [
        AkoolTransientError("timed out"),
        AkoolTransientError("broke off", status=200),
        AkoolTransientError("not JSON", status=504),
    ],
)
def test_a_submit_that_may_have_reached_akool_is_not_repeated(
    store: FakeStore, error: AkoolError
) -> None:
    job = store.add()
    client = FakeClient(submit_errors=[error])
    with pytest.raises(AkoolSubmitUnknown):
        submit(store, client, job.id, now=NOW)
    assert store.get(job.id).submit_claimed_ts is not None


@pytest.mark.parametrize(
    "error",
    [
        AkoolTransientError("too frequent (code 1005)", code=1005),
        AkoolTransientError("HTTP 429", status=429),
        AkoolRequestNotSent("connection refused"),
    ],
    ids=["code-1005", "http-429", "not-sent"],
)
def test_a_submit_akool_certainly_did_not_take_is_retried_with_the_claim_released(
    store: FakeStore, error: AkoolError
) -> None:
    job = store.add()
    client = FakeClient(akool_id="akool-9", submit_errors=[error])
    with pytest.raises(AkoolTransientError) as info:
        submit(store, client, job.id, now=NOW)
    assert info.value is error
    assert not isinstance(info.value, AkoolSubmitUnknown)
    assert isinstance(info.value, TransientError)
    assert store.get(job.id).submit_claimed_ts is None
    assert store.releases == 1
    assert submit(store, client, job.id, now=NOW + 10) == "akool-9"
    assert len(client.submits) == 2


def test_a_submit_refused_with_a_permanent_code_fails_and_releases_the_claim(
    store: FakeStore,
) -> None:
    job = store.add()
    error = AkoolPermanentError("video longer than 60 s (code 1204)", code=1204)
    client = FakeClient(submit_errors=[error])
    with pytest.raises(AkoolPermanentError) as info:
        submit(store, client, job.id, now=NOW)
    assert info.value is error
    assert store.get(job.id).submit_claimed_ts is None
    assert store.get(job.id).akool_id is None


# --- poll_step -------------------------------------------------------------------------------


def test_a_poll_answered_status_4_fails_the_job(store: FakeStore) -> None:
    job = submitted(store)
    client = FakeClient(statuses=[AkoolStatus("akool-1", 4)])
    with pytest.raises(AkoolJobFailed) as info:
        poll(store, client, job.id, now=NOW)
    assert isinstance(info.value, PermanentError)
    assert client.polls == ["akool-1"]


def test_a_poll_answered_status_3_moves_the_job_to_archiving_with_its_result(
    store: FakeStore,
) -> None:
    job = submitted(store, status=JobStatus.PROCESSING)
    client = FakeClient(statuses=[AkoolStatus("akool-1", 3, RESULT)])
    status = poll(store, client, job.id, now=NOW)
    assert status == AkoolStatus("akool-1", 3, RESULT)
    record = store.get(job.id)
    assert record.status == JobStatus.ARCHIVING
    assert record.result_url == RESULT
    assert record.completed_ts == NOW
    assert record.polls == 1


@pytest.mark.parametrize("answer", [1, 2])
def test_a_poll_before_the_deadline_marks_the_job_processing(store: FakeStore, answer: int) -> None:
    job = submitted(store)
    client = FakeClient(statuses=[AkoolStatus("akool-1", answer)])
    status = poll(store, client, job.id, now=NOW)
    assert status is not None and status.status == answer
    assert store.get(job.id).status == JobStatus.PROCESSING
    assert store.get(job.id).polls == 1


def scheduled_poll(store: FakeStore, client: FakeClient, job_id: str) -> None:
    poll_step(
        cast(JobStore, store),
        cast(AkoolClient, client),
        job_id,
        now=NOW,
        stall=30.0,
        schedule=SETTINGS,
    )


def test_a_job_still_processing_gets_its_next_poll_after_the_backoff_in_the_same_write(
    store: FakeStore,
) -> None:
    job = submitted(store, status=JobStatus.PROCESSING, polls=3)
    client = FakeClient(statuses=[AkoolStatus("akool-1", 2)])
    with pytest.raises(StillProcessing) as info:
        scheduled_poll(store, client, job.id)
    # The 4th poll: backoff 5 x 2^3 = 40 s (+/- jitter), nothing booked (no queue).
    wait = info.value.next_in
    assert wait is not None and 20.0 <= wait <= 60.0
    assert info.value.reserved_at is None
    assert client.bookings == [wait]
    assert store.dues[job.id] == NOW + wait + 30.0
    assert store.get(job.id).polls == 4


def test_under_load_a_poll_books_its_next_slot_at_once(store: FakeStore) -> None:
    job = submitted(store, status=JobStatus.PROCESSING, polls=3)
    client = FakeClient(statuses=[AkoolStatus("akool-1", 2)])
    client.queue_seconds = 2000.0  # 10,000 jobs at 5 req/s
    with pytest.raises(StillProcessing) as info:
        scheduled_poll(store, client, job.id)
    assert info.value.next_in == 2000.0
    assert info.value.reserved_at == NOW + 2000.0
    assert store.dues[job.id] == NOW + 2000.0 + 30.0


def test_a_poll_past_its_deadline_books_no_slot(store: FakeStore) -> None:
    job = submitted(store, status=JobStatus.PROCESSING, poll_deadline_ts=NOW - 1)
    client = FakeClient(statuses=[AkoolStatus("akool-1", 2)])
    with pytest.raises(PollTimeout):
        scheduled_poll(store, client, job.id)
    assert client.bookings == []


def test_a_job_still_processing_past_the_deadline_times_out_after_one_last_poll(
    store: FakeStore,
) -> None:
    job = submitted(store, status=JobStatus.PROCESSING, poll_deadline_ts=NOW - 1)
    client = FakeClient(statuses=[AkoolStatus("akool-1", 2)])
    with pytest.raises(PollTimeout) as info:
        poll(store, client, job.id, now=NOW)
    assert isinstance(info.value, PermanentError)
    assert client.polls == ["akool-1"]
    assert "POLL_TIMEOUT_SECONDS" in str(info.value)


def test_a_job_finished_on_the_last_poll_past_the_deadline_is_not_timed_out(
    store: FakeStore,
) -> None:
    job = submitted(store, poll_deadline_ts=NOW - 1)
    client = FakeClient(statuses=[AkoolStatus("akool-1", 3, RESULT)])
    status = poll(store, client, job.id, now=NOW)
    assert status is not None and status.done
    assert store.get(job.id).status == JobStatus.ARCHIVING


def test_a_transient_poll_error_past_the_deadline_times_out(store: FakeStore) -> None:
    job = submitted(store, poll_deadline_ts=NOW - 1)
    client = FakeClient(statuses=[AkoolTransientError("HTTP 503", status=503)])
    with pytest.raises(PollTimeout):
        poll(store, client, job.id, now=NOW)
    assert client.polls == ["akool-1"]


def test_a_transient_poll_error_before_the_deadline_is_retried(store: FakeStore) -> None:
    job = submitted(store)
    error = AkoolTransientError("HTTP 503", status=503)
    client = FakeClient(statuses=[error])
    with pytest.raises(AkoolTransientError) as info:
        poll(store, client, job.id, now=NOW)
    assert info.value is error
    assert store.get(job.id).polls == 1


@pytest.mark.parametrize("status", [JobStatus.ARCHIVED, JobStatus.FAILED])
def test_a_final_job_is_not_polled(store: FakeStore, status: str) -> None:
    job = submitted(store, status=status)
    client = FakeClient()
    assert poll(store, client, job.id, now=NOW) is None
    assert client.polls == []


def test_a_job_with_a_result_is_not_polled_again(store: FakeStore) -> None:
    job = submitted(store, status=JobStatus.ARCHIVING, result_url=RESULT)
    client = FakeClient()
    assert poll(store, client, job.id, now=NOW) == AkoolStatus("akool-1", 3, RESULT)
    assert client.polls == []


def test_a_job_without_an_akool_id_cannot_be_polled(store: FakeStore) -> None:
    job = store.add()
    client = FakeClient()
    with pytest.raises(JobStateError):
        poll(store, client, job.id, now=NOW)
    assert client.polls == []


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


# --- archive_step ----------------------------------------------------------------------------


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

    def counted(job_id: str, due: float, **kwargs: Any) -> None:
        beats.append(due)
        heartbeat(job_id, due, **kwargs)

    store.heartbeat = counted  # type: ignore[method-assign]
    archive_step(cast(JobStore, store), cast(Archiver, SlowArchiver()), job.id, now=NOW)
    # One at the start of the attempt, then one a second from the keep-alive thread.
    assert len(beats) >= 3


def test_a_job_without_a_result_url_cannot_be_archived(store: FakeStore) -> None:
    job = submitted(store, status=JobStatus.PROCESSING)
    archiver = FakeArchiver()
    with pytest.raises(JobStateError):
        archive(store, archiver, job.id, now=NOW)
    assert archiver.calls == []


def test_a_submit_refused_by_the_request_budget_leaves_no_claim(store: FakeStore) -> None:
    job = store.add()
    client = FakeClient(submit_errors=[AkoolRateLimited("budget spent", retry_after=0.5)])

    with pytest.raises(AkoolRateLimited):
        submit(store, client, job.id, now=NOW)

    assert store.get(job.id).submit_claimed_ts is None
    assert submit(store, client, job.id, now=NOW + 1) == client.akool_id


def test_an_archive_already_stored_is_adopted_without_downloading(store: FakeStore) -> None:
    job = submitted(store, status="archiving", result_url="https://d1.cloudfront.net/x.mp4")
    key = f"lipsync/{job.id}.mp4"
    archiver = FakeArchiver(stored=ArchiveResult(f"s3://videos/{key}", "videos", key, 99, ""))

    uri = archive(store, archiver, job.id, now=NOW)

    assert uri == f"s3://videos/{key}" and archiver.calls == []
    assert store.get(job.id).status == "archived"


# --- webhooks on: what is sent to Akool and how often we poll ------------------------------------


def a_job(**values: Any) -> Job:
    """A job record not held by any store (for the pure decisions)."""
    values.setdefault("id", new_job_id())
    values.setdefault("status", JobStatus.PROCESSING)
    return Job(video_url=VIDEO, audio_url=AUDIO, **values)


def test_submit_names_our_receiver_unless_the_caller_gave_a_webhook_url() -> None:
    hooked = Settings(akool_webhook_url=RECEIVER)
    assert webhook_for(a_job(), hooked) == RECEIVER
    caller = "https://caller.example.com/cb"
    assert webhook_for(a_job(webhook_url=caller), hooked) == caller
    assert webhook_for(a_job(), Settings()) is None


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


# --- webhooks on: a submit whose answer was lost waits for the callback ---------------------------

TOKEN = "t" * 32
HOOKED = dataclasses.replace(
    SETTINGS, akool_webhook_url=RECEIVER, submit_unknown_wait_seconds=600.0
)


def submit_hooked(store: FakeStore, client: FakeClient, job_id: str) -> str | None:
    return submit_step(cast(JobStore, store), cast(AkoolClient, client), job_id, HOOKED, now=NOW)


def test_the_receiver_url_akool_is_given_names_the_job_and_its_token() -> None:
    job = a_job(webhook_token=TOKEN)
    assert webhook_for(job, HOOKED) == f"{RECEIVER}?job={job.id}&token={TOKEN}"
    caller = "https://caller.example.com/cb"
    assert webhook_for(a_job(webhook_url=caller, webhook_token=TOKEN), HOOKED) == caller
    assert webhook_for(a_job(webhook_token=TOKEN), SETTINGS) is None


def test_a_502_with_webhooks_on_makes_the_job_wait_for_its_callback_not_fail(
    store: FakeStore,
) -> None:
    job = store.add(webhook_token=TOKEN)
    client = FakeClient(submit_errors=[AkoolTransientError("HTTP 502", status=502)])

    assert submit_hooked(store, client, job.id) is None

    record = store.get(job.id)
    assert (record.status, record.akool_id, record.error) == (JobStatus.SUBMITTED, None, None)
    assert record.submit_unknown_ts == NOW
    assert "502" in (record.submit_unknown_reason or "")
    assert "not sent again" in (record.submit_unknown_reason or "")
    assert store.dues[job.id] == NOW + 600.0
    assert client.submits == [(VIDEO, AUDIO, f"{RECEIVER}?job={job.id}&token={TOKEN}")]


def test_a_waiting_job_is_never_sent_again_by_a_repeated_task(store: FakeStore) -> None:
    job = store.add(webhook_token=TOKEN)
    client = FakeClient(submit_errors=[AkoolTransientError("HTTP 502", status=502)])
    submit_hooked(store, client, job.id)
    waiting_since = store.get(job.id).submit_unknown_ts

    assert submit_hooked(store, client, job.id) is None

    assert len(client.submits) == 1
    assert store.get(job.id).submit_unknown_ts == waiting_since


def test_a_taken_claim_with_webhooks_on_waits_with_the_unknown_submit_sentence(
    store: FakeStore,
) -> None:
    job = store.add(webhook_token=TOKEN, submit_claimed_ts=NOW - 30)
    client = FakeClient()

    assert submit_hooked(store, client, job.id) is None

    assert client.submits == []
    record = store.get(job.id)
    assert record.submit_unknown_ts == NOW and record.status == JobStatus.SUBMITTED
    assert record.submit_unknown_reason == messages.SUBMIT_UNKNOWN


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"webhook_url": "https://caller.example.com/cb"}, id="callers-own-url"),
        pytest.param({"webhook_token": None}, id="stored-before-tokens"),
    ],
)
def test_a_502_fails_at_once_when_no_callback_could_name_the_job(
    store: FakeStore, values: dict[str, Any]
) -> None:
    job = store.add(**{"webhook_token": TOKEN, **values})
    client = FakeClient(submit_errors=[AkoolTransientError("HTTP 502", status=502)])

    with pytest.raises(AkoolSubmitUnknown):
        submit_hooked(store, client, job.id)

    assert store.get(job.id).submit_unknown_ts is None


def test_a_job_a_callback_named_during_the_submit_is_left_as_the_callback_made_it(
    store: FakeStore,
) -> None:
    job = store.add(webhook_token=TOKEN)

    class AdoptedWhileSending(FakeClient):
        def submit(self, *args: Any, **kwargs: Any) -> str:
            store.jobs[job.id] = dataclasses.replace(store.jobs[job.id], akool_id="akool-5")
            raise AkoolTransientError("timed out")

    assert submit_hooked(store, AdoptedWhileSending(), job.id) is None

    record = store.get(job.id)
    assert (record.akool_id, record.submit_unknown_ts) == ("akool-5", None)
