"""The three steps of a job, as plain functions: submit, poll, archive.

Celery tasks (worker/tasks.py) call these with their dependencies; everything that decides
what happens to a job lives here and is tested without Celery. Each step is idempotent: a
redelivered or duplicated task finds the record already advanced and does no work twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from worker import messages
from worker.akool import AkoolClient, AkoolStatus
from worker.archive import Archiver
from worker.backoff import backoff_seconds, clip_to_deadline
from worker.errors import (
    AkoolError,
    AkoolJobFailed,
    AkoolRateLimited,
    AkoolRequestNotSent,
    AkoolSubmitUnknown,
    AkoolTransientError,
    JobStateError,
    LipsyncError,
    PollTimeout,
    StillProcessing,
)
from worker.jobs import Job, JobStore
from worker.metrics import Metrics
from worker.reconcile import await_callback, callback_url
from worker.settings import (
    AKOOL_CONNECT_TIMEOUT_SECONDS,
    AKOOL_FILE_LIFETIME_SECONDS,
    STALL_SECONDS,
    Settings,
)
from worker.status import JobStatus

logger = logging.getLogger(__name__)

# A poll countdown waits unacknowledged in the worker: it must stay far below the broker's
# visibility timeout (see worker/celery_app.py), whatever WEBHOOK_POLL_MAX_SECONDS says.
LONGEST_POLL_COUNTDOWN_SECONDS = 900.0
# Archive retries stop at the job's expires_at (the video is gone then) or after this long
# when that is unknown.
ARCHIVE_FALLBACK_RETRY_SECONDS = 24 * 3600


def _proves_not_created(error: AkoolError) -> bool:
    """True when a failed submit certainly created no Akool job.

    A business code means Akool processed and refused the request; 429 is its rate limiter
    refusing before any work; a refused connection never carried the request. A 5xx, a
    timeout or a garbled answer may come after Akool created the job.
    """
    if isinstance(error, AkoolRequestNotSent | AkoolRateLimited):
        return True
    return error.code is not None or error.status == 429


def submit_stall_seconds(settings: Settings) -> float:
    """How long a running submit may stay silent: its longest Akool call plus the margin."""
    return settings.akool_timeout_seconds + AKOOL_CONNECT_TIMEOUT_SECONDS + settings.stall_seconds


def submit_step(
    store: JobStore,
    client: AkoolClient,
    job_id: str,
    settings: Settings,
    *,
    now: float | None = None,
) -> str | None:
    """Send the job to Akool at most once; return Akool's id.

    Returns None when there is nothing to do: the job is final, or it was submitted already
    (a duplicated or redelivered task; the sweeper keeps such a job moving), or the submit's
    outcome is unknown and the job waits for Akool's callback to name it (worker/reconcile.py).
    """
    job = store.get(job_id)
    if job.is_final or job.akool_id or job.submit_unknown_ts is not None:
        return None
    # From here the sweeper expects an answer within the longest Akool call.
    store.heartbeat(job_id, time.time() + submit_stall_seconds(settings))
    try:
        akool_id = _send_submit(store, client, job, settings)
    except AkoolSubmitUnknown as e:
        stamp = time.time() if now is None else now
        if await_callback(store, job, str(e), settings, now=stamp):
            return None
        raise
    now = time.time() if now is None else now
    store.update(
        job_id,
        due=now + settings.stall_seconds,
        status=JobStatus.SUBMITTED,
        akool_id=akool_id,
        submitted_ts=now,
        expires_ts=now + AKOOL_FILE_LIFETIME_SECONDS,
        poll_deadline_ts=now + settings.poll_timeout_seconds,
    )
    logger.info("Submitted %s to Akool as %s", job_id, akool_id)
    return akool_id


def _claim_once(store: JobStore, job: Job, settings: Settings) -> Callable[[], None]:
    """The hook run right before the POST leaves: take the job's one submit claim.

    Taken this late, after any wait for the request budget, a claim means the request was
    about to go out. A second send within the same step (after Akool refused a token with
    1101, so certainly nothing was created) keeps the claim it has.
    """
    claimed = False

    def claim() -> None:
        nonlocal claimed
        if claimed:
            return
        if not store.claim_submit(job.id):
            raise AkoolSubmitUnknown(messages.SUBMIT_UNKNOWN)
        claimed = True
        store.heartbeat(job.id, time.time() + submit_stall_seconds(settings))

    return claim


def webhook_for(job: Job, settings: Settings) -> str | None:
    """The webhookUrl Akool is given: the caller's own, else our receiver when configured
    (Akool takes one URL; a job with the caller's is polled on the normal schedule), naming
    the job and its token so that a callback finds it even if the submit's answer is lost."""
    if job.webhook_url or not settings.akool_webhook_url:
        return job.webhook_url or settings.akool_webhook_url
    if not job.webhook_token:  # stored before jobs had tokens
        return settings.akool_webhook_url
    return callback_url(settings.akool_webhook_url, job.id, job.webhook_token)


def poll_settings(settings: Settings, job: Job) -> Settings:
    """The settings that schedule this job's polls: with our webhook receiver told about the
    job, polling is only the safety net, so its longest interval is WEBHOOK_POLL_MAX_SECONDS
    (capped, like POLL_MAX_SECONDS, far below the broker's visibility timeout)."""
    if not settings.akool_webhook_url or job.webhook_url:
        return settings
    longest = max(settings.webhook_poll_max_seconds, settings.poll_initial_seconds)
    return dataclasses.replace(
        settings, poll_max_seconds=min(longest, LONGEST_POLL_COUNTDOWN_SECONDS)
    )


def _send_submit(store: JobStore, client: AkoolClient, job: Job, settings: Settings) -> str:
    try:
        return client.submit(
            job.video_url,
            job.audio_url,
            webhook_for(job, settings),
            before_send=_claim_once(store, job, settings),
        )
    except AkoolSubmitUnknown:
        raise
    except AkoolError as e:
        if _proves_not_created(e):
            store.release_submit(job.id)
            raise
        if isinstance(e, AkoolTransientError):
            raise AkoolSubmitUnknown(
                messages.submit_maybe_created(e),
                code=e.code,
                status=e.status,
                url=e.url,
            ) from e
        raise


def next_poll_delay(job: Job, settings: Settings, *, now: float | None = None) -> float:
    """Seconds until the next poll: exponential backoff with jitter, never past the deadline."""
    now = time.time() if now is None else now
    delay = backoff_seconds(
        max(job.polls - 1, 0), settings.poll_initial_seconds, settings.poll_max_seconds
    )
    deadline = job.poll_deadline_ts if job.poll_deadline_ts is not None else now + delay
    return clip_to_deadline(delay, now, deadline)


def plan_next_poll(
    store: JobStore,
    job_id: str,
    settings: Settings,
    *,
    at_least: float = 0.0,
    reserved: float | None = None,
) -> float:
    """Choose the countdown to the next poll and tell the sweeper when to expect it.

    A poll that was due but holds a slot of the request budget `reserved` seconds ahead
    comes back exactly then: the slot is its turn, and the backoff already passed.
    """
    now = time.time()
    if reserved is not None:
        delay = reserved
    else:
        delay = max(next_poll_delay(store.get(job_id), settings, now=now), at_least)
    store.heartbeat(job_id, now + delay + settings.stall_seconds)
    return delay


def poll_step(
    store: JobStore,
    client: AkoolClient,
    job_id: str,
    *,
    now: float | None = None,
    stall: float = STALL_SECONDS,
    job: Job | None = None,
    schedule: Settings | None = None,
) -> AkoolStatus | None:
    """Ask Akool once and record its answer in one write; return its status, or None when
    the job is final. `job` is the record when the caller read it already.

    With `schedule` (the job's poll settings), a job Akool still works on gets its next poll
    planned in that write, and StillProcessing says when: after the backoff, or on the slot
    of the request budget booked at once when the budget's queue is longer than that.
    Raises AkoolJobFailed on status 4 and PollTimeout once the deadline has passed; Akool is
    always asked once more before a timeout is declared.
    """
    job = store.get(job_id) if job is None else job
    if job.is_final or job.result_url:
        return None if job.is_final else AkoolStatus(job.akool_id or "", 3, job.result_url)
    if not job.akool_id:
        raise JobStateError(f"job {job_id} has no Akool id to poll")
    try:
        status = client.status(job.akool_id)
    except AkoolRateLimited:
        raise  # Akool was not asked: nothing to count, no reason to declare a timeout yet
    except AkoolTransientError as e:
        store.count_poll(job.id)  # Akool was asked; its answer was lost
        _check_deadline(job, now, f"the last poll failed: {e}")
        raise
    stamp = time.time() if now is None else now
    return _record_status(store, client, job, status, stamp, stall=stall, schedule=schedule)


def _record_status(
    store: JobStore,
    client: AkoolClient,
    job: Job,
    status: AkoolStatus,
    stamp: float,
    *,
    stall: float,
    schedule: Settings | None,
) -> AkoolStatus:
    """Record what Akool said (the poll counted and logged with it) in one write."""
    if status.failed:
        store.record_poll(job.id, status.status)
        raise AkoolJobFailed(messages.AKOOL_JOB_FAILED)
    if status.done:
        store.record_poll(
            job.id,
            status.status,
            due=stamp + stall,
            status=JobStatus.ARCHIVING,
            result_url=status.video_url,
            completed_ts=stamp,
        )
        logger.info("Akool finished %s (%s)", job.id, job.akool_id)
        return status
    values: dict[str, Any] = {}
    if job.status != JobStatus.PROCESSING:
        values["status"] = JobStatus.PROCESSING
    detail = f"Akool's last video_status was {status.status}"
    if schedule is None or _past_deadline(job, stamp):
        store.record_poll(job.id, status.status, **values)
        _check_deadline(job, stamp, detail)
        return status
    polled = dataclasses.replace(job, polls=job.polls + 1)
    wait, reserved_at = client.book_next(next_poll_delay(polled, schedule, now=stamp))
    store.record_poll(job.id, status.status, due=stamp + wait + stall, **values)
    raise StillProcessing(detail, next_in=wait, reserved_at=reserved_at)


def _past_deadline(job: Job, now: float) -> bool:
    return job.poll_deadline_ts is not None and now >= job.poll_deadline_ts


def _check_deadline(job: Job, now: float | None, detail: str) -> None:
    now = time.time() if now is None else now
    if _past_deadline(job, now):
        waited = now - (job.submitted_ts or job.created_ts)
        raise PollTimeout(messages.poll_timeout(waited, detail))


# While a video streams, tell the sweeper (and progress bars) this often that the archive is
# alive and how far it got.
HEARTBEAT_INTERVAL_SECONDS = 1.0


@contextlib.contextmanager
def _kept_alive(
    store: JobStore, job_id: str, stall: float
) -> Iterator[Callable[[int, int | None], None]]:
    """While an archive streams, push the job's due time forward every second from a thread
    of its own, with the bytes copied so far; yield the progress callback that feeds it.

    Time, not progress, drives it: reading one 8 MiB part from a slow host can take longer
    than STALL_SECONDS, and the sweeper must not take a slow copy for a dead one. A hung
    download still ends: its reads time out after DOWNLOAD_TIMEOUT_SECONDS.
    """
    progress: dict[str, int | None] = {"done": None, "total": None}
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_INTERVAL_SECONDS):
            try:
                due = time.time() + stall
                store.heartbeat(
                    job_id, due, progress_bytes=progress["done"], total_bytes=progress["total"]
                )
            except (LipsyncError, KeyError):
                logger.debug("Job %s: heartbeat not recorded", job_id)

    def on_progress(done: int, total: int | None) -> None:
        progress["done"], progress["total"] = done, total

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield on_progress
    finally:
        stop.set()
        thread.join(timeout=HEARTBEAT_INTERVAL_SECONDS * 5)


def archive_step(
    store: JobStore,
    archiver: Archiver,
    job_id: str,
    *,
    now: float | None = None,
    stall: float = STALL_SECONDS,
    metrics: Metrics | None = None,
) -> str | None:
    """Copy the result into S3 once; return its s3:// URI (None when the job failed).

    An object already stored for this job (a crash after the upload, before the record was
    updated) is adopted, not downloaded again. While streaming, the job's due time is pushed
    forward so the sweeper leaves a long copy alone.
    """
    job = store.get(job_id)
    if job.status == JobStatus.FAILED:
        return None
    if job.status == JobStatus.ARCHIVED and job.archive_uri:
        return job.archive_uri
    if not job.result_url:
        raise JobStateError(f"job {job_id} has no result URL to archive")
    store.heartbeat(job_id, time.time() + stall, archive_attempt=True)
    result = archiver.existing(job.id)
    if result is None:
        if job.archive_attempts:
            # An earlier attempt was stopped (a worker killed, or cancelled at shutdown):
            # its multipart upload may still be pending in S3.
            archiver.abort_pending_uploads(job.id)
        started = time.monotonic()
        with _kept_alive(store, job_id, stall) as on_progress:
            result = archiver.archive(
                job.id, job.akool_id or "", job.result_url, on_progress=on_progress
            )
        if metrics is not None:
            lag = time.time() - job.completed_ts if job.completed_ts else None
            metrics.archived(result.size, time.monotonic() - started, lag)
    stamp = time.time() if now is None else now
    store.update(
        job_id,
        status=JobStatus.ARCHIVED,
        archive_uri=result.uri,
        archived_ts=stamp,
        archive_bytes=result.size,
        archive_progress_bytes=result.size,
    )
    return result.uri


def archive_deadline(store: JobStore, job_id: str) -> float:
    """Until when an archive is worth retrying: while Akool still has the video."""
    job = store.get(job_id)
    started = job.completed_ts or job.created_ts
    return job.expires_ts or started + ARCHIVE_FALLBACK_RETRY_SECONDS


def await_completion(
    store: JobStore,
    client: AkoolClient,
    job_id: str,
    *,
    stall: float = STALL_SECONDS,
    job: Job | None = None,
    schedule: Settings | None = None,
) -> bool:
    """Poll once: True when Akool is done (archive next), False when the job is final.

    Raises StillProcessing (transient: poll again on the schedule, see `poll_step`) while
    Akool works.
    """
    status = poll_step(store, client, job_id, stall=stall, job=job, schedule=schedule)
    if status is None:
        return False
    if not status.done:
        raise StillProcessing(f"Akool status {status.status}")
    return True


def index_akool_id(store: JobStore, job_id: str, akool_id: str | None) -> None:
    """Let a webhook callback, which names Akool's id only, find the job (best effort:
    without the index the callback is ignored and polling finishes the job)."""
    if not akool_id:
        return
    try:
        store.remember_akool_id(job_id, akool_id)
    except LipsyncError:
        logger.warning("Job %s: could not index Akool id %s for webhooks", job_id, akool_id)
