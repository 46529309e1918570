"""The sentences a user reads on a failed job (`job.error`), decided in one place.

Errors raised by the Akool client and the archiver carry their own sentence (code tables in
worker/akool.py, S3 and download failures in worker/archive.py); this module words what the
pipeline itself concludes, and how any error becomes the job's error.
"""

from __future__ import annotations

from worker.errors import LipsyncError

SUBMIT_UNKNOWN = (
    "a submit for this job was sent to Akool but its answer was never recorded (the worker "
    "stopped or the task was repeated); whether Akool created the job cannot be known, so "
    "it was not sent again, to avoid paying twice"
)
AKOOL_JOB_FAILED = "Akool reported that the lip-sync failed (video_status 4); it gives no reason"


def submit_maybe_created(error: LipsyncError) -> str:
    """A submit answered by a 5xx, a timeout or a garbled answer: Akool may have the job."""
    return (
        f"the submit to Akool failed ({error}); Akool may have created the job anyway, "
        "so it was not sent again to avoid paying twice"
    )


def submit_wait_ended(reason: str | None, waited_seconds: float) -> str:
    """An unknown submit's wait for Akool's callback ended without one naming the job: the
    sentence it would have failed with at once, and how long it waited."""
    return (
        f"{reason or SUBMIT_UNKNOWN}; no callback from Akool named the job within "
        f"{waited_seconds:.0f} s (SUBMIT_UNKNOWN_WAIT_SECONDS)"
    )


def poll_timeout(waited_seconds: float, detail: str) -> str:
    """Akool did not finish within POLL_TIMEOUT_SECONDS."""
    return (
        f"Akool had not finished the job after {waited_seconds:.0f} s "
        f"(POLL_TIMEOUT_SECONDS); {detail}"
    )


def not_queued(error: BaseException) -> str:
    """The job was stored but its first task could not be published."""
    return f"the job could not be queued ({type(error).__name__})"


def notify_gave_up(error: BaseException) -> str:
    """Why the application was not told that its job ended (the job itself is unchanged)."""
    return f"the application was not told that the job ended: {failure(error)}"


def failure(error: BaseException) -> str:
    """The job's error for `error`: our own sentence, never a stranger's text (it could
    carry a URL with a token, or a secret)."""
    if isinstance(error, LipsyncError):
        return str(error)
    return f"an unexpected error ({type(error).__name__}) stopped the job; see the log"
