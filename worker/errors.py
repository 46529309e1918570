"""The one exception tree of lipsync-worker.

Every failure the pipeline can meet is a `LipsyncError`. Whether retrying can help is part of
the type: `TransientError` may succeed later, `PermanentError` never will. Errors from
`requests` and `botocore` are translated into these at the client and archiver boundaries,
so tasks import neither library. Messages are sentences a person understands; none carries
a secret.
"""

from __future__ import annotations


class LipsyncError(Exception):
    """Root of every error raised by lipsync-worker."""


class TransientError(LipsyncError):
    """Retrying later may succeed (outages, rate limits, 5xx, timeouts)."""


class PermanentError(LipsyncError):
    """Retrying cannot help; the job fails with this message."""


class ConfigError(LipsyncError, ValueError):
    """A setting is missing or malformed; the message names the variable."""


# --- Akool ---------------------------------------------------------------------------------


class AkoolError(LipsyncError):
    """Akool answered with an error or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        status: int | None = None,
        url: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.url = url
        # Seconds Akool (Retry-After) or our own request budget asks us to wait, if known.
        self.retry_after = retry_after


class AkoolTransientError(AkoolError, TransientError):
    """Akool is busy, rate limiting, down or unreachable; the request may be repeated."""


class AkoolRateLimited(AkoolTransientError):
    """The fleet's shared request budget for Akool (AKOOL_MAX_RPS) is spent for now; the
    request was not sent. `retry_after` says when a slot is free."""

    def __init__(self, message: str, *, retry_after: float, url: str | None = None) -> None:
        super().__init__(message, url=url, retry_after=retry_after)


class AkoolRequestNotSent(AkoolTransientError):
    """The request never reached Akool (connection refused, connect timeout): always safe
    to repeat, even a submit."""


class AkoolDoneWithoutUrl(AkoolTransientError):
    """Akool says the job is done (video_status 3) but gives no usable http(s) URL of the
    video ("null", empty, a relative path): ask again."""


class AkoolBusy(AkoolTransientError):
    """Akool asks for fewer requests (code 1005, HTTP 429): it refused before any work, so
    the request may be repeated, even a submit; the fleet's rate is cut."""


class AkoolPermanentError(AkoolError, PermanentError):
    """Akool refused the request for a reason that repeating it cannot change."""


class AkoolAuthError(AkoolPermanentError):
    """The API key, client credentials or token were refused."""


class AkoolSubmitUnknown(AkoolPermanentError):
    """A submit may or may not have created a job at Akool; it is not sent again, so that
    one lip-sync is never paid for twice."""


class AkoolJobFailed(AkoolPermanentError):
    """Akool reports the lip-sync job itself as failed (video_status 4)."""


class PollTimeout(PermanentError):
    """Akool did not finish the job within POLL_TIMEOUT_SECONDS."""


class VideoLost(PermanentError):
    """The evidence says the video can never be archived (worker/waiting/proof.py): gone on every
    try for ARCHIVE_GONE_GRACE_SECONDS, or Akool silent past its file lifetime."""


class NotYet(TransientError):
    """An answer that is not proof (worker/waiting/proof.py): the step is tried again. `quiet`: the
    same wait was logged already, so it is said at INFO."""

    def __init__(self, message: str, *, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = quiet


class PollAgain(NotYet):
    """The poll is to be made again later: in `next_in` seconds when the poll already
    planned it (and recorded it), on the slot of the request budget reserved for it at
    `reserved_at` (epoch seconds) if any."""

    def __init__(
        self,
        message: str,
        *,
        next_in: float | None = None,
        reserved_at: float | None = None,
        quiet: bool = False,
    ) -> None:
        super().__init__(message, quiet=quiet)
        self.next_in = next_in
        self.reserved_at = reserved_at


class StillProcessing(PollAgain):
    """Akool answered the poll: the job is not finished yet."""

    def __init__(
        self, message: str, *, next_in: float | None = None, reserved_at: float | None = None
    ) -> None:
        super().__init__(message, next_in=next_in, reserved_at=reserved_at, quiet=True)


class WaitingOnAkool(PollAgain):
    """Akool gave no usable answer (unreachable, an error, 1008, done without a usable
    URL): "not yet", the job waits (Job.waiting) and is polled again."""


# --- Archive -------------------------------------------------------------------------------


class ArchiveError(LipsyncError):
    """Copying the result into S3 failed."""

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        bucket: str | None = None,
        key: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.bucket = bucket
        self.key = key
        self.status = status


class DownloadError(ArchiveError, TransientError):
    """The download from the file host broke off, was short, too slow, or the host failed."""


class SourceGoneError(ArchiveError, TransientError):
    """The file host answered 403/404/410. Not proof by itself (a CDN may not have the file
    yet): only on every try for ARCHIVE_GONE_GRACE_SECONDS (worker/waiting/proof.py)."""


class SourceRefusedError(ArchiveError, PermanentError):
    """Our own policy refuses the result URL: a host or scheme we do not fetch from, or a
    video over ARCHIVE_MAX_BYTES. A decision under the settings, not an answer."""


class StorageError(ArchiveError, TransientError):
    """S3 could not be reached or failed on its side."""


class WaitingOnArchive(NotYet):
    """The copy failed in a way that is not proof (the file host, the download, S3): the
    job waits (Job.waiting) and the archive is tried again."""


class StorageRefusedError(StorageError):
    """S3 refused the upload (no such bucket, access denied, bad configuration): retried
    until the video expires, since the operator can fix it meanwhile and the video would
    otherwise be lost."""


# --- Jobs ----------------------------------------------------------------------------------


class JobStateError(PermanentError):
    """The job record is missing or not in a state this step can act on."""


class CorruptRecord(LipsyncError, KeyError):
    """A job record that is not whole (fields missing or unparsable, or a key of another
    type). A KeyError, like a missing record: callers that skip unknown jobs skip it too."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(key, why)
        self.key = key
        self.why = why

    def __str__(self) -> str:
        return f"the job record {self.key} cannot be read: {self.why}"


class StoreUnavailable(TransientError):
    """Redis, which holds the job records, could not be reached."""


class SubmitClaimTaken(LipsyncError):
    """Another step run holds the job's submit claim (its submit may be in flight): this
    one sends nothing and stops; the holder, or the sweeper once it is overdue, goes on."""


# --- The caller's contract (worker/contract.py) ----------------------------------------------


class IdempotencyConflict(LipsyncError, ValueError):
    """An idempotency key already names a job made by a different request; nothing was
    stored. `key` is the caller's key and `job_id` the job that holds it."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(
            f"idempotency_key {key[:80]!r} already names job {job_id}, made by a different "
            "request (every argument must be equal to reuse a key)"
        )
        self.key = key
        self.job_id = job_id


class ArchiveKeyTaken(LipsyncError, ValueError):
    """Another job whose record exists will store its video under this archive_key; nothing
    was stored. `job_id` is that job."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(f"archive_key {key[:80]!r} is already held by job {job_id}")
        self.key = key
        self.job_id = job_id


class JobEnded(LipsyncError):
    """How a job that did not end archived reads in Celery's result backend: the exception
    `AsyncResult(job_id).get()` raises (its message is the job's error)."""


class JobFailed(JobEnded):
    """The job failed: its error says why."""


class JobCancelled(JobEnded):
    """The application cancelled the job."""


# --- Webhooks and notifications --------------------------------------------------------------


class WebhookRejected(PermanentError):
    """A callback that is refused; `http_status` is what the receiver answers."""

    def __init__(self, message: str, *, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status


class WebhookKeyError(PermanentError):
    """The client secret is not a valid AES key (16, 24 or 32 bytes as UTF-8)."""


class NotifyFailed(TransientError):
    """The notify_url could not be reached or answered that it is busy (5xx, 429)."""


class NotifyRefused(PermanentError):
    """The notify_url refused the record (a 3xx or 4xx answer); repeating will not help."""
