"""The statuses of a job, written and compared everywhere as `JobStatus`.

A leaf module: no settings, no project imports. `JobStatus` is a `str` enum, so a status read
back from Redis or JSON compares equal to its member (`JobStatus.FAILED == "failed"`).
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is: queued -> submitted -> processing -> archiving -> archived (or failed)."""

    QUEUED = "queued"
    SUBMITTED = "submitted"
    PROCESSING = "processing"
    ARCHIVING = "archiving"
    ARCHIVED = "archived"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        """True for archived and failed: no task changes such a job any more."""
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.ARCHIVED, JobStatus.FAILED})
