"""The Python API for application code: enqueue a lip-sync job or adopt one submitted
elsewhere, find it by its idempotency key, read its record, wait for it, cancel it, or be
told when it ends. What the arguments may be is worker/contract.py's."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from worker import deps, messages
from worker.clock import wall_clock
from worker.contract import (
    Request,
    adopted_job,
    adoption_request,
    check_idempotency_key,
    check_url,
    lipsync_request,
    queued_job,
)
from worker.status import QUEUED_STALL_SECONDS
from worker.store import Job, JobStore, new_job_id
from worker.tasks import adoption_signature, announce_end, pipeline_signature, poll_task_id
from worker.video_kinds import (
    DEFAULT_SOURCE_LANGUAGE,
    character_swap_request,
    talking_avatar_request,
    talking_photo_request,
    video_translation_request,
)

logger = logging.getLogger(__name__)

__all__ = [
    "archive_akool_job",
    "cancel_job",
    "check_url",
    "find_job",
    "get_job",
    "submit_character_swap",
    "submit_lipsync",
    "submit_talking_avatar",
    "submit_talking_photo",
    "submit_video_translation",
    "wait_for_job",
]


def submit_lipsync(
    video_url: str,
    audio_url: str,
    webhook_url: str | None = None,
    *,
    on_complete: Mapping[str, Any] | None = None,
    notify_url: str | None = None,
    idempotency_key: str | None = None,
    metadata: Mapping[str, str] | None = None,
    archive_key: str | None = None,
) -> str:
    """Enqueue "lip-sync this video to this audio"; return the job's id.

    Workers submit it to Akool, poll it and archive it to S3, as ARCHIVE_PREFIX +
    `archive_key` when given, else `<job id>.mp4`. `webhook_url` goes to Akool as the job's
    webhookUrl (Akool then calls it instead of our receiver). When the job ends, `on_complete`,
    a Celery signature, is called with the job id first, and `notify_url` receives the job
    record as a JSON POST. `metadata` (str to str) travels with the job: on its record, in
    the POST and on the S3 object.

    With `idempotency_key`, the same key and the same arguments return the same job id and
    store nothing, for as long as that job's record exists, whatever its state;
    IdempotencyConflict (a ValueError) when the key names a job made by other arguments.
    ArchiveKeyTaken (a ValueError) when another job holds `archive_key`. Every other
    refusal is a ValueError naming the argument and the limit (worker/contract.py), with
    nothing stored or enqueued.
    """
    request = lipsync_request(
        video_url,
        audio_url,
        webhook_url,
        on_complete=on_complete,
        notify_url=notify_url,
        idempotency_key=idempotency_key,
        metadata=metadata,
        archive_key=archive_key,
    )
    return _enqueue_kind(request)


def submit_talking_photo(
    photo_url: str,
    audio_url: str,
    *,
    prompt: str | None = None,
    resolution: str | None = None,
    **common: Any,
) -> str:
    """Enqueue an Akool talking photo (a photo that speaks the audio); return the job's id.
    `common` is what `submit_lipsync` takes besides its URLs (webhook_url, on_complete,
    notify_url, idempotency_key, metadata, archive_key), with the same rules; the limits of
    `prompt` and `resolution` are worker/video_kinds.py's."""
    request = talking_photo_request(
        photo_url, audio_url, prompt=prompt, resolution=resolution, **common
    )
    return _enqueue_kind(request)


def submit_video_translation(
    video_url: str,
    language: str,
    *,
    source_language: str = DEFAULT_SOURCE_LANGUAGE,
    lipsync: bool = False,
    options: Mapping[str, Any] | None = None,
    **common: Any,
) -> str:
    """Enqueue an Akool video translation into `language` (codes, comma-separated); return
    the job's id. `options`: Akool's other documented fields (TRANSLATION_OPTIONS,
    video_kinds). `common` as for `submit_talking_photo`."""
    request = video_translation_request(
        video_url,
        language,
        source_language=source_language,
        lipsync=lipsync,
        options=options,
        **common,
    )
    return _enqueue_kind(request)


def submit_talking_avatar(
    elements: list[dict[str, Any]],
    *,
    avatar_from: int,
    width: int | None = None,
    height: int | None = None,
    **common: Any,
) -> str:
    """Enqueue an Akool talking avatar made of `elements`; return the job's id. `common` as
    for `submit_talking_photo`."""
    request = talking_avatar_request(
        elements, avatar_from=avatar_from, width=width, height=height, **common
    )
    return _enqueue_kind(request)


def submit_character_swap(
    image_url: str,
    video_url: str,
    *,
    mode: str = "animate",
    resolution: str | None = None,
    duration: float | None = None,
    prompt: str | None = None,
    **common: Any,
) -> str:
    """Enqueue an Akool character swap (the image's character into the video); return the
    job's id. `common` as for `submit_talking_photo`."""
    request = character_swap_request(
        image_url,
        video_url,
        mode=mode,
        resolution=resolution,
        duration=duration,
        prompt=prompt,
        **common,
    )
    return _enqueue_kind(request)


def _enqueue_kind(request: Request) -> str:
    """Store and enqueue a checked request of any kind. A queued job may wait behind a
    long queue; the sweeper looks at it only after QUEUED_STALL_SECONDS."""
    now = wall_clock()
    job = queued_job(request, new_job_id(), now=now)
    return _enqueue(job, now + QUEUED_STALL_SECONDS, pipeline_signature)


def archive_akool_job(
    akool_id: str,
    *,
    idempotency_key: str | None = None,
    metadata: Mapping[str, str] | None = None,
    archive_key: str | None = None,
    on_complete: Mapping[str, Any] | None = None,
    notify_url: str | None = None,
) -> str:
    """Archive a video job other code submitted to Akool (any kind read with
    infobymodelid); return our job's id. It starts `submitted`, is never submitted by us,
    and is polled and archived like any job. An Akool id a job already holds returns that
    job, unless it failed or was cancelled. Refusals as for `submit_lipsync`."""
    request = adoption_request(
        akool_id,
        idempotency_key=idempotency_key,
        metadata=metadata,
        archive_key=archive_key,
        on_complete=on_complete,
        notify_url=notify_url,
    )
    now, owner = wall_clock(), poll_task_id()
    timeout = deps.settings().poll_timeout_seconds
    job = adopted_job(request, new_job_id(), now=now, poll_timeout=timeout, poll_owner=owner)
    return _enqueue(
        job, now + QUEUED_STALL_SECONDS, lambda job_id: adoption_signature(job_id, owner)
    )


def _enqueue(job: Job, due: float, chain_for: Callable[[str], Any]) -> str:
    """Store the new job and enqueue its chain; the existing job's id when a claim names
    it (nothing enqueued). A failed publish fails the job and raises."""
    job_id = deps.job_store().insert(job, due=due)
    if job_id != job.id:
        logger.info("Job %s answers this request already; nothing new enqueued", job_id)
        return job_id
    publish(job_id, chain_for)
    logger.info("Queued job %s", job_id)
    return job_id


def publish(job_id: str, chain_for: Callable[[str], Any]) -> None:
    """Publish a new job's chain (blocking: kombu's sockets); a failed publish fails the
    job, saying so, and raises."""
    try:
        chain_for(job_id).apply_async()
    except Exception as e:
        deps.job_store().fail(job_id, messages.not_queued(e))
        raise


def find_job(idempotency_key: str) -> Job:
    """The job made under `idempotency_key`; KeyError when there is none (any more)."""
    return deps.job_store().find(check_idempotency_key(idempotency_key))


def cancel_job(job_id: str) -> Job:
    """Cancel the job and return it; a job that ended already is returned unchanged.

    Queued, it is never submitted; submitted or processing, it is polled no more (Akool has
    no cancel call: its credit may be spent); archiving, the copy stops and its multipart
    upload is aborted. `on_complete` and `notify_url` hear of it once, like any ending.
    KeyError for an unknown job.
    """
    store = deps.job_store()
    if store.cancel(job_id, messages.CANCELLED):
        logger.warning("Job %s: cancelled by the application", job_id)
        announce_end(job_id)
    return store.get(job_id)


def get_job(job_id: str) -> Job:
    """The job's current record; KeyError for an unknown (or expired) id."""
    return deps.job_store().get(job_id)


# wait_for_job listens for the job's ending; it also reads the record this often, for an
# ending nothing published (a job ended by a worker of an older release during an upgrade).
WAIT_RECHECK_SECONDS = 10.0


def wait_for_job(job_id: str, timeout: float) -> Job:
    """The job once it has ended (archived, failed or cancelled), waiting at most `timeout`
    seconds on its ending's notification in Redis (Celery's result backend channel).

    Raises KeyError for an unknown id and TimeoutError when the job has not ended in time.
    """
    store = deps.job_store()
    return wait_until_final(store, job_id, timeout, ending=store.ending(job_id))


def wait_until_final(
    store: JobStore,
    job_id: str,
    timeout: float,
    *,
    ending: Any,
    clock: Callable[[], float] = time.monotonic,
) -> Job:
    """`wait_for_job` against a given store, subscription to the ending (a context manager
    with `wait(seconds)`) and monotonic clock."""
    if not math.isfinite(timeout) or timeout < 0:
        raise ValueError(f"timeout must be a finite number of seconds >= 0, got {timeout!r}")
    deadline = clock() + timeout
    with ending:
        while True:
            job = store.get(job_id)
            remaining = deadline - clock()
            if job.is_final:
                return job
            if remaining <= 0:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout:g} s")
            ending.wait(min(remaining, WAIT_RECHECK_SECONDS))
