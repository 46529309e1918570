"""Names shared by every process: Celery queues and tasks, and the steps of a job.

A leaf module: it reads no settings and imports nothing from the project, so the API, the
tasks, the web process and the tests can all use these names without importing Celery.
"""

from __future__ import annotations

from enum import StrEnum

# Akool-facing tasks (short HTTP calls) and the archive (long copies) scale apart.
AKOOL_QUEUE = "lipsync.akool"
ARCHIVE_QUEUE = "lipsync.archive"
QUEUES = (AKOOL_QUEUE, ARCHIVE_QUEUE)

SUBMIT_TASK = "lipsync.submit"
POLL_TASK = "lipsync.poll"
ARCHIVE_TASK = "lipsync.archive"
NOTIFY_TASK = "lipsync.notify"
SWEEP_TASK = "lipsync.sweep"
EXPIRY_GUARD_TASK = "lipsync.expiry_guard"

# The queue each task runs on. The notification is a short HTTP call, like Akool's.
TASK_QUEUES = {
    SUBMIT_TASK: AKOOL_QUEUE,
    POLL_TASK: AKOOL_QUEUE,
    ARCHIVE_TASK: ARCHIVE_QUEUE,
    NOTIFY_TASK: AKOOL_QUEUE,
    SWEEP_TASK: AKOOL_QUEUE,
    EXPIRY_GUARD_TASK: AKOOL_QUEUE,
}


class Step(StrEnum):
    """The three steps of a job; a stalled or retried job is re-driven from one of them."""

    SUBMIT = "submit"
    POLL = "poll"
    ARCHIVE = "archive"


# The kind of Akool video job every record of an earlier release is (worker/akool/kinds.py
# has a row per kind): it is sent with its video and audio URLs, any other with its body.
LIPSYNC_KIND = "lipsync"
# The kind of an adopted job: Akool's lookup does not say what kind of video it is.
UNKNOWN_KIND = "unknown"

MiB = 1024 * 1024
