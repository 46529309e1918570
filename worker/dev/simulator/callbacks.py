"""Akool's webhook callbacks, as the simulator sends them to a job's webhook URL (named by
its kind's field: ``webhookUrl``, or ``webhookurl`` for character swap). The payload's
``type`` is the kind's (``kinds.SimKind.callback_type``).

One daemon thread per job (``start_callbacks``, called when a submit creates the job) sends
a status 2 callback at once when ``sim_webhook_progress=1``, then the final status once
``sim_seconds`` plus ``sim_webhook_delay`` have passed, whatever the polls answer. Each body
is encrypted with the client secret and signed as Akool does (worker/akool/crypto.py), and
is POSTed again, waiting longer each time, while the answer is not 200.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from worker.akool import signed_callback
from worker.clock import wall_clock_ms
from worker.dev.simulator.kinds import KINDS
from worker.dev.simulator.state import SimJob, SimState
from worker.errors import WebhookKeyError

logger = logging.getLogger(__name__)

# A callback not answered 200 is sent again this many times in all, waiting longer each time.
WEBHOOK_ATTEMPTS = 5
WEBHOOK_FIRST_WAIT_SECONDS = 0.2
WEBHOOK_TIMEOUT_SECONDS = 5.0


def start_callbacks(state: SimState, job: SimJob) -> None:
    """Send the job's callbacks from a daemon thread, if it has a webhookUrl and its
    scenario does not turn them off (``sim_webhook=0``)."""
    if job.webhook_url and job.scenario.webhook:
        threading.Thread(
            target=send_callbacks, args=(state, job), name="sim-webhook", daemon=True
        ).start()


def send_callbacks(state: SimState, job: SimJob) -> None:
    """Tell the job's webhookUrl about progress (if scripted) and its final status."""
    scenario = job.scenario
    if scenario.webhook_progress:
        deliver_callback(state, job, 2)
    wait = scenario.seconds + scenario.webhook_delay - (time.monotonic() - job.created_at)
    if math.isfinite(wait) and state.stopping.wait(max(wait, 0.0)):
        return
    deliver_callback(state, job, scenario.final)


def callback_body(state: SimState, job: SimJob, status: int) -> bytes | None:
    """Akool's encrypted, signed callback body; None when the secret is no AES key."""
    payload = {
        "_id": job.job_id,
        "status": status,
        "type": KINDS[job.kind].callback_type,
        "url": state.file_url(job) if status == 3 else "",
    }
    config = state.config
    try:
        body = signed_callback(
            payload, config.client_id, config.client_secret, timestamp_ms=wall_clock_ms()
        )
    except WebhookKeyError as e:
        logger.error("simulator cannot send the callback of job %s: %s", job.job_id, e)
        return None
    return json.dumps(body).encode()


def deliver_callback(state: SimState, job: SimJob, status: int) -> None:
    """POST one callback until it is answered 200, at most WEBHOOK_ATTEMPTS times."""
    body = callback_body(state, job, status)
    if body is None or job.webhook_url is None:
        return
    wait = WEBHOOK_FIRST_WAIT_SECONDS
    for _ in range(WEBHOOK_ATTEMPTS):
        answer = post_json(job.webhook_url, body)
        with state.lock:
            job.webhook_answers.append(answer)
            state.webhooks_delivered += int(answer == 200)
        if answer == 200 or state.stopping.wait(wait):
            return
        wait *= 2


def post_json(url: str, body: bytes) -> int:
    """POST ``body`` as JSON; the HTTP status of the answer, 0 when there was none."""
    if urlsplit(url).scheme not in ("http", "https"):
        return 0
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as e:
        with contextlib.closing(e):
            return int(e.code)
    except (OSError, ValueError):
        return 0
