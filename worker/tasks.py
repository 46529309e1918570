"""Celery tasks: thin wrappers that decode arguments, build dependencies and retry.

The chain is submit -> poll -> archive. Each task passes the job id on; the logic lives in
worker/pipeline.py and worker/sweeper.py. A permanent error fails the job with its message
and ends the chain (Ignore); a transient one retries with backoff within the step's bound.
A job that ends (archived or failed) is announced to the application (worker/notify.py).
With AKOOL_WEBHOOK_URL set, Akool is told to call our receiver (worker/webhook.py) and
polling, the safety net, waits up to WEBHOOK_POLL_MAX_SECONDS between polls.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from celery import Task, chain, uuid
from celery.exceptions import Ignore, SoftTimeLimitExceeded

from worker import deps, notify
from worker.api import QUEUED_STALL_SECONDS
from worker.backoff import backoff_seconds
from worker.celery_app import (
    AKOOL_QUEUE,
    AKOOL_TASK_TIME_LIMIT_SECONDS,
    ARCHIVE_QUEUE,
    ARCHIVE_TIME_LIMIT_SECONDS,
    app,
)
from worker.errors import AkoolRateLimited, LipsyncError, PermanentError, TransientError
from worker.jobs import (
    FAILED,
)
from worker.pipeline import archive_step, plan_next_poll, poll_settings, poll_step, submit_step
from worker.sweeper import (
    ARCHIVE,
    POLL,
    REOPENED_STATUS,
    SUBMIT,
    at_risk,
    retry_step,
    sweep,
)
from worker.webhook import claim_archive, remember_akool_id

logger = logging.getLogger(__name__)
T = TypeVar("T")

# A submit that keeps meeting outages gives up after this many tries (about 12 minutes with
# the default POLL_MAX_SECONDS between them). Waits for the shared request budget do not
# count: a busy fleet delays submits, it does not fail them.
SUBMIT_MAX_RETRIES = 15
# Archive retries stop at the job's expires_at (the video is gone then) or after this long
# when that is unknown.
ARCHIVE_FALLBACK_RETRY_SECONDS = 24 * 3600


def _fail(job_id: str, error: BaseException) -> None:
    """Record the failure on the job, tell the application, and stop the chain."""
    if isinstance(error, LipsyncError):
        message = str(error)
    else:
        message = f"an unexpected error ({type(error).__name__}) stopped the job; see the log"
    logger.error("Job %s failed: %s", job_id, message)
    if deps.job_store().fail(job_id, message):
        notify.announce_end(job_id)
    raise Ignore()


def _index_akool_id(job_id: str, akool_id: str | None) -> None:
    """Let a webhook callback, which names Akool's id only, find the job (best effort:
    without the index the callback is ignored and polling finishes the job)."""
    if not akool_id:
        return
    try:
        ttl = deps.settings().job_retention_seconds
        remember_akool_id(deps.redis_client(), akool_id, job_id, ttl)
    except (LipsyncError, redis.RedisError):
        logger.warning("Job %s: could not index Akool id %s for webhooks", job_id, akool_id)


def _countdown(task: Task, error: BaseException) -> float:
    """Backoff on POLL_INITIAL_SECONDS..POLL_MAX_SECONDS, or longer when told to wait."""
    s = deps.settings()
    delay = backoff_seconds(task.request.retries, s.poll_initial_seconds, s.poll_max_seconds)
    retry_after = getattr(error, "retry_after", None)
    if retry_after:
        # Spread the waiting jobs over a second so they do not all return at once.
        delay = max(delay if not isinstance(error, AkoolRateLimited) else 0, retry_after)
        delay += random.uniform(0, 1)
    return delay


def _run(
    task: Task,
    job_id: str,
    step: Callable[[], T],
    *,
    may_retry: Callable[[BaseException], bool],
) -> T:
    """Run one step, mapping errors to retries (transient) or a failed job (permanent)."""
    try:
        return step()
    except (TransientError, SoftTimeLimitExceeded) as e:
        if not may_retry(e):
            _fail(job_id, e)
        countdown = _countdown(task, e)
        logger.warning("Job %s: %s; retrying in %.1f s", job_id, e, countdown)
        raise task.retry(countdown=countdown) from e
    except PermanentError as e:
        _fail(job_id, e)
    except Exception as e:
        logger.exception("Job %s: unexpected error in %s", job_id, task.name)
        _fail(job_id, e)
    raise AssertionError("unreachable")


@app.task(
    bind=True,
    max_retries=None,
    name="lipsync.submit",
    queue=AKOOL_QUEUE,
    time_limit=AKOOL_TASK_TIME_LIMIT_SECONDS,
)
def submit(self: Task, job_id: str) -> str:
    """Send the job to Akool (at most once) and pass the job id on to polling."""
    s = deps.settings()

    def may_retry(error: BaseException) -> bool:
        return isinstance(error, AkoolRateLimited) or self.request.retries < SUBMIT_MAX_RETRIES

    akool_id = _run(
        self,
        job_id,
        lambda: submit_step(deps.job_store(), deps.akool_client(), job_id, s),
        may_retry=may_retry,
    )
    if akool_id is None:
        raise Ignore()
    _index_akool_id(job_id, akool_id)
    return job_id


@app.task(
    bind=True,
    max_retries=None,
    name="lipsync.poll",
    queue=AKOOL_QUEUE,
    time_limit=AKOOL_TASK_TIME_LIMIT_SECONDS,
)
def poll(self: Task, job_id: str) -> str:
    """Ask Akool about the job; come back after a backoff countdown until it is done.

    Only one poll loop runs per job: a duplicated one (a redelivered countdown after the
    sweeper re-drove the job, or after the webhook reported the job done) finds another
    owner and stops. Transient errors are retried on the poll schedule; the poll deadline
    bounds both. Once Akool is done, the archive follows unless the webhook started it.
    """
    store, s = deps.job_store(), deps.settings()
    if not store.own_poll(job_id, self.request.id):
        logger.info("Job %s: another poll loop owns this job; stopping this one", job_id)
        raise Ignore()
    try:
        status = poll_step(store, deps.akool_client(), job_id, stall=s.stall_seconds)
    except TransientError as e:
        _retry_poll(self, job_id, f"poll not answered ({e})", getattr(e, "retry_after", None))
    except PermanentError as e:
        _fail(job_id, e)
    if status is None:
        raise Ignore()
    if not status.done:
        _retry_poll(self, job_id, f"Akool status {status.status}", None)
    if not claim_archive(deps.redis_client(), job_id, s.job_retention_seconds):
        logger.info("Job %s: its archive was already started (webhook); stopping here", job_id)
        raise Ignore()
    return job_id


def _retry_poll(task: Task, job_id: str, why: str, retry_after: float | None) -> None:
    extra = retry_after + random.uniform(0, 1) if retry_after else 0.0
    store = deps.job_store()
    schedule = poll_settings(deps.settings(), store.get(job_id))
    delay = plan_next_poll(store, job_id, schedule, at_least=extra)
    logger.info("Job %s: %s; next poll in %.1f s", job_id, why, delay)
    raise task.retry(countdown=delay)


@app.task(
    bind=True,
    max_retries=None,
    name="lipsync.archive",
    queue=ARCHIVE_QUEUE,
    time_limit=ARCHIVE_TIME_LIMIT_SECONDS,
    soft_time_limit=ARCHIVE_TIME_LIMIT_SECONDS - 60,
)
def archive(self: Task, job_id: str) -> str | None:
    """Stream the result into S3; retry transient failures while the video still exists."""
    store, s = deps.job_store(), deps.settings()

    def may_retry(_error: BaseException) -> bool:
        job = store.get(job_id)
        started = job.completed_ts or job.created_ts
        return time.time() < (job.expires_ts or started + ARCHIVE_FALLBACK_RETRY_SECONDS)

    uri = _run(
        self,
        job_id,
        lambda: archive_step(store, deps.archiver(), job_id, stall=s.stall_seconds),
        may_retry=may_retry,
    )
    if uri is not None:
        notify.announce_end(job_id)
    return uri


@app.task(
    bind=True,
    max_retries=None,
    name=notify.NOTIFY_TASK,
    queue=AKOOL_QUEUE,
    ignore_result=True,
    time_limit=AKOOL_TASK_TIME_LIMIT_SECONDS,
)
def notify_application(self: Task, job_id: str) -> int | None:
    """POST the ended job's record to its notify_url; a bounded number of tries."""
    try:
        return notify.deliver(deps.job_store(), job_id)
    except TransientError as e:
        if self.request.retries >= notify.NOTIFY_MAX_RETRIES:
            logger.error("Job %s: gave up telling its notify_url: %s", job_id, e)
            return None
        delay = backoff_seconds(
            self.request.retries, notify.NOTIFY_INITIAL_SECONDS, notify.NOTIFY_MAX_SECONDS
        )
        logger.warning("Job %s: %s; telling it again in %.1f s", job_id, e, delay)
        raise self.retry(countdown=delay) from e
    except (PermanentError, KeyError) as e:
        logger.error("Job %s: its notify_url was not told: %s", job_id, e)
        return None


def pipeline_signature(job_id: str) -> Any:
    """The whole job as one Celery chain."""
    return chain(submit.si(job_id), poll.s(), archive.s())


def redrive(job_id: str, step: str) -> None:
    """Enqueue a job again from `step` (submit, poll or archive)."""
    if step == SUBMIT:
        pipeline_signature(job_id).apply_async()
    elif step == POLL:
        # The new loop is named the owner first, so a stray old loop stops at its next poll.
        task_id = uuid()
        store = deps.job_store()
        store.update(job_id, poll_owner=task_id)
        # Also mends the webhook index if a worker died between the submit and indexing it.
        _index_akool_id(job_id, store.get(job_id).akool_id)
        chain(poll.si(job_id).set(task_id=task_id), archive.s()).apply_async()
    elif step == ARCHIVE:
        archive.si(job_id).apply_async()
    else:
        raise ValueError(f"unknown step {step!r}")


@app.task(name="lipsync.sweep", queue=AKOOL_QUEUE, ignore_result=True)
def sweep_stalled() -> dict[str, int]:
    """Re-drive jobs nothing is working on (beat runs it every SWEEP_INTERVAL_SECONDS)."""
    store = deps.job_store()
    # One sweep at a time across the fleet, even with two beats by mistake.
    if not store.try_lock("sweep", deps.settings().sweep_interval_seconds * 0.8):
        return {"redriven": 0, "failed": 0}
    result = sweep(store, deps.settings(), redrive)
    for job_id in result.failed:
        notify.announce_end(job_id)
    return {"redriven": len(result.redriven), "failed": len(result.failed)}


@app.task(name="lipsync.expiry_guard", queue=AKOOL_QUEUE, ignore_result=True)
def expiry_guard() -> int:
    """Log an ERROR for each job whose video Akool deletes within 24 h, not archived."""
    jobs = at_risk(deps.job_store())
    for job in jobs:
        logger.error(
            "Job %s is at risk: Akool deletes its video at %s and it is not archived (%s)",
            job.id,
            job.expires_at.isoformat() if job.expires_at else "?",
            job.error or job.status,
        )
    return len(jobs)


# --- Operators: re-drive a failed or stuck job (`lipsync retry JOB_ID`) -----------------------


def retry_job(job_id: str) -> str:
    """Re-drive a failed or stuck job from where it stopped; return the step (submit, poll
    or archive). KeyError for an unknown job; ValueError when it must not be retried."""
    store, s = deps.job_store(), deps.settings()
    job = store.get(job_id)
    step = retry_step(job)
    if job.status == FAILED:
        now = time.time()
        due = now + (s.stall_seconds if step != SUBMIT else QUEUED_STALL_SECONDS)
        # A job that timed out polling gets a whole new poll window, or it fails again at once.
        deadline = now + s.poll_timeout_seconds if step == POLL else None
        if not store.reopen(job_id, REOPENED_STATUS[step], due=due, poll_deadline=deadline):
            raise ValueError(f"job {job_id} changed while being retried; look at it again")
        notify.forget_announcement(deps.redis_client(), job_id)
    else:
        store.update(job_id, due=time.time() + s.stall_seconds, redrives=0)
    logger.warning("Job %s: an operator re-drives it from its %s step", job_id, step)
    redrive(job_id, step)
    return step
