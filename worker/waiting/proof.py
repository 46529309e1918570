"""The rule of proof, in one place: a job ends `failed` only on evidence that its video can
never be archived. Any other answer is "not yet".

Proof:
- Akool's video_status 4 (worker/pipeline.py, worker/web/callbacks.py);
- a business code retrying cannot fix, answered to the submit (worker/akool/client.py's tables);
- Akool's own answers saying queued or processing past POLL_TIMEOUT_SECONDS; time in which
  Akool gave no usable answer does not count towards it (`deadline_after_wait`);
- Akool answering 1008 ("does not exist") about an id it gave, or the file host answering
  gone (403/404/410), on every try for ARCHIVE_GONE_GRACE_SECONDS and at least
  MIN_GONE_TRIES tries (`verdict`);
- no usable answer from Akool for AKOOL_FILE_LIFETIME_SECONDS (7 days, after which Akool has
  deleted the video) plus ARCHIVE_GONE_GRACE_SECONDS (`verdict`);
- the video's expires_at having passed (the archive's retry deadline, worker/tasks.py).

Anything else (one 1008, one 404, a completed answer without a usable URL, any 5xx or
timeout, a refusal by the fleet's own request budget, S3 failing) is "not yet": the job waits,
its record says on what, since when and after how many tries (`Job.waiting`), and the step
is tried again. The waits are counted by kind in Redis for the metrics and alerts.

Plain functions of a job snapshot and the clock; the steps apply what they return.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from worker import messages
from worker.config import AKOOL_FILE_LIFETIME_SECONDS
from worker.net import escape_controls
from worker.status import Wait
from worker.store import Job

# Waits on answers that say the video is gone: proof once they lasted the grace.
GONE_KINDS = frozenset({Wait.AKOOL_GONE, Wait.FILE})
# Waits on Akool while polling: none of that time counts towards the poll deadline, and
# AKOOL_FILE_LIFETIME_SECONDS of it (plus the grace) is proof.
AKOOL_KINDS = frozenset({Wait.AKOOL, Wait.AKOOL_GONE, Wait.AKOOL_URL})
# A gone answer is never proof alone, however long ago the first one came.
MIN_GONE_TRIES = 2
# The longest sentence a wait keeps of the last answer (it may quote Akool's own message).
MAX_DETAIL_CHARS = 300


def waited(job: Job, kind: Wait, detail: str, now: float) -> dict[str, Any]:
    """The record's wait fields after one more try that met `kind` (`detail`: our sentence
    for what was answered): the same wait counted once more, or a new one from `now`."""
    detail = escape_controls(detail)[:MAX_DETAIL_CHARS]
    if job.wait_on == kind and job.wait_since_ts is not None:
        return {"wait_tries": job.wait_tries + 1, "wait_detail": detail}
    return {"wait_on": kind, "wait_since_ts": now, "wait_tries": 1, "wait_detail": detail}


def cleared(job: Job) -> dict[str, Any]:
    """The fields that end the job's wait (nothing when it waits on nothing)."""
    if not job.wait_on:
        return {}
    return {"wait_on": None, "wait_since_ts": None, "wait_tries": 0, "wait_detail": None}


def deadline_after_wait(job: Job, now: float) -> float | None:
    """The poll deadline once Akool answered again after a wait on it: moved on by the wait,
    which does not count towards POLL_TIMEOUT_SECONDS. None when it does not move."""
    if job.wait_on not in AKOOL_KINDS or job.wait_since_ts is None:
        return None
    if job.poll_deadline_ts is None:
        return None
    return job.poll_deadline_ts + max(0.0, now - job.wait_since_ts)


def verdict(job: Job, now: float, grace: float) -> str | None:
    """The sentence the job fails with when its wait (`job` holding this try's fields) is
    proof that the video can never be archived; None while it is "not yet"."""
    if job.wait_on is None or job.wait_since_ts is None:
        return None
    kind, lasted = Wait(job.wait_on), now - job.wait_since_ts
    detail = job.wait_detail or ""
    if kind in GONE_KINDS and lasted >= grace and job.wait_tries >= MIN_GONE_TRIES:
        return messages.gone_for_good(detail, job.wait_tries, lasted, grace)
    if kind in AKOOL_KINDS and lasted >= AKOOL_FILE_LIFETIME_SECONDS + grace:
        return messages.silent_for_good(detail, lasted)
    return None


def with_wait(job: Job, kind: Wait, detail: str, now: float) -> tuple[dict[str, Any], Job]:
    """`waited`'s fields, and the job as it reads with them (for `verdict`)."""
    values = waited(job, kind, detail, now)
    return values, dataclasses.replace(job, **values)
