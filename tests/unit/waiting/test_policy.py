"""Tests of the tasks' retry policies (worker/waiting/policy.py), built with fakes at the
seams and a fixed clock: which errors retry, which count, the waits, the ceilings, and what
each wait tells the sweeper or the outbox."""

from __future__ import annotations

from typing import Any, cast

from celery.exceptions import SoftTimeLimitExceeded

from tests.unit.step_fakes import NOW, SETTINGS, FakeStore, submitted
from worker.akool import SlotReserved
from worker.errors import (
    AkoolBusy,
    AkoolPermanentError,
    AkoolRateLimited,
    AkoolRequestNotSent,
    AkoolTransientError,
    NotifyFailed,
    StillProcessing,
)
from worker.status import JobStatus
from worker.store import NOTICE_LEASE_SECONDS, JobStore
from worker.waiting import decide
from worker.waiting.policy import (
    NOTIFY_MAX_RETRIES,
    NOTIFY_MAX_SECONDS,
    SUBMIT_MAX_RETRIES,
    archive_policy,
    notify_policy,
    poll_policy,
    submit_policy,
)


def clock() -> float:
    return NOW


def store_of(fake: FakeStore) -> JobStore:
    return cast(JobStore, fake)


def test_a_submit_gives_up_after_its_counted_tries_but_never_for_the_budget_or_a_busy_akool() -> (
    None
):
    store = FakeStore()
    job = store.add()
    policy = submit_policy(store_of(store), SETTINGS, clock)
    later = AkoolTransientError("try later", code=1015)
    assert decide(policy, job.id, SUBMIT_MAX_RETRIES - 1, later, now=NOW) is not None
    assert decide(policy, job.id, SUBMIT_MAX_RETRIES, later, now=NOW) is None
    for uncounted in (
        AkoolRateLimited("spent", retry_after=1.0),
        AkoolRequestNotSent("no route"),
        AkoolBusy("1005"),
    ):
        assert decide(policy, job.id, 10 * SUBMIT_MAX_RETRIES, uncounted, now=NOW) is not None
    assert decide(policy, job.id, 0, AkoolPermanentError("refused", code=1204), now=NOW) is None


def test_a_waiting_submit_tells_the_sweeper_when_to_expect_it_back() -> None:
    store = FakeStore()
    job = store.add()
    wait = decide(
        submit_policy(store_of(store), SETTINGS, clock),
        job.id,
        0,
        AkoolTransientError("down"),
        now=NOW,
    )
    assert wait is not None and 0 < wait <= SETTINGS.poll_initial_seconds
    assert store.dues[job.id] == NOW + wait + SETTINGS.stall_seconds


def test_a_poll_comes_back_when_the_poll_planned_it_without_a_second_plan() -> None:
    store = FakeStore()
    job = submitted(store)
    planned = StillProcessing("status 2", next_in=12.5)
    assert (
        decide(poll_policy(store_of(store), SETTINGS, clock), job.id, 7, planned, now=NOW) == 12.5
    )
    assert job.id not in store.dues


def test_a_poll_holding_a_slot_of_the_budget_comes_back_exactly_on_it() -> None:
    store = FakeStore()
    job = submitted(store)
    slot = SlotReserved("slot booked", retry_after=3.0, reserved_at=NOW + 3.0)
    assert decide(poll_policy(store_of(store), SETTINGS, clock), job.id, 0, slot, now=NOW) == 3.0
    assert store.dues[job.id] == NOW + 3.0 + SETTINGS.stall_seconds


def test_a_poll_never_gives_up_on_its_own_count() -> None:
    store = FakeStore()
    job = submitted(store)
    policy = poll_policy(store_of(store), SETTINGS, clock)
    assert decide(policy, job.id, 10_000, AkoolTransientError("502"), now=NOW) is not None


def test_an_archive_retries_until_the_video_expires_then_gives_up() -> None:
    store = FakeStore()
    job = store.add(status=JobStatus.ARCHIVING, expires_ts=NOW + 60)
    policy = archive_policy(store_of(store), SETTINGS, clock)
    cut = SoftTimeLimitExceeded()
    assert decide(policy, job.id, 500, cut, now=NOW + 59) is not None
    assert decide(policy, job.id, 0, AkoolTransientError("S3 away"), now=NOW + 60) is None


def test_a_notification_holds_its_outbox_entry_until_its_retry_and_shows_why() -> None:
    store = FakeStore()
    job = store.add(status=JobStatus.ARCHIVED)
    outbox = RecordingOutbox()
    store.outbox = outbox  # type: ignore[attr-defined]
    policy = notify_policy(store_of(store), clock)
    wait = decide(policy, job.id, 2, NotifyFailed("hook answered 503"), now=NOW)
    assert wait is not None and wait <= NOTIFY_MAX_SECONDS
    assert outbox.held == [(job.id, NOW + wait + NOTICE_LEASE_SECONDS)]
    assert outbox.notes == [(job.id, {"notify_error": "hook answered 503"})]
    assert decide(policy, job.id, NOTIFY_MAX_RETRIES, NotifyFailed("503"), now=NOW) is None


class RecordingOutbox:
    def __init__(self) -> None:
        self.held: list[tuple[str, float]] = []
        self.notes: list[tuple[str, dict[str, Any]]] = []

    def hold(self, job_id: str, until: float) -> None:
        self.held.append((job_id, until))

    def note(self, job_id: str, **values: Any) -> None:
        self.notes.append((job_id, values))
