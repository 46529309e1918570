"""The first two steps of a job, as plain functions: submit and poll (the third, the
archive, is worker/archiving.py).

Celery tasks (worker/tasks.py) call these with their dependencies; everything that decides
what happens to a job lives here and is tested without Celery. Each step is idempotent: a
redelivered or duplicated task finds the record already advanced and does no work twice.
An answer that is not proof the video is lost (worker/waiting/proof.py) makes the job wait: its
record says on what (`Job.waiting`), and the step is tried again.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from typing import Any, NoReturn

from worker import messages
from worker.akool import (
    CODE_NOT_FOUND,
    HTTP_TOO_MANY_REQUESTS,
    AkoolClient,
    AkoolStatus,
    await_callback,
    callback_url,
)
from worker.clock import Clock, wall_clock
from worker.config import (
    AKOOL_FILE_LIFETIME_SECONDS,
    STALL_SECONDS,
    Settings,
)
from worker.errors import (
    AkoolBusy,
    AkoolDoneWithoutUrl,
    AkoolError,
    AkoolJobFailed,
    AkoolRateLimited,
    AkoolRequestNotSent,
    AkoolSubmitUnknown,
    AkoolTransientError,
    JobStateError,
    LipsyncError,
    PollTimeout,
    StillProcessing,
    SubmitClaimTaken,
    VideoLost,
    WaitingOnAkool,
)
from worker.names import LIPSYNC_KIND
from worker.net import escape_controls
from worker.status import JobStatus, Wait
from worker.store import Job, JobStore
from worker.waiting import next_poll_delay, proof, submit_stall_seconds, waiting_poll_delay

logger = logging.getLogger(__name__)

# The settings a step uses when it is given none (plain calls, tests): the defaults.
DEFAULT_SETTINGS = Settings()
# Random bytes of a submit claim's token: one per step run, so a redelivered copy of the same
# task (same task id) is another run and cannot give back a claim it did not take.
CLAIM_TOKEN_BYTES = 12


def _proves_not_created(error: AkoolError, claimed: bool) -> bool:
    """True when a failed submit certainly created no Akool job.

    Without the claim the POST never left (the token fetch failed, or the budget refused
    first); a business code means Akool processed and refused the request; 1005 and 429
    are its rate limiter refusing before any work; a refused connection never carried the
    request. A 5xx, a timeout or a garbled answer may come after Akool created the job.
    """
    if not claimed or isinstance(error, AkoolRequestNotSent | AkoolRateLimited | AkoolBusy):
        return True
    return error.code is not None or error.status == HTTP_TOO_MANY_REQUESTS


def submit_step(
    store: JobStore,
    client: AkoolClient,
    job_id: str,
    settings: Settings,
    *,
    clock: Clock = wall_clock,
    token: str | None = None,
) -> str | None:
    """Send the job to Akool at most once; return Akool's id.

    Returns None when there is nothing to do: the job is final, or it was submitted already
    (a duplicated or redelivered task), or a submit claim is held, by another run whose POST
    may be in flight or by one that died (the sweeper settles that once it is overdue), or
    the submit's outcome is unknown and the job waits for Akool's callback to name it
    (worker/akool/reconcile.py). `token` names this step run's claim (default: a random one).
    """
    job = store.get(job_id)
    if job.is_final or job.akool_id or job.submit_unknown_ts is not None:
        return None
    if job.submit_claimed_ts is not None:
        logger.info("Job %s: another run holds its submit claim; nothing sent", job_id)
        return None
    # From here the sweeper expects an answer within the longest Akool call.
    store.heartbeat(job_id, clock() + submit_stall_seconds(settings))
    claim = SubmitClaim(store, job_id, settings, token or new_claim_token(), clock)
    try:
        akool_id = _send_submit(store, client, job, settings, claim, clock)
    except SubmitClaimTaken:
        logger.info("Job %s: another run took its submit claim first; nothing sent", job_id)
        return None
    except AkoolSubmitUnknown as e:
        if await_callback(store, job, str(e), settings, now=clock()):
            return None
        raise
    stamp = clock()
    recorded = store.update(
        job_id,
        due=stamp + settings.stall_seconds,
        status=JobStatus.SUBMITTED,
        akool_id=akool_id,
        submitted_ts=stamp,
        expires_ts=stamp + AKOOL_FILE_LIFETIME_SECONDS,
        poll_deadline_ts=stamp + settings.poll_timeout_seconds,
        **proof.cleared(job),
    )
    if not recorded:
        # Cancelled while the POST was out: Akool has the job, and it is polled no more.
        store.note(job_id, akool_id=akool_id, submitted_ts=stamp)
        logger.warning("Job %s ended while its submit was out; Akool's id %s", job_id, akool_id)
        return None
    logger.info("Submitted %s to Akool as %s", job_id, akool_id)
    return akool_id


def new_claim_token() -> str:
    """A submit claim's token for one step run."""
    return secrets.token_hex(CLAIM_TOKEN_BYTES)


class SubmitClaim:
    """The job's one submit claim, as one step run takes it (right before the POST leaves)
    and gives it back (only after a failure that proves nothing was created).

    Taken this late, after any wait for the request budget, a claim means the request was
    about to go out. A second send within the same run (after Akool refused a token with
    1101, so certainly nothing was created) keeps the claim it has. Only this run gives it
    back: the token it was taken with is compared in the script that releases it.
    """

    def __init__(
        self, store: JobStore, job_id: str, settings: Settings, token: str, clock: Clock
    ) -> None:
        self._store = store
        self._clock = clock
        self._job_id = job_id
        self._settings = settings
        self._token = token
        self.taken = False

    def take(self) -> None:
        """The hook run right before the POST leaves; SubmitClaimTaken when another run
        holds the claim (nothing is sent)."""
        if self.taken:
            return
        if not self._store.claim_submit(self._job_id, self._token):
            raise SubmitClaimTaken(f"job {self._job_id}: another run holds its submit claim")
        self.taken = True
        stall = submit_stall_seconds(self._settings)
        self._store.heartbeat(self._job_id, self._clock() + stall)

    def release(self) -> None:
        """Give the claim back if this run took it (a failure proved nothing was created)."""
        if self.taken:
            self._store.release_submit(self._job_id, self._token)
            self.taken = False


def webhook_for(job: Job, settings: Settings) -> str | None:
    """The webhookUrl Akool is given: the caller's own, else our receiver when configured
    (Akool takes one URL; a job with the caller's is polled on the normal schedule), naming
    the job and its token so that a callback finds it even if the submit's answer is lost."""
    if job.webhook_url or not settings.akool_webhook_url:
        return job.webhook_url or settings.akool_webhook_url
    if not job.webhook_token:  # stored before jobs had tokens
        return settings.akool_webhook_url
    return callback_url(settings.akool_webhook_url, job.id, job.webhook_token)


def _send_submit(
    store: JobStore,
    client: AkoolClient,
    job: Job,
    settings: Settings,
    claim: SubmitClaim,
    clock: Clock,
) -> str:
    webhook = webhook_for(job, settings)
    try:
        if job.kind == LIPSYNC_KIND or job.body is None:
            return client.submit(job.video_url, job.audio_url, webhook, before_send=claim.take)
        return client.submit_kind(job.kind, job.body, webhook, before_send=claim.take)
    except AkoolRateLimited:
        claim.release()  # the fleet's budget refused: nothing was sent, nothing to wait on
        raise
    except AkoolError as e:
        if _proves_not_created(e, claim.taken):
            claim.release()
            if isinstance(e, AkoolTransientError):
                # Akool could not take it now: the job waits on Akool, visibly.
                store.update(job.id, **proof.waited(job, Wait.AKOOL, str(e), clock()))
            raise
        if isinstance(e, AkoolTransientError):
            raise AkoolSubmitUnknown(
                messages.submit_maybe_created(e),
                code=e.code,
                status=e.status,
                url=e.url,
            ) from e
        raise


def poll_step(
    store: JobStore,
    client: AkoolClient,
    job_id: str,
    *,
    clock: Clock = wall_clock,
    stall: float = STALL_SECONDS,
    job: Job | None = None,
    schedule: Settings | None = None,
) -> AkoolStatus | None:
    """Ask Akool once and record its answer in one write; return its status, or None when
    the job is final. `job` is the record when the caller read it already.

    With `schedule` (the job's poll settings), a job Akool still works on gets its next poll
    planned in that write, and StillProcessing says when: after the backoff, or on the slot
    of the request budget booked at once when the budget's queue is longer than that.
    Raises AkoolJobFailed on status 4 and PollTimeout once Akool still says queued or
    processing past the deadline; Akool is always asked once more before a timeout is
    declared. Without a usable answer (worker/waiting/proof.py) the job waits on Akool, which does
    not count towards the deadline: WaitingOnAkool (poll again), or VideoLost on proof.
    """
    job = store.get(job_id) if job is None else job
    if job.is_final or job.result_url:
        return None if job.is_final else AkoolStatus(job.akool_id or "", 3, job.result_url)
    if not job.akool_id:
        raise JobStateError(f"job {job_id} has no Akool id to poll")
    try:
        status = client.status(job.akool_id)
    except AkoolRateLimited:
        raise  # Akool was not asked: nothing to count, nothing to wait on
    except AkoolError as e:
        _unanswered(store, client, job, e, clock(), stall=stall, schedule=schedule)
    return _record_status(store, client, job, status, clock(), stall=stall, schedule=schedule)


def _wait_kind(error: AkoolError) -> Wait:
    """What a poll that got no usable answer waits on."""
    if error.code == CODE_NOT_FOUND:
        return Wait.AKOOL_GONE
    if isinstance(error, AkoolDoneWithoutUrl):
        return Wait.AKOOL_URL
    return Wait.AKOOL


def _unanswered(
    store: JobStore,
    client: AkoolClient,
    job: Job,
    error: AkoolError,
    stamp: float,
    *,
    stall: float,
    schedule: Settings | None,
) -> NoReturn:
    """Akool gave no usable answer (an error, 1008, done without a URL): the poll is counted
    and the job waits on Akool, in one write with its next poll; VideoLost when the wait is
    proof that the video is gone."""
    values, waiting = proof.with_wait(job, _wait_kind(error), str(error), stamp)
    grace = (schedule or DEFAULT_SETTINGS).archive_gone_grace_seconds
    lost = proof.verdict(waiting, stamp, grace)
    if lost is not None:
        store.record_poll(job.id, None, **values)
        raise VideoLost(lost) from error
    quiet = waiting.wait_tries > 1
    if schedule is None:
        store.record_poll(job.id, None, **values)
        raise WaitingOnAkool(waiting.waiting or str(error), quiet=quiet) from error
    wait, reserved_at = client.book_next(waiting_poll_delay(schedule))
    store.record_poll(job.id, None, due=stamp + wait + stall, **values)
    raise WaitingOnAkool(
        waiting.waiting or str(error), next_in=wait, reserved_at=reserved_at, quiet=quiet
    ) from error


def _record_status(
    store: JobStore,
    client: AkoolClient,
    job: Job,
    status: AkoolStatus,
    stamp: float,
    *,
    stall: float,
    schedule: Settings | None,
) -> AkoolStatus:
    """Record what Akool said (the poll counted and logged with it) in one write. Akool
    answered: a wait on it is over, and its length moves the poll deadline on."""
    values: dict[str, Any] = proof.cleared(job)
    moved = proof.deadline_after_wait(job, stamp)
    if moved is not None:
        values["poll_deadline_ts"] = moved
        job = dataclasses.replace(job, poll_deadline_ts=moved)
    if status.failed:
        store.record_poll(job.id, status.status, **values)
        reason = None if status.error_reason is None else escape_controls(status.error_reason)
        raise AkoolJobFailed(messages.akool_job_failed(status.error_code, reason))
    if status.done:
        store.record_poll(
            job.id,
            status.status,
            due=stamp + stall,
            status=JobStatus.ARCHIVING,
            result_url=status.video_url,
            # The extra result files of its kind, archived beside the video.
            asset_urls=dict(status.assets) or None,
            # Seen before when an operator's retry asked for a fresh URL: when it finished.
            completed_ts=job.completed_ts or stamp,
            **values,
        )
        logger.info("Akool finished %s (%s)", job.id, job.akool_id)
        return status
    if job.status != JobStatus.PROCESSING:
        values["status"] = JobStatus.PROCESSING
    detail = f"Akool's last video_status was {status.status}"
    if schedule is None or _past_deadline(job, stamp):
        store.record_poll(job.id, status.status, **values)
        _check_deadline(job, stamp, detail)
        return status
    polled = dataclasses.replace(job, polls=job.polls + 1)
    wait, reserved_at = client.book_next(next_poll_delay(polled, schedule, now=stamp))
    store.record_poll(job.id, status.status, due=stamp + wait + stall, **values)
    raise StillProcessing(detail, next_in=wait, reserved_at=reserved_at)


def _past_deadline(job: Job, now: float) -> bool:
    return job.poll_deadline_ts is not None and now >= job.poll_deadline_ts


def _check_deadline(job: Job, now: float, detail: str) -> None:
    """PollTimeout once Akool's own answer says queued or processing past the deadline."""
    if _past_deadline(job, now):
        waited = now - (job.submitted_ts or job.created_ts)
        raise PollTimeout(messages.poll_timeout(waited, detail))


def await_completion(
    store: JobStore,
    client: AkoolClient,
    job_id: str,
    *,
    stall: float = STALL_SECONDS,
    job: Job | None = None,
    schedule: Settings | None = None,
    clock: Clock = wall_clock,
) -> bool:
    """Poll once: True when Akool is done (archive next), False when the job is final.

    Raises StillProcessing (transient: poll again on the schedule, see `poll_step`) while
    Akool works.
    """
    status = poll_step(store, client, job_id, stall=stall, job=job, schedule=schedule, clock=clock)
    if status is None:
        return False
    if not status.done:
        raise StillProcessing(f"Akool status {status.status}")
    return True


def index_akool_id(store: JobStore, job_id: str, akool_id: str | None) -> None:
    """Let a webhook callback, which names Akool's id only, find the job (best effort:
    without the index the callback is ignored and polling finishes the job)."""
    if not akool_id:
        return
    try:
        store.remember_akool_id(job_id, akool_id)
    except LipsyncError:
        logger.warning("Job %s: could not index Akool id %s for webhooks", job_id, akool_id)
