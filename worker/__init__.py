"""lipsync-worker: Akool lip-sync jobs on Celery + Redis, archived to S3.

from worker import submit_lipsync, get_job
job_id = submit_lipsync(video_url, audio_url)
job = get_job(job_id)   # .status .akool_id .archive_uri .error .created_at .expires_at
job = wait_for_job(job_id, timeout=600)   # archived or failed, else TimeoutError
"""

from worker.api import get_job, submit_lipsync, wait_for_job
from worker.store import Job

__all__ = ["Job", "get_job", "submit_lipsync", "wait_for_job"]
