"""A submit whose answer was lost, reconciled through the webhook: the plain parts.

A submit answered with a 5xx or a timeout, or cut off by a dying worker, may have created a
job at Akool (and been paid for) or not; it is never sent again. With our receiver
configured (AKOOL_WEBHOOK_URL), each submit's webhookUrl names its job and carries a per-job
secret: `<AKOOL_WEBHOOK_URL>?job=<id>&token=<token>` (`callback_url`). Such a job waits
(`await_callback`), `submitted` with `submit_unknown_ts` set and no Akool id, for up to
SUBMIT_UNKNOWN_WAIT_SECONDS: a callback whose URL carries the job's token makes it adopt
Akool's id (`adopt`, `adoption`: worker/web/callbacks.py applies them); else the sweeper fails it
when the wait ends, with the sentence it would have failed with at once. Nothing here sends a
submit. A job given the caller's own webhook_url cannot be reconciled (Akool calls the
caller, not us), nor one stored before jobs had tokens: those fail at once, as before.
"""

from __future__ import annotations

import hmac
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from worker import messages
from worker.config import AKOOL_FILE_LIFETIME_SECONDS, Settings
from worker.errors import WebhookRejected
from worker.status import JobStatus
from worker.store import Job, JobStore

logger = logging.getLogger(__name__)

# The query parameters of a webhookUrl that name its job: our id and the job's token.
JOB_PARAM = "job"
TOKEN_PARAM = "token"  # noqa: S105 - a parameter name, not a secret
_TOKEN_IN_QUERY = re.compile(rf"(^|&){TOKEN_PARAM}=[^&]*")
# Who owns the polling of a job once the webhook reported it done: no poll task has this id,
# so a poll loop waiting on its countdown finds another owner and stops.
WEBHOOK_POLL_OWNER = "webhook"


@dataclass(frozen=True)
class Route:
    """The job a callback's URL names, with the token that proves we gave that URL out."""

    job_id: str
    token: str


def callback_url(base: str, job_id: str, token: str) -> str:
    """Our receiver's URL for one job: `base` with `job` and `token` added to its query."""
    parts = urlsplit(base)
    named = urlencode({JOB_PARAM: job_id, TOKEN_PARAM: token})
    return urlunsplit(parts._replace(query=f"{parts.query}&{named}" if parts.query else named))


def read_route(query: str) -> Route | None:
    """The job a callback URL's query names; None for the plain URL. WebhookRejected (400)
    when it names a job without a token or the reverse, or either twice."""
    params = parse_qs(query, keep_blank_values=True)
    job_ids, tokens = params.get(JOB_PARAM, []), params.get(TOKEN_PARAM, [])
    if not job_ids and not tokens:
        return None
    if len(job_ids) != 1 or len(tokens) != 1:
        raise WebhookRejected("the callback URL must name one job and its token", http_status=400)
    return Route(job_ids[0], tokens[0])


def without_token(query: str) -> str:
    """A URL's query fit for a log line: the token's value masked."""
    return _TOKEN_IN_QUERY.sub(rf"\1{TOKEN_PARAM}=***", query)


def token_matches(job: Job, token: str) -> bool:
    """True when `token` is the job's webhook token (compared in constant time)."""
    if not job.webhook_token:
        return False
    return hmac.compare_digest(job.webhook_token.encode(), token.encode("utf-8", "replace"))


def reconcilable(job: Job, settings: Settings) -> bool:
    """True when a callback could name this job: our receiver is what Akool was told to call,
    with the job's token in the URL."""
    return bool(settings.akool_webhook_url and not job.webhook_url and job.webhook_token)


def await_callback(
    store: JobStore, job: Job, reason: str, settings: Settings, *, now: float
) -> bool:
    """Make a job whose submit's outcome is unknown wait for a callback naming it, until
    SUBMIT_UNKNOWN_WAIT_SECONDS from now; False when it cannot be reconciled (fail it now).

    `reason` is the sentence it fails with if no callback comes. A job that meanwhile ended
    or got Akool's id is left as it is (and True: there is nothing to fail).
    """
    if not reconcilable(job, settings):
        return False
    if store.update_without_akool_id(
        job.id,
        due=now + settings.submit_unknown_wait_seconds,
        status=JobStatus.SUBMITTED,
        submit_unknown_ts=now,
        submit_unknown_reason=reason,
    ):
        logger.warning(
            "Job %s: the submit's outcome is unknown; waiting up to %.0f s for Akool's "
            "callback to name it (SUBMIT_UNKNOWN_WAIT_SECONDS)",
            job.id,
            settings.submit_unknown_wait_seconds,
        )
    return True


def adopt(job: Job, akool_id: str) -> str:
    """What a callback naming `job` by its URL, for an Akool id no job is known by, does:
    "adopt" (the job has no Akool id yet: it takes this one), "known" (it has this one
    already), "final" (it ended, e.g. its wait is over: nothing changes) or "other" (it has
    another Akool id: the callback is not about it)."""
    if job.is_final:
        return "final"
    if not job.akool_id:
        return "adopt"
    return "known" if job.akool_id == akool_id else "other"


def adoption(
    job: Job, akool_id: str, status: int, url: str | None, settings: Settings, now: float
) -> dict[str, Any]:
    """The one write (due time included) that gives `job` Akool's id and what the callback
    says: failed (4), archiving (3 with its URL) or processing (anything else: polled from
    then on). Akool's clocks (file lifetime, poll deadline) start at the submit's claim."""
    sent = job.submit_claimed_ts or now
    values: dict[str, Any] = {
        "akool_id": akool_id,
        "submitted_ts": sent,
        "expires_ts": sent + AKOOL_FILE_LIFETIME_SECONDS,
        "poll_deadline_ts": sent + settings.poll_timeout_seconds,
    }
    if status == 4:
        return {**values, "status": JobStatus.FAILED, "error": messages.AKOOL_JOB_FAILED}
    values["due"] = now + settings.stall_seconds
    if status == 3 and url:
        return {
            **values,
            "status": JobStatus.ARCHIVING,
            "result_url": url,
            "completed_ts": now,
            "poll_owner": WEBHOOK_POLL_OWNER,
        }
    return {**values, "status": JobStatus.PROCESSING}
