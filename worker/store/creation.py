"""Making a new job: the names it claims (an idempotency key, an archive key, an adopted
Akool id), the layout of the CREATE_JOB script that stores it unless a claim is held
(worker/store/scripts.py), and what its answer means. Shared by the store and the asyncio
API (worker/aio.py), which runs the same script on its own connection.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import fields
from typing import Any

from worker.errors import ArchiveKeyTaken, IdempotencyConflict
from worker.store import keys
from worker.store.records import Job, encode

# Random bytes in a job's webhook token (32 URL-safe characters): unguessable.
WEBHOOK_TOKEN_BYTES = 24


def new_webhook_token() -> str:
    """A job's secret for our webhook receiver (see `Job.webhook_token`)."""
    return secrets.token_urlsafe(WEBHOOK_TOKEN_BYTES)


def with_token(job: Job) -> Job:
    """The job with its webhook token, when our receiver will hear of it: not when Akool
    calls the caller's own webhook_url, nor for a job other code submitted (adopted)."""
    if job.webhook_token or job.webhook_url or job.adopted_ts is not None:
        return job
    return dataclasses.replace(job, webhook_token=new_webhook_token())


def claims(job: Job) -> list[tuple[str, str]]:
    """The names a new job claims, as (kind, Redis key): its idempotency key, its archive
    key, and the Akool id it adopts."""
    out = []
    if job.idempotency_key is not None:
        out.append(("idempotency", keys.idempotency(job.idempotency_key)))
    if job.archive_key is not None:
        out.append(("archive_key", keys.archive_key(job.archive_key)))
    if job.adopted_ts is not None and job.akool_id:
        out.append(("akool", keys.akool_index(job.akool_id)))
    return out


def creation(job: Job, *, due: float, ttl: int) -> tuple[list[str], list[Any]]:
    """The KEYS and ARGV of CREATE_JOB for a new job (shared with worker/aio.py)."""
    values = {f.name: getattr(job, f.name) for f in fields(job) if getattr(job, f.name) is not None}
    flat = [item for pair in encode(values).items() for item in pair]
    named = claims(job)
    names = [
        keys.job(job.id),
        keys.JOBS_INDEX,
        keys.DUE,
        keys.METRICS_JOBS_BY_STATUS,
        *(key for _, key in named),
    ]
    head = [ttl, job.id, repr(job.created_ts), repr(due), job.request_digest or ""]
    return names, [*head, len(named), *(kind for kind, _ in named), *flat]


def created(answer: Any, job: Job) -> str:
    """The id CREATE_JOB answered with, or the refusal it stands for."""
    verdict, holder = (a.decode() if isinstance(a, bytes) else str(a) for a in answer)
    if verdict == "conflict":
        raise IdempotencyConflict(job.idempotency_key or "", holder)
    if verdict == "taken":
        raise ArchiveKeyTaken(job.archive_key or "", holder)
    return holder
