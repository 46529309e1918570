"""Fakes at the seams of the steps (store, Akool client, archiver, metrics), for the unit
tests of worker/pipeline.py and worker/archiving.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from worker.akool.client import AkoolStatus
from worker.archive import ArchiveResult
from worker.config.settings import Settings
from worker.errors import AkoolError
from worker.status import FINAL_STATUSES, JobStatus
from worker.store.jobs import Job, new_job_id

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

    def claim_submit(self, job_id: str, token: str) -> bool:
        if self.jobs[job_id].submit_claimed_ts is not None:
            return False
        claimed = dataclasses.replace(self.jobs[job_id], submit_claimed_ts=NOW, submit_claim=token)
        self.jobs[job_id] = claimed
        return True

    def release_submit(self, job_id: str, token: str) -> bool:
        if self.jobs[job_id].submit_claim != token:
            return False
        self.releases += 1
        released = dataclasses.replace(self.jobs[job_id], submit_claimed_ts=None, submit_claim=None)
        self.jobs[job_id] = released
        return True

    def heartbeat(
        self,
        job_id: str,
        due: float,
        *,
        progress_bytes: int | None = None,
        total_bytes: int | None = None,
        archive_attempt: bool = False,
    ) -> bool:
        if self.jobs[job_id].status in FINAL_STATUSES:
            return False
        self.dues[job_id] = due
        if archive_attempt:
            job = self.jobs[job_id]
            self.jobs[job_id] = dataclasses.replace(job, archive_attempts=job.archive_attempts + 1)
        return True

    def note(self, job_id: str, **values: Any) -> bool:
        self.jobs[job_id] = dataclasses.replace(self.jobs[job_id], **values)
        return True

    @property
    def metrics(self) -> Any:
        return FakeMetrics()

    def record_poll(
        self, job_id: str, akool_status: int | None, *, due: float | None = None, **values: Any
    ) -> bool:
        job = self.jobs[job_id]
        if job.status in FINAL_STATUSES:
            return False
        self.jobs[job_id] = dataclasses.replace(job, polls=job.polls + 1)
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
        unsent_errors: list[AkoolError] | None = None,
    ) -> None:
        self.akool_id = akool_id
        self.submit_errors = list(submit_errors or [])
        # Raised before the submit's claim is taken (the budget, a token fetch).
        self.unsent_errors = list(unsent_errors or [])
        self.statuses = list(statuses or [])
        self.submits: list[tuple[str, str, str | None]] = []
        # Submits of the other kinds: (kind, body, webhook URL).
        self.kind_submits: list[tuple[str, dict[str, Any], str | None]] = []
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
        if self.unsent_errors:
            raise self.unsent_errors.pop(0)
        if before_send is not None:
            before_send()  # as the real client does, right before the POST leaves
        self.submits.append((video_url, audio_url, webhook_url))
        if self.submit_errors:
            raise self.submit_errors.pop(0)
        return self.akool_id

    def submit_kind(
        self,
        kind: str,
        body: Any,
        webhook_url: str | None = None,
        *,
        before_send: Callable[[], None] | None = None,
    ) -> str:
        if before_send is not None:
            before_send()
        self.kind_submits.append((kind, dict(body), webhook_url))
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
    """An Archiver stand-in that records what it was asked to copy, failing with `errors`
    first, one per copy."""

    def __init__(
        self, stored: ArchiveResult | None = None, errors: list[Exception] | None = None
    ) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.cleanups: list[str] = []
        self.content_types: list[str] = []
        self.stored = stored
        self.errors = list(errors or [])

    def existing(self, job_id: str, name: str | None = None) -> ArchiveResult | None:
        return self.stored

    def abort_pending_uploads(self, job_id: str, name: str | None = None) -> int:
        self.cleanups.append(job_id)
        return 0

    def archive(
        self,
        job_id: str,
        akool_id: str,
        url: str,
        *,
        on_progress: Callable[[int, int | None], None] | None = None,
        **options: Any,
    ) -> ArchiveResult:
        self.calls.append((job_id, akool_id, url))
        if self.errors:
            raise self.errors.pop(0)
        if on_progress is not None:
            on_progress(1234, 1234)
        key = f"lipsync/{options.get('name') or job_id + '.mp4'}"
        self.content_types.append(options.get("content_type", "video/mp4"))
        return ArchiveResult(f"s3://videos/{key}", "videos", key, 1234, "0" * 64)


def submitted(store: FakeStore, **values: Any) -> Job:
    values.setdefault("status", JobStatus.SUBMITTED)
    values.setdefault("akool_id", "akool-1")
    values.setdefault("submitted_ts", NOW - 60)
    values.setdefault("poll_deadline_ts", NOW - 60 + TIMEOUT)
    values.setdefault("submit_claimed_ts", NOW - 60)
    return store.add(**values)
