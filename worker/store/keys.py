"""Every Redis key of lipsync-worker: the one place that knows the `lipsync:` layout.

A leaf module: no settings, no project imports. Celery's own keys (the queues named in
worker/names.py, `celery-task-meta-*`, `unacked*`) are Celery's business, not listed here.
"""

from __future__ import annotations

PREFIX = "lipsync:"

# One hash per job, expiring after JOB_RETENTION_DAYS.
JOB_PREFIX = PREFIX + "job:"
# Sorted sets of job ids: by creation time (listing), by when the job must next show
# progress (the sweeper), and by when Akool deletes a result not yet archived (the guard).
JOBS_INDEX = PREFIX + "jobs"
DUE = PREFIX + "due"
EXPIRY = PREFIX + "expiry"
# Our job id by Akool's id, for webhook callbacks, which name Akool's id only.
AKOOL_INDEX_PREFIX = PREFIX + "akool:"
# The fleet's shared Akool request budget (a GCRA theoretical arrival time). It shares the
# index's prefix for compatibility with records already stored; no Akool id is "budget".
AKOOL_BUDGET = PREFIX + "akool:budget"
# The budget's current rate (a hash: rps and when it last changed), cut on Akool's "too
# frequent" and raised back towards AKOOL_MAX_RPS (worker/akool/budget.py); read by the scrape.
AKOOL_BUDGET_RATE = PREFIX + "budget:akool_rate"
# The caller's claims on names, each holding the id of the job that made it, for as long as
# that job's record exists (the scripts refresh them with it): an idempotency key, and an
# object key under ARCHIVE_PREFIX (worker/contract.py).
IDEMPOTENCY_PREFIX = PREFIX + "idempotency:"
ARCHIVE_KEY_PREFIX = PREFIX + "archive_key:"
# Celery's result backend keeps a task's result under this prefix (its Redis backend's
# default, celery.backends.base.KeyValueStoreBackend.task_keyprefix); the job's ending is
# written there, under the job id, by the script that ends the job.
CELERY_RESULT_PREFIX = "celery-task-meta-"
# The one right to start a job's archive once its completion was seen.
ARCHIVE_CLAIM_PREFIX = PREFIX + "archive:claim:"
# Callbacks already accepted (replay protection).
WEBHOOK_NONCE_PREFIX = PREFIX + "webhook:nonce:"
# Digests of the payloads of callbacks already accepted: Akool's signature has no key, so a
# captured payload can be signed again with a fresh nonce and timestamp.
WEBHOOK_PAYLOAD_PREFIX = PREFIX + "webhook:payload:"
# Jobs whose end is still to be announced to the application (the outbox), by when the next
# delivery attempt is due. Written in the same script that makes the job final.
OUTBOX = PREFIX + "outbox"
# Ids of job records found unreadable (partial, wrong type, garbage), each logged once.
CORRUPT_SEEN = PREFIX + "corrupt"
# Fleet-wide locks (one sweep at a time).
LOCK_PREFIX = PREFIX + "lock:"
# The fleet's metric counters.
METRICS_AKOOL_CALLS = PREFIX + "metrics:akool_calls"
METRICS_ARCHIVE = PREFIX + "metrics:archive"
METRICS_LAG = PREFIX + "metrics:completion_to_archived"
METRICS_CORRUPT = PREFIX + "metrics:corrupt_records"
# Jobs by status (a hash: status -> count), kept by the scripts that create and move jobs,
# so a scrape reads one hash instead of every record; and by kind and status ("kind:status").
METRICS_JOBS_BY_STATUS = PREFIX + "metrics:jobs_by_status"
METRICS_JOBS_BY_KIND = PREFIX + "metrics:jobs_by_kind"
# Jobs waiting while a fault passes, one sorted set per family of waits (worker/status.py
# WAIT_FAMILIES), by since when they wait, and their counts by family (a hash), kept by the
# scripts that write waits: the metrics read the counts and the oldest of each set.
WAITING_PREFIX = PREFIX + "waiting:"
METRICS_WAITING = PREFIX + "metrics:waiting"
# Jobs Akool finished whose video is not archived yet, by when Akool finished them (a
# sorted set, kept by the same scripts): its head is the oldest unarchived finished video.
UNARCHIVED = PREFIX + "unarchived"


def job(job_id: str) -> str:
    """The hash of one job's record."""
    return JOB_PREFIX + job_id


def akool_index(akool_id: str) -> str:
    """Where our job id is kept under Akool's id."""
    return AKOOL_INDEX_PREFIX + akool_id


def idempotency(key: str) -> str:
    """Where the id of the job made under an idempotency key is kept."""
    return IDEMPOTENCY_PREFIX + key


def archive_key(key: str) -> str:
    """Where the id of the job that will store its video under `key` is kept."""
    return ARCHIVE_KEY_PREFIX + key


def result(job_id: str) -> str:
    """Where Celery's result backend finds how the job ended (its chain's last task id)."""
    return CELERY_RESULT_PREFIX + job_id


def archive_claim(job_id: str) -> str:
    """The marker of a job whose archive was started."""
    return ARCHIVE_CLAIM_PREFIX + job_id


def webhook_nonce(nonce: str, timestamp: int) -> str:
    """The marker of an accepted callback."""
    return f"{WEBHOOK_NONCE_PREFIX}{timestamp}:{nonce}"


def webhook_payload(digest: str) -> str:
    """The marker of an accepted callback's payload, by its sha256 hex digest."""
    return WEBHOOK_PAYLOAD_PREFIX + digest


def waiting(family: str) -> str:
    """The sorted set of jobs waiting on a `family` of faults (akool, file, ...)."""
    return WAITING_PREFIX + family


def lock(name: str) -> str:
    """A fleet-wide lock."""
    return LOCK_PREFIX + name
