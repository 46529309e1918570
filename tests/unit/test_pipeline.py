"""Tests of worker.pipeline's submit and poll steps with small fakes at the seams (store,
client): what is sent, what is recorded, and what is proof (worker/waiting/proof.py)."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import pytest

from tests.unit.step_fakes import (
    AUDIO,
    NOW,
    RECEIVER,
    RESULT,
    SETTINGS,
    TIMEOUT,
    VIDEO,
    FakeClient,
    FakeStore,
    submitted,
)
from worker.akool.client import AkoolClient, AkoolStatus
from worker.config.settings import AKOOL_FILE_LIFETIME_SECONDS, Settings
from worker.errors import (
    AkoolAuthError,
    AkoolBusy,
    AkoolDoneWithoutUrl,
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
    VideoLost,
    WaitingOnAkool,
)
from worker.pipeline import poll_step, submit_step, webhook_for
from worker.status import JobStatus, Wait
from worker.store.jobs import Job, JobStore, new_job_id


def submit(
    store: FakeStore, client: FakeClient, job_id: str, *, now: float, token: str = "run-1"
) -> str | None:
    return submit_step(
        cast(JobStore, store),
        cast(AkoolClient, client),
        job_id,
        SETTINGS,
        clock=lambda: now,
        token=token,
    )


def poll(store: FakeStore, client: FakeClient, job_id: str, *, now: float) -> AkoolStatus | None:
    return poll_step(cast(JobStore, store), cast(AkoolClient, client), job_id, clock=lambda: now)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


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


def test_a_job_of_another_kind_is_sent_with_its_own_body_and_recorded_alike(
    store: FakeStore,
) -> None:
    body = {"talking_photo_url": "https://cdn.example/p.png", "audio_url": AUDIO}
    job = store.add(kind="talking_photo", body=body, video_url="", audio_url="")
    client = FakeClient(akool_id="akool-tp")
    assert submit(store, client, job.id, now=NOW) == "akool-tp"
    assert client.submits == []
    assert client.kind_submits == [("talking_photo", body, None)]
    record = store.get(job.id)
    assert (record.status, record.akool_id) == (JobStatus.SUBMITTED, "akool-tp")


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


def test_a_claim_held_by_another_run_is_left_to_it_and_nothing_is_sent(store: FakeStore) -> None:
    job = store.add(submit_claimed_ts=NOW - 30, submit_claim="run-1")
    client = FakeClient()
    assert submit(store, client, job.id, now=NOW, token="run-2") is None
    assert client.submits == []
    record = store.get(job.id)
    assert (record.akool_id, record.error, record.submit_claim) == (None, None, "run-1")


def test_a_redelivered_run_finding_a_claim_leaves_the_verdict_to_the_sweeper(
    store: FakeStore,
) -> None:
    # Whether the claim is its own earlier run's or another's, its POST may be in flight.
    job = store.add(submit_claimed_ts=NOW - 30, submit_claim=None)
    client = FakeClient()
    assert submit(store, client, job.id, now=NOW) is None
    assert client.submits == [] and store.get(job.id).status == JobStatus.QUEUED


def test_a_run_that_loses_the_race_for_the_claim_sends_nothing(store: FakeStore) -> None:
    job = store.add()

    class ClaimedMeanwhile(FakeClient):
        def submit(self, *args: Any, before_send: Any = None, **kwargs: Any) -> str:
            store.claim_submit(job.id, "run-1")  # another run, between the read and the send
            return super().submit(*args, before_send=before_send, **kwargs)

    client = ClaimedMeanwhile()
    assert submit(store, client, job.id, now=NOW, token="run-2") is None
    assert client.submits == []
    assert store.get(job.id).submit_claim == "run-1"


def test_a_run_refused_by_the_budget_never_gives_back_another_runs_claim(
    store: FakeStore,
) -> None:
    # A duplicate task that got past the read before the first run claimed: the budget
    # refuses it a slot (nothing sent), and the first run's claim stays.
    job = store.add()

    class FirstRunClaims(FakeClient):
        def submit(self, *args: Any, **kwargs: Any) -> str:
            store.claim_submit(job.id, "run-1")
            raise AkoolRateLimited("budget spent", retry_after=0.2)

    with pytest.raises(AkoolRateLimited):
        submit(store, FirstRunClaims(), job.id, now=NOW, token="run-2")
    assert store.get(job.id).submit_claim == "run-1"
    assert store.releases == 0


def test_only_the_run_that_took_the_claim_gives_it_back(store: FakeStore) -> None:
    job = store.add()
    store.claim_submit(job.id, "run-1")
    assert store.release_submit(job.id, "run-2") is False
    assert store.get(job.id).submit_claim == "run-1"


def test_submit_answered_with_502_is_not_sent_again(store: FakeStore) -> None:
    job = store.add()
    client = FakeClient(submit_errors=[AkoolTransientError("HTTP 502", status=502)])
    with pytest.raises(AkoolSubmitUnknown) as info:
        submit(store, client, job.id, now=NOW)
    assert info.value.status == 502
    assert isinstance(info.value, PermanentError)
    assert store.get(job.id).submit_claimed_ts is not None
    assert store.releases == 0
    assert submit(store, client, job.id, now=NOW + 60) is None  # the claim stays: no resend
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
        AkoolBusy("too frequent (code 1005)", code=1005),
        AkoolBusy("HTTP 429", status=429),
        AkoolTransientError("HTTP 429", status=429),
        AkoolRequestNotSent("connection refused"),
    ],
    ids=["code-1005", "http-429", "plain-429", "not-sent"],
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
    assert store.get(job.id).wait_on == Wait.AKOOL  # shown while Akool cannot take it
    assert submit(store, client, job.id, now=NOW + 10) == "akool-9"
    assert len(client.submits) == 2
    assert store.get(job.id).waiting is None


def test_a_token_fetch_failing_before_the_claim_proves_nothing_was_sent(store: FakeStore) -> None:
    # The submit never left: a 503 to getToken is not an ambiguous submit.
    job = store.add()
    error = AkoolTransientError("Akool answered HTTP 503", status=503)
    client = FakeClient(unsent_errors=[error])
    with pytest.raises(AkoolTransientError) as info:
        submit(store, client, job.id, now=NOW)
    assert info.value is error
    record = store.get(job.id)
    assert (record.submit_claimed_ts, record.wait_on) == (None, Wait.AKOOL)
    assert "HTTP 503" in (record.waiting or "")


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
        clock=lambda: NOW,
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


def test_a_poll_without_an_answer_past_the_deadline_is_not_a_timeout(store: FakeStore) -> None:
    job = submitted(store, poll_deadline_ts=NOW - 1)
    client = FakeClient(statuses=[AkoolTransientError("Akool answered HTTP 503", status=503)])
    with pytest.raises(WaitingOnAkool):
        poll(store, client, job.id, now=NOW)
    record = store.get(job.id)
    assert not record.is_final and record.wait_on == Wait.AKOOL
    assert client.polls == ["akool-1"]


def test_a_transient_poll_error_makes_the_job_wait_on_akool_and_poll_again(
    store: FakeStore,
) -> None:
    job = submitted(store)
    error = AkoolTransientError("Akool answered HTTP 503", status=503)
    client = FakeClient(statuses=[error])
    with pytest.raises(WaitingOnAkool) as info:
        poll(store, client, job.id, now=NOW)
    assert info.value.__cause__ is error and isinstance(info.value, TransientError)
    record = store.get(job.id)
    assert record.polls == 1
    assert (record.wait_on, record.wait_since_ts, record.wait_tries) == (Wait.AKOOL, NOW, 1)
    assert record.waiting is not None and "Akool unreachable since" in record.waiting
    assert "HTTP 503" in record.waiting


def test_a_job_waiting_on_akool_is_polled_at_the_poll_max_pace_and_counted_once_logged(
    store: FakeStore,
) -> None:
    job = submitted(store, status=JobStatus.PROCESSING, polls=1)
    errors: list[AkoolStatus | AkoolError] = [AkoolTransientError("timed out")] * 2
    client = FakeClient(statuses=errors)
    with pytest.raises(WaitingOnAkool) as first:
        scheduled_poll(store, client, job.id)
    with pytest.raises(WaitingOnAkool) as second:
        scheduled_poll(store, client, job.id)
    for info in (first, second):
        assert info.value.next_in is not None
        assert SETTINGS.poll_max_seconds / 2 <= info.value.next_in <= SETTINGS.poll_max_seconds
    assert (first.value.quiet, second.value.quiet) == (False, True)
    assert store.get(job.id).wait_tries == 2
    assert store.dues[job.id] == NOW + (second.value.next_in or 0) + 30.0


def test_an_answer_after_a_wait_on_akool_ends_it_and_moves_the_deadline_on(
    store: FakeStore,
) -> None:
    # Akool could not be asked for 50 s: none of it counts towards POLL_TIMEOUT_SECONDS.
    deadline = NOW + 10
    job = submitted(store, poll_deadline_ts=deadline, wait_on=Wait.AKOOL, wait_since_ts=NOW - 50)
    client = FakeClient(statuses=[AkoolStatus("akool-1", 2)])
    poll(store, client, job.id, now=NOW)
    record = store.get(job.id)
    assert record.poll_deadline_ts == deadline + 50
    assert (record.wait_on, record.waiting) == (None, None)


def test_a_timeout_is_declared_only_on_akools_own_answer_past_the_moved_deadline(
    store: FakeStore,
) -> None:
    job = submitted(store, poll_deadline_ts=NOW - 20, wait_on=Wait.AKOOL, wait_since_ts=NOW - 50)
    client = FakeClient(statuses=[AkoolStatus("akool-1", 2), AkoolStatus("akool-1", 2)])
    poll(store, client, job.id, now=NOW)  # the deadline moves to NOW + 30
    with pytest.raises(PollTimeout):
        poll(store, client, job.id, now=NOW + 31)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (
            AkoolPermanentError("Akool says the content does not exist (code 1008)", code=1008),
            Wait.AKOOL_GONE,
        ),
        (
            AkoolDoneWithoutUrl("Akool reports the job completed but gives no usable video URL"),
            Wait.AKOOL_URL,
        ),
        (AkoolAuthError("Akool refused the credentials (code 1101)", code=1101), Wait.AKOOL),
        (AkoolBusy("too frequent (code 1005)", code=1005), Wait.AKOOL),
    ],
    ids=["code-1008", "done-without-url", "credentials", "too-frequent"],
)
def test_no_single_akool_answer_other_than_status_4_fails_a_job(
    store: FakeStore, error: AkoolError, kind: Wait
) -> None:
    job = submitted(store)
    client = FakeClient(statuses=[error])
    with pytest.raises(WaitingOnAkool):
        poll(store, client, job.id, now=NOW)
    record = store.get(job.id)
    assert (record.status, record.wait_on) == (JobStatus.SUBMITTED, kind)


def test_1008_on_every_poll_for_the_grace_is_proof_the_job_is_gone(store: FakeStore) -> None:
    grace = SETTINGS.archive_gone_grace_seconds
    gone = AkoolPermanentError("Akool says the content does not exist (code 1008)", code=1008)
    job = submitted(store)
    client = FakeClient(statuses=[gone, gone, gone])
    for when in (NOW, NOW + grace / 2):
        with pytest.raises(WaitingOnAkool):
            poll(store, client, job.id, now=when)
    with pytest.raises(VideoLost) as info:
        poll(store, client, job.id, now=NOW + grace)
    assert isinstance(info.value, PermanentError)
    assert "ARCHIVE_GONE_GRACE_SECONDS" in str(info.value) and "1008" in str(info.value)


def test_akool_unanswered_for_its_file_lifetime_plus_the_grace_fails_saying_so(
    store: FakeStore,
) -> None:
    # The clock passed in: the first failed poll, then one a week and an hour later.
    end = NOW + AKOOL_FILE_LIFETIME_SECONDS + SETTINGS.archive_gone_grace_seconds
    job = submitted(store)
    down = AkoolTransientError("Akool answered HTTP 503", status=503)
    client = FakeClient(statuses=[down, down, down])
    for when in (NOW, end - 1):
        with pytest.raises(WaitingOnAkool):
            poll(store, client, job.id, now=when)
    with pytest.raises(VideoLost) as info:
        poll(store, client, job.id, now=end)
    assert "7 days" in str(info.value) and "ARCHIVE_GONE_GRACE_SECONDS" in str(info.value)


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


def test_a_submit_refused_by_the_request_budget_leaves_no_claim(store: FakeStore) -> None:
    job = store.add()
    client = FakeClient(submit_errors=[AkoolRateLimited("budget spent", retry_after=0.5)])

    with pytest.raises(AkoolRateLimited):
        submit(store, client, job.id, now=NOW)

    assert store.get(job.id).submit_claimed_ts is None
    assert submit(store, client, job.id, now=NOW + 1) == client.akool_id


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


# --- webhooks on: a submit whose answer was lost waits for the callback ---------------------------

TOKEN = "t" * 32
HOOKED = dataclasses.replace(
    SETTINGS, akool_webhook_url=RECEIVER, submit_unknown_wait_seconds=600.0
)


def submit_hooked(store: FakeStore, client: FakeClient, job_id: str) -> str | None:
    return submit_step(
        cast(JobStore, store),
        cast(AkoolClient, client),
        job_id,
        HOOKED,
        clock=lambda: NOW,
        token="run-2",
    )


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


def test_a_claim_found_with_webhooks_on_is_left_to_its_holder_or_the_sweeper(
    store: FakeStore,
) -> None:
    job = store.add(webhook_token=TOKEN, submit_claimed_ts=NOW - 30, submit_claim="run-1")
    client = FakeClient()

    assert submit_hooked(store, client, job.id) is None

    assert client.submits == []
    record = store.get(job.id)
    assert record.submit_unknown_ts is None and record.status == JobStatus.QUEUED


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
        def submit(self, *args: Any, before_send: Any = None, **kwargs: Any) -> str:
            before_send()  # the claim, right before the POST leaves
            store.jobs[job.id] = dataclasses.replace(store.jobs[job.id], akool_id="akool-5")
            raise AkoolTransientError("timed out")

    assert submit_hooked(store, AdoptedWhileSending(), job.id) is None

    record = store.get(job.id)
    assert (record.akool_id, record.submit_unknown_ts) == ("akool-5", None)
