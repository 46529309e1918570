"""The job store in Redis: key names (keys), the job record (records), the Lua scripts that
keep records whole (scripts), the store itself (jobs), how a new job is made (creation),
how an ending is waited for (ending) and the notifications still owed (outbox).
"""

from __future__ import annotations

from worker.store import counts, keys, scripts
from worker.store.creation import created, creation, with_token
from worker.store.jobs import Job, JobStore, is_job_id, moving, new_job_id
from worker.store.outbox import NOTICE_LEASE_SECONDS
from worker.store.records import decode, poll_log_entries, store_error

__all__ = [
    "NOTICE_LEASE_SECONDS",
    "Job",
    "JobStore",
    "counts",
    "decode",
    "is_job_id",
    "keys",
    "new_job_id",
    "poll_log_entries",
    "scripts",
    "created",
    "creation",
    "with_token",
    "moving",
    "store_error",
]
