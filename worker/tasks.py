"""Celery tasks: thin wrappers that decode arguments, build dependencies and state how they
retry.

The chain is submit -> poll -> archive; each task passes the job id on. The logic lives in
worker/pipeline.py and worker/archiving.py (the steps) and worker/sweeper.py (recovery);
each task's retry policy is built in worker/waiting/policy.py, and one runner, `_run`,
applies them all. A permanent error, or a transient one past its ceiling, fails the job with
a sentence from worker/messages.py and ends the chain (Ignore). A job that ends is announced
to the application (worker/notify.py). The tasks are where the wall clock is read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from celery import Task, chain, signature, uuid
from celery.exceptions import Ignore, SoftTimeLimitExceeded

from worker import deps, messages, notify
from worker.akool import SlotReserved, holding_slot
from worker.archiving import archive_step
from worker.celery_app import AKOOL_TASK_TIME_LIMIT_SECONDS, ARCHIVE_TIME_LIMIT_SECONDS, app
from worker.clock import wall_clock
from worker.errors import AkoolRateLimited, LipsyncError, NotYet, PollAgain, TransientError
from worker.names import (
    ARCHIVE_TASK,
    EXPIRY_GUARD_TASK,
    NOTIFY_TASK,
    POLL_TASK,
    SUBMIT_TASK,
    SWEEP_TASK,
    TASK_QUEUES,
    Step,
)
from worker.pipeline import await_completion, index_akool_id, submit_step
from worker.sweeper import at_risk, reopen_for_retry, sweep
from worker.waiting import (
    RetryPolicy,
    archive_policy,
    decide,
    notify_policy,
    poll_policy,
    poll_settings,
    submit_policy,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _fail_job(job_id: str, error: BaseException) -> None:
    """Giving up on a step: record the failure on the job and tell the application."""
    if not isinstance(error, LipsyncError):
        logger.error("Job %s: unexpected error", job_id, exc_info=error)
    message = messages.failure(error)
    if deps.job_store().fail(job_id, message):
        logger.error("Job %s failed: %s", job_id, message)
        announce_end(job_id)
    else:  # it ended meanwhile (cancelled, or archived by a twin): nothing fails
        logger.info("Job %s had ended already; not failed (%s)", job_id, message)


def _archive_gave_up(job_id: str, error: BaseException) -> None:
    """Giving up on an archive: on proof or our own refusal, or, for a copy that kept
    failing, once the video's expires_at passed (the policy's deadline)."""
    if isinstance(error, TransientError | SoftTimeLimitExceeded):
        error = LipsyncError(messages.expired_before_archived(error))
    _fail_job(job_id, error)


def _not_told(job_id: str, error: BaseException) -> None:
    """Giving up on a notification: the job stays as it is; the job and the log say why."""
    message = messages.notify_gave_up(error)
    logger.error("Job %s: %s", job_id, message)
    deps.job_store().outbox.finish(job_id, notify_error=message)


def _run(
    task: Task,
    job_id: str,
    policy: RetryPolicy,
    step: Callable[[], T],
    *,
    give_up: Callable[[str, BaseException], None] = _fail_job,
    reserves: bool = False,
) -> T:
    """Run one step under its task's retry policy: a countdown, or give up and stop.

    A task that `reserves` (submit, poll: they call Akool) comes back with the slot of the
    request budget it was given (`reserved_at`), or with none.
    """
    try:
        return step()
    except Exception as e:
        countdown = _countdown(task, job_id, policy, e)
        if countdown is None:
            give_up(job_id, e)
            raise Ignore() from e
        # Waiting for Akool or for the fleet's request budget is the normal course under load,
        # and a wait already logged is said once at WARNING.
        quiet = isinstance(e, AkoolRateLimited) or (isinstance(e, NotYet) and e.quiet)
        level = logging.INFO if quiet else logging.WARNING
        logger.log(level, "Job %s: %s; next try in %.1f s", job_id, e, countdown)
        if not reserves:
            raise task.retry(countdown=countdown) from e
        reserved_at = e.reserved_at if isinstance(e, SlotReserved | PollAgain) else None
        kwargs = dict(task.request.kwargs or {}, reserved_at=reserved_at)
        raise task.retry(countdown=countdown, kwargs=kwargs) from e


def _countdown(task: Task, job_id: str, policy: RetryPolicy, error: BaseException) -> float | None:
    """The policy's answer; when deciding itself needs Redis and Redis is away for a moment
    (a failover), a retryable error waits POLL_MAX_SECONDS instead of ending the chain."""
    try:
        return decide(policy, job_id, task.request.retries, error, now=wall_clock())
    except LipsyncError as trouble:
        if not isinstance(error, policy.retry_on):
            return None
        logger.warning("Job %s: could not plan the next try (%s)", job_id, trouble)
        return deps.settings().poll_max_seconds


def _task(name: str, **options: Any) -> Callable[[Callable[..., T]], Any]:
    """A task of ours: named, on its queue, retried only by its policy."""
    return app.task(name=name, queue=TASK_QUEUES[name], max_retries=None, **options)


# --- The job's chain ---------------------------------------------------------------------


@_task(SUBMIT_TASK, bind=True, time_limit=AKOOL_TASK_TIME_LIMIT_SECONDS)
def submit(self: Task, job_id: str, reserved_at: float | None = None) -> str:
    """Send the job to Akool (at most once) and pass the job id on to polling; a submit
    the request budget cannot serve now comes back at the slot reserved for it."""
    store, client = deps.job_store(), deps.akool_client()
    s = deps.settings()

    def step() -> str | None:
        with holding_slot(reserved_at):
            return submit_step(store, client, job_id, s)

    akool_id = _run(self, job_id, submit_policy(store, s), step, reserves=True)
    if akool_id is None:
        raise Ignore()
    index_akool_id(store, job_id, akool_id)
    return job_id


@_task(POLL_TASK, bind=True, time_limit=AKOOL_TASK_TIME_LIMIT_SECONDS)
def poll(self: Task, job_id: str, reserved_at: float | None = None) -> str:
    """Ask Akool about the job; come back on the poll schedule until it is done.

    Only one poll loop runs per job: a duplicated one (a redelivered countdown after the
    sweeper re-drove the job, or after the webhook reported the job done) finds another
    owner and stops. Once Akool is done, the archive follows unless the webhook started it.
    A poll the request budget cannot serve now comes back at the slot reserved for it.
    """
    store, s = deps.job_store(), deps.settings()
    job = store.own_poll_record(job_id, self.request.id)
    if job is None:
        logger.info("Job %s: another poll loop owns this job; stopping this one", job_id)
        raise Ignore()
    client, schedule = deps.akool_client(), poll_settings(s, job)

    def step() -> bool:
        with holding_slot(reserved_at):
            return await_completion(
                store, client, job_id, stall=s.stall_seconds, job=job, schedule=schedule
            )

    if not _run(self, job_id, poll_policy(store, s), step, reserves=True):
        raise Ignore()
    if not store.claim_archive(job_id):
        logger.info("Job %s: its archive was already started (webhook); stopping here", job_id)
        raise Ignore()
    return job_id


@_task(
    ARCHIVE_TASK,
    bind=True,
    time_limit=ARCHIVE_TIME_LIMIT_SECONDS,
    soft_time_limit=ARCHIVE_TIME_LIMIT_SECONDS - 60,
)
def archive(self: Task, job_id: str) -> str | None:
    """Stream the result into S3; retry transient failures while the video still exists."""
    store, archiver, s = deps.job_store(), deps.archiver(), deps.settings()

    def step() -> str | None:
        return archive_step(
            store,
            archiver,
            job_id,
            stall=s.stall_seconds,
            metrics=deps.metrics(),
            grace=s.archive_gone_grace_seconds,
        )

    uri = _run(self, job_id, archive_policy(store, s), step, give_up=_archive_gave_up)
    if uri is not None:
        announce_end(job_id)
    return uri


@_task(NOTIFY_TASK, bind=True, ignore_result=True, time_limit=AKOOL_TASK_TIME_LIMIT_SECONDS)
def notify_application(self: Task, job_id: str) -> None:
    """Deliver the ended job's notification (on_complete, notify_url) from the outbox, once;
    a bounded number of tries. A copy of this task finds the notification taken and stops."""
    store, hosts = deps.job_store(), deps.settings().notify_allowed_hosts
    if not store.outbox.claim(job_id, self.request.id, now=wall_clock()):
        logger.info("Job %s: nothing to announce, or another task announces it", job_id)
        raise Ignore()

    def step() -> None:
        notify.deliver_end(store, job_id, allowed_hosts=hosts, publish=_publish_on_complete)

    _run(self, job_id, notify_policy(store), step, give_up=_not_told)


def _publish_on_complete(sig: Mapping[str, Any], job_id: str) -> None:
    """Send the application's on_complete task with the job id as its first argument."""
    signature(dict(sig), app=app).apply_async(args=(job_id,))


def announce_end(job_id: str) -> None:
    """Ask a worker to deliver the ended job's notification now; never raises."""
    notify.announce_end(deps.job_store(), job_id, _send_notice)


def _send_notice(job_id: str) -> None:
    app.send_task(NOTIFY_TASK, args=[job_id], queue=TASK_QUEUES[NOTIFY_TASK])


def pipeline_signature(job_id: str) -> Any:
    """The whole job as one Celery chain. Its last task has the job id as task id: the
    result backend holds the job's ending under that id (written by the store's scripts
    whenever the job ends, before this task runs too), so `AsyncResult(job_id)` works."""
    return chain(submit.si(job_id), poll.s(), _last(job_id))


def adoption_signature(job_id: str, poll_owner: str) -> Any:
    """An adopted job's chain: polled by the loop named `poll_owner` (its record says so
    already), then archived."""
    return chain(poll.si(job_id).set(task_id=poll_owner), _last(job_id))


def poll_task_id() -> str:
    """A new poll loop's task id (named on the record before the loop is sent)."""
    return str(uuid())


def _last(job_id: str) -> Any:
    """The archive task that ends a job's chain, under the job id."""
    return archive.s().set(task_id=job_id)


def redrive(job_id: str, step: Step) -> None:
    """Enqueue a job again from `step` (submit, poll or archive)."""
    if step == Step.SUBMIT:
        pipeline_signature(job_id).apply_async()
    elif step == Step.POLL:
        # The new loop is named the owner first, so a stray old loop stops at its next poll.
        task_id = poll_task_id()
        store = deps.job_store()
        store.update(job_id, poll_owner=task_id)
        # Also mends the webhook index if a worker died between the submit and indexing it.
        index_akool_id(store, job_id, store.get(job_id).akool_id)
        adoption_signature(job_id, task_id).apply_async()
    elif step == Step.ARCHIVE:
        archive.si(job_id).set(task_id=job_id).apply_async()
    else:
        raise ValueError(f"unknown step {step!r}")


# --- Beat's tasks and the operator's retry ------------------------------------------------


@_task(SWEEP_TASK, ignore_result=True)
def sweep_stalled() -> dict[str, int]:
    """Re-drive jobs nothing is working on (beat runs it every SWEEP_INTERVAL_SECONDS)."""
    store = deps.job_store()
    # One sweep at a time across the fleet, even with two beats by mistake.
    if not store.try_lock("sweep", deps.settings().sweep_interval_seconds * 0.8):
        return {"redriven": 0, "failed": 0}
    result = sweep(store, deps.settings(), redrive, announce=announce_end, now=wall_clock())
    return {"redriven": len(result.redriven), "failed": len(result.failed)}


@_task(EXPIRY_GUARD_TASK, ignore_result=True)
def expiry_guard() -> int:
    """Log an ERROR for each job whose video Akool deletes within 24 h, not archived."""
    jobs = at_risk(deps.job_store(), now=wall_clock())
    for job in jobs:
        logger.error(
            "Job %s is at risk: Akool deletes its video at %s and it is not archived (%s)",
            job.id,
            job.expires_at.isoformat() if job.expires_at else "?",
            job.error or job.status,
        )
    return len(jobs)


def retry_job(job_id: str) -> Step:
    """Re-drive a failed or stuck job from where it stopped (`lipsync retry JOB_ID`); return
    the step. KeyError for an unknown job; ValueError when it must not be retried."""
    step = reopen_for_retry(deps.job_store(), deps.settings(), job_id, now=wall_clock())
    logger.warning("Job %s: an operator re-drives it from its %s step", job_id, step)
    redrive(job_id, step)
    return step
