"""The Python API for application code: enqueue a lip-sync job, read its record."""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from worker import deps
from worker.jobs import Job, new_job_id

logger = logging.getLogger(__name__)

# A job still queued this long after submission is re-driven by the sweeper (its message may
# have been lost with a worker that had reserved it). Re-driving is harmless: the submit
# claim makes every copy after the first a no-op.
QUEUED_STALL_SECONDS = 300.0


def check_url(name: str, url: str) -> None:
    """Raise ValueError unless `url` is an http(s) URL with a host."""
    if not isinstance(url, str):
        raise ValueError(f"{name} must be a string")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an http(s) URL with a host, got {url[:200]!r}")


def submit_lipsync(video_url: str, audio_url: str, webhook_url: str | None = None) -> str:
    """Enqueue "lip-sync this video to this audio"; return the new job's id.

    The job is submitted to Akool, polled until done and archived to S3 by the workers.
    Raises ValueError (and enqueues nothing) when a URL is not http(s) with a host.
    """
    check_url("video_url", video_url)
    check_url("audio_url", audio_url)
    if webhook_url is not None:
        check_url("webhook_url", webhook_url)
    from worker.tasks import pipeline_signature  # the Celery app reads settings on import

    store = deps.job_store()
    job_id = new_job_id()
    # A queued job may wait behind a long queue; the sweeper looks at it only after this.
    store.create(
        job_id,
        video_url.strip(),
        audio_url.strip(),
        webhook_url,
        due=time.time() + QUEUED_STALL_SECONDS,
    )
    try:
        pipeline_signature(job_id).apply_async()
    except Exception as e:
        store.fail(job_id, f"the job could not be queued ({type(e).__name__})")
        raise
    logger.info("Queued lip-sync job %s", job_id)
    return job_id


def get_job(job_id: str) -> Job:
    """The job's current record; KeyError for an unknown (or expired) id."""
    return deps.job_store().get(job_id)
