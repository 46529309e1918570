"""The Python API for application code: enqueue a lip-sync job, read its record, wait for
it, or be told when it ends."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from worker import deps, messages
from worker.jobs import Job, JobStore, new_job_id
from worker.notify import encode_on_complete
from worker.sweeper import QUEUED_STALL_SECONDS
from worker.tasks import pipeline_signature

logger = logging.getLogger(__name__)


def check_url(name: str, url: str) -> None:
    """Raise ValueError unless `url` is an http(s) URL with a host."""
    if not isinstance(url, str):
        raise ValueError(f"{name} must be a string")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an http(s) URL with a host, got {url[:200]!r}")


def submit_lipsync(
    video_url: str,
    audio_url: str,
    webhook_url: str | None = None,
    *,
    on_complete: Mapping[str, Any] | None = None,
    notify_url: str | None = None,
) -> str:
    """Enqueue "lip-sync this video to this audio"; return the new job's id.

    Workers submit it to Akool, poll it and archive it to S3. `webhook_url` goes to Akool
    as the job's webhookUrl (Akool then calls it instead of our receiver). When the job ends
    (archived or failed), `on_complete`, a Celery signature, is called with the job id first,
    and `notify_url` receives the job record as a JSON POST. ValueError (nothing enqueued)
    for a URL that is not http(s) with a host or an on_complete that is no signature.
    """
    check_url("video_url", video_url)
    check_url("audio_url", audio_url)
    for name, url in (("webhook_url", webhook_url), ("notify_url", notify_url)):
        if url is not None:
            check_url(name, url)
    callback = encode_on_complete(on_complete) if on_complete is not None else None
    store = deps.job_store()
    job_id = new_job_id()
    # A queued job may wait behind a long queue; the sweeper looks at it only after this.
    store.create(
        job_id,
        video_url.strip(),
        audio_url.strip(),
        webhook_url,
        due=time.time() + QUEUED_STALL_SECONDS,
        notify_url=notify_url.strip() if notify_url else None,
        on_complete=callback,
    )
    try:
        pipeline_signature(job_id).apply_async()
    except Exception as e:
        store.fail(job_id, messages.not_queued(e))
        raise
    logger.info("Queued lip-sync job %s", job_id)
    return job_id


def get_job(job_id: str) -> Job:
    """The job's current record; KeyError for an unknown (or expired) id."""
    return deps.job_store().get(job_id)


# wait_for_job reads the record at these intervals (then every second): quick for short jobs,
# one cheap Redis read a second for long ones.
WAIT_FIRST_INTERVAL_SECONDS = 0.1
WAIT_MAX_INTERVAL_SECONDS = 1.0


def wait_for_job(job_id: str, timeout: float) -> Job:
    """The job once it is archived or failed, waiting at most `timeout` seconds.

    Raises KeyError for an unknown id and TimeoutError when the job is not final in time.
    """
    return wait_until_final(deps.job_store(), job_id, timeout)


def wait_until_final(
    store: JobStore,
    job_id: str,
    timeout: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Job:
    """`wait_for_job` against a given store and clock."""
    if not math.isfinite(timeout) or timeout < 0:
        raise ValueError(f"timeout must be a finite number of seconds >= 0, got {timeout!r}")
    deadline = clock() + timeout
    interval = WAIT_FIRST_INTERVAL_SECONDS
    while True:
        job = store.get(job_id)
        remaining = deadline - clock()
        if job.is_final:
            return job
        if remaining <= 0:
            raise TimeoutError(f"job {job_id} is still {job.status} after {timeout:g} s")
        sleep(min(interval, remaining))
        interval = min(interval * 2, WAIT_MAX_INTERVAL_SECONDS)
