"""The sentences a user reads on a failed job (`job.error`) and on a waiting one
(`job.waiting`), decided in one place.

Errors raised by the Akool client and the archiver carry their own sentence (code tables in
worker/akool/client.py, S3 and download failures in worker/archive.py); this module words what the
pipeline itself concludes, and how any error becomes the job's error.
"""

from __future__ import annotations

from datetime import datetime

from worker.errors import LipsyncError

# A waiting job's sentence by what it waits on (worker/status.py `Wait`): {detail} is our
# sentence for the last answer, {since} when the wait began, {tries} how many tries met it.
_WAITING = {
    "akool": "Akool unreachable since {since}: {detail}; tried {tries}",
    "akool_gone": "{detail}, about the id it gave; asked {tries} since {since}",
    "akool_url": "{detail}; asked {tries} since {since}",
}
_WAITING_ON_ARCHIVE = "{detail}; tried {tries} since {since}"

SUBMIT_UNKNOWN = (
    "a submit for this job was sent to Akool but its answer was never recorded (the worker "
    "stopped or the task was repeated); whether Akool created the job cannot be known, so "
    "it was not sent again, to avoid paying twice"
)
CANCELLED = (
    "cancelled by the application; Akool has no cancel call, so a job already submitted may "
    "still use its credit"
)
AKOOL_JOB_FAILED = "Akool reported that the lip-sync failed (video_status 4); it gives no reason"
# At most this much of Akool's own failure reason is quoted in a job's error.
AKOOL_REASON_CHARS = 300


def akool_job_failed(code: int | None, reason: str | None) -> str:
    """The error of a job Akool failed (video_status 4), quoting its reason where it gives
    one (`reason` already escaped by the caller: it came off the network), at most
    AKOOL_REASON_CHARS of it."""
    if reason is None and code is None:
        return AKOOL_JOB_FAILED
    said = reason or "no reason"
    if len(said) > AKOOL_REASON_CHARS:
        said = said[:AKOOL_REASON_CHARS] + "..."
    coded = "" if code is None else f" (error_code {code})"
    return f"Akool reported that the job failed (video_status 4): {said}{coded}"


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


def waiting(kind: str, since: datetime, tries: int, detail: str) -> str:
    """What a job that waits while a fault passes says it waits on (`Job.waiting`)."""
    template = _WAITING.get(kind, _WAITING_ON_ARCHIVE)
    times = f"{tries} time{'' if tries == 1 else 's'}"
    when = since.strftime("%Y-%m-%d %H:%M:%S UTC")
    return template.format(since=when, tries=times, detail=detail or "no answer")


def gone_for_good(detail: str, tries: int, lasted: float, grace: float) -> str:
    """A gone answer on every try for the grace: the proof the job fails with."""
    return (
        f"the result video is gone: {detail} on all {tries} tries over {lasted:.0f} s "
        f"(ARCHIVE_GONE_GRACE_SECONDS is {grace:g})"
    )


def silent_for_good(detail: str, lasted: float) -> str:
    """No usable answer from Akool for longer than it keeps a finished video."""
    return (
        f"Akool gave no usable answer for {lasted / 86400:.1f} days (the last: {detail}), "
        "longer than it keeps a finished video (7 days) plus ARCHIVE_GONE_GRACE_SECONDS: "
        "the video is gone"
    )


def expired_before_archived(error: BaseException) -> str:
    """The archive kept failing until the video's expires_at passed."""
    return (
        "Akool deleted the video (its expires_at passed) before it could be archived; the "
        f"last try: {failure(error)}"
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
