"""The sweeper and the expiry guard: what keeps jobs moving when workers die.

Every unfinished job has a due time in Redis: the moment by which its current step must show
progress (a poll expected, an archive heartbeat). `sweep` finds jobs past it, which nothing is
working on (a worker was killed, a message was lost), and re-drives them from the step they
reached, never submitting to Akool again once a submit may have gone out: such a job waits
for Akool's callback to name it (worker/akool/reconcile.py) and fails when that wait ends, or at
once when no callback can. `at_risk` lists jobs whose video Akool deletes soon and which are
not archived.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from worker import messages
from worker.akool import await_callback
from worker.config import Settings
from worker.names import Step
from worker.status import AT_RISK_SECONDS, QUEUED_STALL_SECONDS, JobStatus
from worker.store import Job, JobStore

logger = logging.getLogger(__name__)

# Re-drives of one job back off (stall x 2^n) so a job that is merely slow, for example
# waiting behind a long queue, is not re-driven over and over.
MAX_REDRIVE_DOUBLINGS = 6


@dataclass(frozen=True)
class SweepResult:
    """What one sweep did: jobs re-driven by step, and jobs failed as unknown submits."""

    redriven: list[tuple[str, Step]]
    failed: list[str]


def resume_step(job: Job) -> Step:
    """The step the job goes on from, by what its record holds: a result URL is archived,
    an Akool id is polled, anything else is (still) to be submitted."""
    if job.result_url:
        return Step.ARCHIVE
    if job.akool_id:
        return Step.POLL
    return Step.SUBMIT


def stalled_step(job: Job) -> Step | None:
    """The step a stalled job must be re-driven from; None when it needs nothing."""
    return None if job.is_final else resume_step(job)


# The status a re-opened job goes back to, by the step it is re-driven from.
REOPENED_STATUS = {
    Step.SUBMIT: JobStatus.QUEUED,
    Step.POLL: JobStatus.PROCESSING,
    Step.ARCHIVE: JobStatus.ARCHIVING,
}


def retry_step(job: Job) -> Step:
    """The step an operator's retry re-drives `job` from; ValueError when it must not.

    Never a second submit once one may have reached Akool: with Akool's id the job is
    polled or archived; with a submit claim but no id, whether Akool created the job is
    unknown, and sending it again could pay twice. A failed job with Akool's id is polled,
    so Akool is asked for a fresh URL before the video is downloaded again (the one it
    failed with may have gone stale).
    """
    if job.status == JobStatus.ARCHIVED:
        raise ValueError(f"job {job.id} is archived; there is nothing to retry")
    if job.status == JobStatus.CANCELLED:
        raise ValueError(f"job {job.id} was cancelled; submit it again to run it")
    if job.status == JobStatus.FAILED and job.akool_id:
        return Step.POLL
    step = resume_step(job)
    if step == Step.SUBMIT and job.submit_claimed_ts is not None:
        raise ValueError(
            f"job {job.id}: a submit was sent to Akool but its outcome is unknown, so it is "
            "not sent again (that could pay twice); check Akool's dashboard for this job"
        )
    return step


def reopen_for_retry(store: JobStore, settings: Settings, job_id: str, *, now: float) -> Step:
    """Make a failed or stuck job due again for an operator's retry; return the step to
    re-drive. KeyError for an unknown job; ValueError when it must not be retried."""
    job = store.get(job_id)
    step = retry_step(job)
    if job.status != JobStatus.FAILED:
        store.update(job_id, due=now + settings.stall_seconds, redrives=0)
        return step
    due = now + (settings.stall_seconds if step != Step.SUBMIT else QUEUED_STALL_SECONDS)
    # A job that timed out polling gets a whole new poll window, or it fails again at once.
    deadline = now + settings.poll_timeout_seconds if step == Step.POLL else None
    fresh = step == Step.POLL and job.result_url is not None
    status = REOPENED_STATUS[step]
    if not store.reopen(job_id, status, due=due, poll_deadline=deadline, fresh_url=fresh):
        raise ValueError(f"job {job_id} changed while being retried; look at it again")
    return step


def sweep(
    store: JobStore,
    settings: Settings,
    redrive: Callable[[str, Step], None],
    *,
    announce: Callable[[str], None] | None = None,
    now: float,
    limit: int = 500,
) -> SweepResult:
    """Re-drive every overdue job; fail those whose submit outcome cannot be known; and
    with `announce`, deliver notifications left in the outbox (a worker died, a retry is
    due). Each record is handled on its own: one that cannot be read is skipped (and
    logged once), never stopping the others."""
    result = SweepResult([], [])
    for job_id in store.overdue(now, limit):
        job = store.read(job_id)
        if job is None:
            store.forget_due(job_id)  # expired, or unreadable: nothing to re-drive
            continue
        _handle(store, settings, job, now, redrive, result)
    if announce is not None:
        for job_id in [*result.failed, *store.outbox.due(now, limit)]:
            announce(job_id)
    return result


def _handle(
    store: JobStore,
    settings: Settings,
    job: Job,
    now: float,
    redrive: Callable[[str, Step], None],
    result: SweepResult,
) -> None:
    step = stalled_step(job)
    if step is None:
        store.forget_due(job.id)
    elif step == Step.SUBMIT and job.submit_claimed_ts is not None:
        _submit_unknown(store, settings, job, now, result)
    else:
        backoff = settings.stall_seconds * 2 ** min(job.redrives, MAX_REDRIVE_DOUBLINGS)
        store.update(job.id, due=now + backoff, redrives=job.redrives + 1)
        logger.warning("Job %s stalled in %s; re-driving its %s step", job.id, job.status, step)
        redrive(job.id, step)
        result.redriven.append((job.id, step))


def _submit_unknown(
    store: JobStore, settings: Settings, job: Job, now: float, result: SweepResult
) -> None:
    """A job whose submit left but whose answer was never recorded: it waits for Akool's
    callback to name it when one can (worker/akool/reconcile.py), and fails once that wait is over
    (at once when none can), never by a second submit."""
    if job.submit_unknown_ts is None:
        if await_callback(store, job, messages.SUBMIT_UNKNOWN, settings, now=now):
            return
        logger.error("Job %s: submit outcome unknown after a worker stopped; failing it", job.id)
        if store.fail(job.id, messages.SUBMIT_UNKNOWN):
            result.failed.append(job.id)
        return
    wait_ends = job.submit_unknown_ts + settings.submit_unknown_wait_seconds
    if now < wait_ends:  # SUBMIT_UNKNOWN_WAIT_SECONDS was raised since the wait began
        store.update_without_akool_id(job.id, due=wait_ends)
        return
    error = messages.submit_wait_ended(job.submit_unknown_reason, now - job.submit_unknown_ts)
    # Refused once a callback gave the job Akool's id: adopted, it is not failed.
    if store.update_without_akool_id(job.id, status=JobStatus.FAILED, error=error):
        logger.error("Job %s failed: %s", job.id, error)
        result.failed.append(job.id)


def at_risk(store: JobStore, *, now: float) -> list[Job]:
    """Jobs not archived whose video Akool deletes within AT_RISK_SECONDS."""
    jobs = []
    for job_id in store.expiring(now + AT_RISK_SECONDS):
        job = store.read(job_id)
        if job is None:
            store.forget_expiry(job_id)  # expired, or unreadable
            continue
        if job.status != JobStatus.ARCHIVED:
            jobs.append(job)
    return jobs
