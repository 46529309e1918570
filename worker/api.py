"""The Python API for application code: enqueue a lip-sync job, read its record, wait for
it, or be told when it ends."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit

from worker import deps, messages
from worker.clock import wall_clock
from worker.net import MAX_URL_CHARS, unsafe_char
from worker.notify import encode_on_complete
from worker.status import QUEUED_STALL_SECONDS
from worker.store import Job, JobStore, new_job_id
from worker.tasks import pipeline_signature

logger = logging.getLogger(__name__)

# At most this much of a refused value is quoted back in the error.
ECHO_CHARS = 200


def _quoted(url: str) -> str:
    """At most ECHO_CHARS characters of `url` for an error message, escaped by repr; nothing
    of a value holding an "@", which may be a password."""
    if "@" in url:
        return "(not quoted: it may hold a password)"
    return repr(url[:ECHO_CHARS])


def _split(url: str) -> SplitResult | None:
    """The URL's parts, or None when urlsplit refuses it (an unbalanced "[" in the host)."""
    try:
        return urlsplit(url)
    except ValueError:
        return None


def check_url(name: str, url: str) -> None:
    """Raise ValueError, naming `name`, unless `url` is an http(s) URL with a host.

    Refused as well: URLs over MAX_URL_CHARS characters; any whitespace (space, tab, CR, LF,
    Unicode spaces), surrounding whitespace included, which is not stripped; control
    characters (C0, DEL, C1); and a user name or password (`user:password@`). A URL that
    passes is stored exactly as given. The error quotes at most ECHO_CHARS characters of the
    value, and never a URL's credentials.
    """
    if not isinstance(url, str):
        raise ValueError(f"{name} must be a string")
    if len(url) > MAX_URL_CHARS:
        raise ValueError(
            f"{name} is {len(url)} characters long; at most {MAX_URL_CHARS} are allowed"
        )
    if any(unsafe_char(c) for c in url):
        raise ValueError(
            f"{name} must not contain whitespace or control characters: {_quoted(url)}"
        )
    parts = _split(url)
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an http(s) URL with a host, got {_quoted(url)}")
    if "@" in parts.netloc:
        raise ValueError(f"{name} must not carry a user name or password (user:password@host)")


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
    and `notify_url` receives the job record as a JSON POST. ValueError (nothing stored or
    enqueued) for an on_complete that is no signature or a URL that `check_url` refuses: not
    http(s) with a host, over 8192 characters, or holding whitespace, control characters or
    `user:password@`. Surrounding whitespace is refused too, no longer stripped: every URL is
    stored exactly as given.
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
        video_url,
        audio_url,
        webhook_url,
        due=wall_clock() + QUEUED_STALL_SECONDS,
        notify_url=notify_url,
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
