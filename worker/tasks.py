"""Celery tasks: thin wrappers that decode arguments, build dependencies and retry.

The chain is submit -> poll -> archive. Each task passes the job id on; the logic lives in
worker/pipeline.py and worker/sweeper.py. A permanent error fails the job with its message
and ends the chain (Ignore); a transient one retries with backoff within the step's bound.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task, chain, uuid
from celery.exceptions import Ignore, SoftTimeLimitExceeded

from worker import deps
from worker.backoff import backoff_seconds
from worker.celery_app import (
    AKOOL_QUEUE,
    AKOOL_TASK_TIME_LIMIT_SECONDS,
    ARCHIVE_QUEUE,
    ARCHIVE_TIME_LIMIT_SECONDS,
    app,
)
from worker.errors import AkoolRateLimited, LipsyncError, PermanentError, TransientError
from worker.pipeline import archive_step, plan_next_poll, poll_step, submit_step
from worker.sweeper import ARCHIVE, POLL, SUBMIT, at_risk, sweep

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
    """Record the failure on the job and stop the chain."""
    if isinstance(error, LipsyncError):
        message = str(error)
    else:
        message = f"an unexpected error ({type(error).__name__}) stopped the job; see the log"
    logger.error("Job %s failed: %s", job_id, message)
    deps.job_store().fail(job_id, message)
    raise Ignore()


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
    sweeper re-drove the job) finds another owner and stops. Transient errors are retried
    on the poll schedule; the poll deadline bounds both.
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
    return job_id


def _retry_poll(task: Task, job_id: str, why: str, retry_after: float | None) -> None:
    extra = retry_after + random.uniform(0, 1) if retry_after else 0.0
    delay = plan_next_poll(deps.job_store(), job_id, deps.settings(), at_least=extra)
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

    return _run(
        self,
        job_id,
        lambda: archive_step(store, deps.archiver(), job_id, stall=s.stall_seconds),
        may_retry=may_retry,
    )


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
        deps.job_store().update(job_id, poll_owner=task_id)
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
