"""Telling the application that a job ended, so it need not poll.

A job may carry `on_complete` (a Celery signature, stored as JSON) and `notify_url` (an
http(s) URL). The write that makes a job `archived` or `failed` also puts it in the outbox
(worker/store/outbox.py), atomically. `announce_end` then asks a worker to deliver it now:
the `lipsync.notify` task claims the job's entry and `deliver_end` calls the signature with
the job id as its first argument, POSTs the job record as JSON to the URL (under
NOTIFY_ALLOWED_HOSTS), and removes the entry only when both went out, or it gave up after
its bounded retries, with the reason on the job (`notify_error`). A worker that dies on the
way leaves the entry for the sweeper. Nothing here fails a job: a notification's trouble is
logged and recorded. Celery stays out of this module: the task (worker/tasks.py) passes in
how to enqueue and how to publish.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from worker.clock import Clock, wall_clock
from worker.errors import NotifyFailed, NotifyRefused
from worker.net import post_json
from worker.store import Job, JobStore

logger = logging.getLogger(__name__)

NOTIFY_TIMEOUT_SECONDS = 10.0
# Answers that say "later": the receiver is busy or down, not refusing the record.
RETRYABLE_STATUSES = frozenset({408, 425, 429})


def encode_on_complete(on_complete: Mapping[str, Any]) -> str:
    """A Celery signature as JSON for the job record; ValueError when it cannot be one."""
    task = on_complete.get("task") if isinstance(on_complete, Mapping) else None
    if not isinstance(task, str) or not task:
        raise ValueError("on_complete must be a Celery signature, e.g. signature('app.done')")
    try:
        # Keys sorted: equal signatures are equal text, so a retried submit under an
        # idempotency key is the same request whatever order the dict was built in.
        return json.dumps(dict(on_complete), sort_keys=True)
    except (TypeError, ValueError) as e:
        # Messages are JSON only (see celery_app.py): the signature must survive that.
        raise ValueError(f"on_complete must be JSON-serializable ({e})") from None


def on_complete_signature(job: Job) -> dict[str, Any] | None:
    """The job's on_complete as a signature dict; None (logged) when it is not one."""
    if not job.on_complete:
        return None
    try:
        return dict(json.loads(job.on_complete))
    except (TypeError, ValueError):
        logger.error("Job %s: its on_complete is not a signature; not called", job.id)
        return None


def announce_end(store: JobStore, job_id: str, send: Callable[[str], object]) -> None:
    """Ask a worker to deliver the ended job's notification now (`send` enqueues the
    delivery task); never raises.

    Its outbox entry, written with the final status, gets it delivered even when this call
    never happens (a worker killed in between) or fails (Redis away for a moment).
    """
    try:
        if store.outbox.pending(job_id):
            send(job_id)
    except Exception:
        logger.exception("Job %s: could not ask for its end to be announced", job_id)


# (signature dict, job id) -> None: sends the application's on_complete task.
Publish = Callable[[Mapping[str, Any], str], object]


def deliver_end(
    store: JobStore,
    job_id: str,
    *,
    allowed_hosts: Iterable[str],
    publish: Publish,
    clock: Clock = wall_clock,
) -> None:
    """Send what the ended job still owes the application, then take it off the outbox.

    The on_complete signature first (sent with `publish`), then the notify_url POST; each
    is recorded on the job as soon as it went out, so a retry repeats neither. Raises
    NotifyFailed (try again) or NotifyRefused (never) from the POST.
    """
    job = store.get(job_id)
    signature_dict = on_complete_signature(job)
    if signature_dict is not None and job.on_complete_sent_ts is None:
        _call(publish, signature_dict, job_id)
        store.outbox.note(job_id, on_complete_sent_ts=clock())
    done: dict[str, Any] = {"notify_error": None}
    if job.notify_url and job.notified_ts is None:
        deliver(store, job_id, allowed_hosts=tuple(allowed_hosts))
        done["notified_ts"] = clock()
    store.outbox.finish(job_id, **done)
    logger.info("Job %s: its end was announced", job_id)


def _call(publish: Publish, sig: Mapping[str, Any], job_id: str) -> None:
    try:
        publish(sig, job_id)
    except Exception as e:
        # Publishing failed (the broker is away): try again later, with the policy's waits.
        raise NotifyFailed(f"on_complete {sig.get('task')} could not be sent ({e})") from e


def deliver(
    store: JobStore,
    job_id: str,
    *,
    allowed_hosts: Iterable[str] = ("*",),
    session: requests.Session | None = None,
    timeout: float = NOTIFY_TIMEOUT_SECONDS,
) -> int | None:
    """POST the job record to its notify_url; return the HTTP status (None: no URL).

    `allowed_hosts` is NOTIFY_ALLOWED_HOSTS (default: its default, any public host). The
    POST goes only to an address of the URL's host checked under it, over https unless the
    host is listed exactly (worker/net/outbound.py). Raises NotifyFailed when trying again may
    help, NotifyRefused when it will not (a refused URL, to which nothing is sent, or a 3xx
    or 4xx answer).
    """
    job = store.get(job_id)
    if not job.notify_url:
        return None
    status = post_json(
        job.notify_url, job.to_dict(), allowed_hosts=allowed_hosts, session=session, timeout=timeout
    )
    # Messages name the host only: the URL may carry the application's token.
    return _judge(status, urlsplit(job.notify_url).hostname)


def _judge(status: int, host: str | None) -> int:
    """The status of a delivered record, or the error saying whether to try again."""
    if 200 <= status < 300:
        return status
    if status >= 500 or status in RETRYABLE_STATUSES:
        raise NotifyFailed(f"notify_url host {host} answered HTTP {status}")
    if 300 <= status < 400:
        # The record goes only where the allow-list checked; a redirect is not followed.
        raise NotifyRefused(
            f"notify_url host {host} answered HTTP {status}, a redirect, which is not "
            "followed; not sent again"
        )
    raise NotifyRefused(f"notify_url host {host} answered HTTP {status}; not sent again")
