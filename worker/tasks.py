"""Celery tasks: thin wrappers that decode arguments, build dependencies and retry.

The chain is submit -> poll -> archive. Each task passes the job id on; the logic lives in
worker/pipeline.py. A permanent error fails the job with its message and ends the chain
(Ignore); a transient one retries with backoff within the step's bound.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task, chain
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
from worker.errors import LipsyncError, PermanentError, TransientError
from worker.pipeline import archive_step, next_poll_delay, poll_step, submit_step

logger = logging.getLogger(__name__)
T = TypeVar("T")

# A submit that keeps meeting rate limits or outages gives up after this many tries
# (about 12 minutes with the default POLL_MAX_SECONDS between them).
SUBMIT_MAX_RETRIES = 15
# Archive retries stop at the job's expires_at (the video is gone then) or after this long
# when that is unknown.
ARCHIVE_FALLBACK_RETRY_SECONDS = 24 * 3600


def _fail(job_id: str, error: BaseException) -> None:
    """Record the failure on the job and stop the chain."""
    message = (
        str(error)
        if isinstance(error, LipsyncError)
        else (f"an unexpected error ({type(error).__name__}) stopped the job; see the worker log")
    )
    logger.error("Job %s failed: %s", job_id, message)
    deps.job_store().fail(job_id, message)
    raise Ignore()


def _run(task: Task, job_id: str, step: Callable[[], T], *, may_retry: Callable[[], bool]) -> T:
    """Run one step, mapping errors to retries (transient) or a failed job (permanent)."""
    try:
        return step()
    except (TransientError, SoftTimeLimitExceeded) as e:
        if not may_retry():
            _fail(job_id, e)
        s = deps.settings()
        # Same schedule as polling: POLL_INITIAL_SECONDS doubling up to POLL_MAX_SECONDS.
        countdown = backoff_seconds(
            task.request.retries, s.poll_initial_seconds, s.poll_max_seconds
        )
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
    akool_id = _run(
        self,
        job_id,
        lambda: submit_step(deps.job_store(), deps.akool_client(), job_id, s),
        may_retry=lambda: self.request.retries < SUBMIT_MAX_RETRIES,
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

    Transient errors are retried on the same schedule; the poll deadline bounds both.
    """
    store = deps.job_store()
    try:
        status = poll_step(store, deps.akool_client(), job_id)
    except TransientError as e:
        status = None
        _retry_poll(self, job_id, f"poll failed ({e})")
    except PermanentError as e:
        _fail(job_id, e)
    if status is None:
        raise Ignore()
    if not status.done:
        _retry_poll(self, job_id, f"Akool status {status.status}")
    return job_id


def _retry_poll(task: Task, job_id: str, why: str) -> None:
    delay = next_poll_delay(deps.job_store().get(job_id), deps.settings())
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
    store = deps.job_store()

    def may_retry() -> bool:
        job = store.get(job_id)
        started = job.completed_ts or job.created_ts
        return time.time() < (job.expires_ts or started + ARCHIVE_FALLBACK_RETRY_SECONDS)

    return _run(
        self, job_id, lambda: archive_step(store, deps.archiver(), job_id), may_retry=may_retry
    )


def pipeline_signature(job_id: str) -> Any:
    """The whole job as one Celery chain."""
    return chain(submit.si(job_id), poll.s(), archive.s())
