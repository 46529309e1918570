"""Telling the application that a job ended, so it need not poll.

A job may carry `on_complete` (a Celery signature, stored as JSON) and `notify_url` (an
http(s) URL). When the job reaches `archived` or `failed`, `announce_end` sends each once:
the signature is called with the job id as its first argument, and the `lipsync.notify`
task POSTs the job record as JSON to the URL, retrying transient failures a bounded number
of times. Neither holds up the pipeline: a failure to announce is logged, never raised.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from celery import signature

from worker import deps
from worker.celery_app import app
from worker.errors import NotifyFailed, NotifyRefused
from worker.jobs import Job, JobStore
from worker.names import NOTIFY_TASK, TASK_QUEUES

logger = logging.getLogger(__name__)

NOTIFY_TIMEOUT_SECONDS = 10.0
# About four minutes of tries (1 s doubling to 2 min, with jitter) before giving up.
NOTIFY_MAX_RETRIES = 8
NOTIFY_INITIAL_SECONDS = 1.0
NOTIFY_MAX_SECONDS = 120.0
# Answers that say "later": the receiver is busy or down, not refusing the record.
RETRYABLE_STATUSES = frozenset({408, 425, 429})


def encode_on_complete(on_complete: Mapping[str, Any]) -> str:
    """A Celery signature as JSON for the job record; ValueError when it cannot be one."""
    task = on_complete.get("task") if isinstance(on_complete, Mapping) else None
    if not isinstance(task, str) or not task:
        raise ValueError("on_complete must be a Celery signature, e.g. signature('app.done')")
    try:
        return json.dumps(dict(on_complete))
    except (TypeError, ValueError) as e:
        # Messages are JSON only (see celery_app.py): the signature must survive that.
        raise ValueError(f"on_complete must be JSON-serializable ({e})") from None


def signatures_for(job: Job) -> list[dict[str, Any]]:
    """The Celery signatures (as dicts) to call with the job id when the job ends."""
    out: list[dict[str, Any]] = []
    if job.on_complete:
        try:
            out.append(dict(json.loads(job.on_complete)))
        except (TypeError, ValueError):
            logger.error("Job %s: its on_complete is not a signature; not called", job.id)
    if job.notify_url:
        out.append(
            {"task": NOTIFY_TASK, "args": [], "options": {"queue": TASK_QUEUES[NOTIFY_TASK]}}
        )
    return out


def announce_end(job_id: str) -> None:
    """Send the job's on_complete and notify_url, once per ending of the job; never raises."""
    try:
        store = deps.job_store()
        # Once: a duplicated task or a second path to the same ending announces nothing more.
        if not store.mark_announced(job_id):
            return
        for sig in signatures_for(store.get(job_id)):
            _call(sig, job_id)
    except Exception:
        logger.exception("Job %s: could not announce its end", job_id)


def _call(sig: Mapping[str, Any], job_id: str) -> None:
    try:
        signature(dict(sig), app=app).apply_async(args=(job_id,))
    except Exception:
        logger.exception("Job %s: could not send %s", job_id, sig.get("task"))


def deliver(
    store: JobStore,
    job_id: str,
    *,
    session: requests.Session | None = None,
    timeout: float = NOTIFY_TIMEOUT_SECONDS,
) -> int | None:
    """POST the job record to its notify_url; return the HTTP status (None: no URL).

    Raises NotifyFailed when trying again may help, NotifyRefused when it will not.
    """
    job = store.get(job_id)
    if not job.notify_url:
        return None
    post = session.post if session is not None else requests.post
    # Messages name the host only: the URL may carry the application's token.
    host = urlsplit(job.notify_url).hostname
    try:
        with post(job.notify_url, json=job.to_dict(), timeout=timeout, allow_redirects=False) as r:
            status = r.status_code
    except requests.RequestException as e:
        why = type(e).__name__
        raise NotifyFailed(f"notify_url host {host} could not be reached ({why})") from None
    return _judge(status, host)


def _judge(status: int, host: str | None) -> int:
    """The status of a delivered record, or the error saying whether to try again."""
    if 200 <= status < 300:
        return status
    if status >= 500 or status in RETRYABLE_STATUSES:
        raise NotifyFailed(f"notify_url host {host} answered HTTP {status}")
    raise NotifyRefused(f"notify_url host {host} answered HTTP {status}; not sent again")
