"""The statuses of a job, written and compared everywhere as `JobStatus`, what an
unfinished job may wait on (`Wait`), and the two spans of a job's life that the sweeper, the
expiry guard, the metrics and the dashboard all measure by.

A leaf module: no settings, no project imports. Both enums are `str` enums, so a value read
back from Redis or JSON compares equal to its member (`JobStatus.FAILED == "failed"`).
"""

from __future__ import annotations

from enum import StrEnum

# A job still queued this long after submission is re-driven by the sweeper (its message
# may have been lost with a worker that had reserved it). Re-driving is harmless: the submit
# claim makes every copy after the first a no-op.
QUEUED_STALL_SECONDS = 300.0
# How far ahead the expiry guard looks: a day leaves time for an operator to act.
AT_RISK_SECONDS = 24 * 3600
# The newest jobs a filter over listings looks through (the dashboard's, `lipsync jobs
# --meta`): a filter reads every record of the window, so it stays one quick round trip.
FILTER_WINDOW = 2000


class JobStatus(StrEnum):
    """Where a job is: queued -> submitted -> processing -> archiving -> archived (or failed,
    or cancelled by the application)."""

    QUEUED = "queued"
    SUBMITTED = "submitted"
    PROCESSING = "processing"
    ARCHIVING = "archiving"
    ARCHIVED = "archived"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """True for archived, failed and cancelled: no task changes such a job any more."""
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.ARCHIVED, JobStatus.FAILED, JobStatus.CANCELLED})


class Wait(StrEnum):
    """What an unfinished job waits on while a fault passes (worker/waiting/proof.py): an answer
    that is "not yet", not proof that the video is lost. Stored in the record's `wait_on`;
    the metric `lipsync_jobs_waiting{on}` counts the jobs by its `family`."""

    # Akool could not be asked or failed (5xx, a timeout, no connection, 1005, 429, garbled
    # or refused answers): nothing it said is about the job.
    AKOOL = "akool"
    # Akool answers 1008 ("does not exist") about an id it gave.
    AKOOL_GONE = "akool_gone"
    # Akool says the job is done but gives no usable http(s) URL of the video.
    AKOOL_URL = "akool_url"
    # The result's host answers that the file is gone (403, 404, 410).
    FILE = "file"
    # The download fails otherwise: the host's 5xx, a broken or too slow transfer, DNS.
    DOWNLOAD = "download"
    # S3 cannot be reached, fails, or refuses the upload.
    STORAGE = "storage"

    @property
    def family(self) -> str:
        """What the metrics count this wait under: akool (the three waits on Akool), file,
        download or storage."""
        return "akool" if self.value.startswith("akool") else self.value


# The families of waits the metrics count, each in a sorted set of its own.
WAIT_FAMILIES = ("akool", "file", "download", "storage")
