"""The sweeper and the expiry guard: what keeps jobs moving when workers die.

Every unfinished job has a due time in Redis: the moment by which its current step must show
progress (a poll expected, an archive heartbeat). `sweep` finds jobs past it, which nothing is
working on (a worker was killed, a message was lost), and re-drives them from the step they
reached, never submitting to Akool again once a submit may have gone out. `at_risk` lists
jobs whose video Akool deletes soon and which are not archived.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from config.settings import Settings
from worker.jobs import Job, JobStore
from worker.pipeline import SUBMIT_UNKNOWN_MESSAGE

logger = logging.getLogger(__name__)

SUBMIT, POLL, ARCHIVE = "submit", "poll", "archive"
# How far ahead the expiry guard looks: a day leaves time for an operator to act.
AT_RISK_SECONDS = 24 * 3600
# Re-drives of one job back off (stall x 2^n) so a job that is merely slow, for example
# waiting behind a long queue, is not re-driven over and over.
MAX_REDRIVE_DOUBLINGS = 6


@dataclass(frozen=True)
class SweepResult:
    """What one sweep did: jobs re-driven by step, and jobs failed as unknown submits."""

    redriven: list[tuple[str, str]]
    failed: list[str]


def stalled_step(job: Job) -> str | None:
    """The step a stalled job must be re-driven from; None when it needs nothing."""
    if job.is_final:
        return None
    if job.result_url:
        return ARCHIVE
    if job.akool_id:
        return POLL
    return SUBMIT


# The status a re-opened job goes back to, by the step it is re-driven from.
REOPENED_STATUS = {SUBMIT: "queued", POLL: "processing", ARCHIVE: "archiving"}


def retry_step(job: Job) -> str:
    """The step an operator's retry re-drives `job` from; ValueError when it must not.

    Never a second submit once one may have reached Akool: with Akool's id the job is
    polled or archived; with a submit claim but no id, whether Akool created the job is
    unknown, and sending it again could pay twice.
    """
    if job.status == "archived":
        raise ValueError(f"job {job.id} is archived; there is nothing to retry")
    if job.result_url:
        return ARCHIVE
    if job.akool_id:
        return POLL
    if job.submit_claimed_ts is not None:
        raise ValueError(
            f"job {job.id}: a submit was sent to Akool but its outcome is unknown, so it is "
            "not sent again (that could pay twice); check Akool's dashboard for this job"
        )
    return SUBMIT


def sweep(
    store: JobStore,
    settings: Settings,
    redrive: Callable[[str, str], None],
    *,
    now: float | None = None,
    limit: int = 500,
) -> SweepResult:
    """Re-drive every overdue job; fail those whose submit outcome cannot be known."""
    now = time.time() if now is None else now
    result = SweepResult([], [])
    for job_id in store.overdue(now, limit):
        try:
            job = store.get(job_id)
        except KeyError:
            store.forget_due(job_id)  # the record expired
            continue
        _handle(store, settings, job, now, redrive, result)
    return result


def _handle(
    store: JobStore,
    settings: Settings,
    job: Job,
    now: float,
    redrive: Callable[[str, str], None],
    result: SweepResult,
) -> None:
    step = stalled_step(job)
    if step is None:
        store.forget_due(job.id)
    elif step == SUBMIT and job.submit_claimed_ts is not None:
        logger.error("Job %s: submit outcome unknown after a worker stopped; failing it", job.id)
        store.fail(job.id, SUBMIT_UNKNOWN_MESSAGE)
        result.failed.append(job.id)
    else:
        backoff = settings.stall_seconds * 2 ** min(job.redrives, MAX_REDRIVE_DOUBLINGS)
        store.update(job.id, due=now + backoff, redrives=job.redrives + 1)
        logger.warning("Job %s stalled in %s; re-driving its %s step", job.id, job.status, step)
        redrive(job.id, step)
        result.redriven.append((job.id, step))


def at_risk(store: JobStore, *, now: float | None = None) -> list[Job]:
    """Jobs not archived whose video Akool deletes within AT_RISK_SECONDS."""
    now = time.time() if now is None else now
    jobs = []
    for job_id in store.expiring(now + AT_RISK_SECONDS):
        try:
            job = store.get(job_id)
        except KeyError:
            store.forget_expiry(job_id)
            continue
        if job.status != "archived":
            jobs.append(job)
    return jobs
