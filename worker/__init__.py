"""lipsync-worker: Akool lip-sync jobs on Celery + Redis, archived to S3.

from worker import submit_lipsync, get_job, wait_for_job
job_id = submit_lipsync(video_url, audio_url, idempotency_key="order-17")
job = get_job(job_id)   # .status .akool_id .archive_uri .error .metadata .expires_at
job = wait_for_job(job_id, timeout=600)   # archived, failed or cancelled, else TimeoutError

Also: find_job(idempotency_key), cancel_job(job_id), archive_akool_job(akool_id) to archive
a job other code submitted, and worker.aio for the same calls as coroutines.
"""

from worker.api import (
    archive_akool_job,
    cancel_job,
    find_job,
    get_job,
    submit_character_swap,
    submit_lipsync,
    submit_talking_avatar,
    submit_talking_photo,
    submit_video_translation,
    wait_for_job,
)
from worker.errors import ArchiveKeyTaken, IdempotencyConflict
from worker.status import JobStatus
from worker.store import Job

__all__ = [
    "ArchiveKeyTaken",
    "IdempotencyConflict",
    "Job",
    "JobStatus",
    "archive_akool_job",
    "cancel_job",
    "find_job",
    "get_job",
    "submit_character_swap",
    "submit_lipsync",
    "submit_talking_avatar",
    "submit_talking_photo",
    "submit_video_translation",
    "wait_for_job",
]
