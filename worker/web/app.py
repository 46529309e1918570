"""The web process's WSGI application: POST /webhooks/akool and GET /healthz.

It only speaks HTTP: the body's bounds, the routes and the JSON answers. What a callback
means is decided in worker/web/callbacks.py; the server that runs this app, with its bounds
for the internet in front of it, is worker/web/server.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

from worker import deps, tasks
from worker.config import Settings
from worker.errors import ConfigError, WebhookKeyError, WebhookRejected
from worker.net import ascii_int, escape_controls
from worker.tasks import Step, archive, redrive
from worker.web.callbacks import (
    CallbackHandler,
    HandlesCallbacks,
    Nonces,
    Receiver,
    RedisNonces,
)

logger = logging.getLogger(__name__)

CALLBACK_PATH = "/webhooks/akool"
HEALTH_PATH = "/healthz"
# A callback is a few hundred bytes; anything much larger is not from Akool.
MAX_BODY_BYTES = 64 * 1024
# A larger body is read and dropped up to this size before answering 413, so the client
# reads the answer instead of a reset connection; beyond it the connection is just closed.
# (Under waitress a body over MAX_BODY_BYTES is refused 413 before the app sees it.)
MAX_DRAIN_BYTES = 1024 * 1024

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _answer(start_response: StartResponse, status: int, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    start_response(f"{status} {HTTPStatus(status).phrase}", headers)
    return [data]


def read_body(environ: Mapping[str, Any]) -> bytes:
    """The request body, refusing one without a length (411), with a length that is no ASCII
    decimal number (400), or over MAX_BODY_BYTES (413)."""
    # Only HTTP's own whitespace around the value: str.strip() would also drop Unicode spaces.
    raw = str(environ.get("CONTENT_LENGTH") or "").strip(" \t")
    if not raw:
        raise WebhookRejected("a Content-Length is required", http_status=411)
    length = ascii_int(raw)
    if length is None:
        raise WebhookRejected("the Content-Length is not a decimal number", http_status=400)
    if length > MAX_BODY_BYTES:
        _discard(environ["wsgi.input"], min(length, MAX_DRAIN_BYTES))
        raise WebhookRejected(f"the body is over {MAX_BODY_BYTES} bytes", http_status=413)
    return bytes(environ["wsgi.input"].read(length))


def _discard(stream: Any, length: int) -> None:
    """Read and drop `length` bytes (fewer if the client stops), a chunk at a time."""
    while length > 0:
        chunk = stream.read(min(length, MAX_BODY_BYTES))
        if not chunk:
            return
        length -= len(chunk)


class WebhookApp:
    """The WSGI application: POST /webhooks/akool and GET /healthz (nothing else: /metrics is
    served on METRICS_PORT, a private port).

    Without Akool's client credentials (`receiver` None) the web process still serves
    health, and answers callbacks 503 so a misconfiguration is visible.
    """

    def __init__(self, receiver: Receiver | None, health: Callable[[], bool]) -> None:
        self._receiver = receiver
        self._health = health

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Route one request."""
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        if path == HEALTH_PATH and method in ("GET", "HEAD"):
            return self._healthz(start_response)
        if path != CALLBACK_PATH:
            return _answer(start_response, 404, {"error": "not found"})
        if method != "POST":
            return _answer(start_response, 405, {"error": "POST only"})
        return self._callback(environ, start_response)

    def _healthz(self, start_response: StartResponse) -> list[bytes]:
        try:
            ok = self._health()
        except Exception:
            ok = False
        return _answer(start_response, 200 if ok else 503, {"ok": ok})

    def _callback(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if self._receiver is None:
            return _answer(start_response, 503, {"error": "webhooks are not configured"})
        try:
            outcome = self._receiver.receive(read_body(environ), environ.get("QUERY_STRING", ""))
        except WebhookRejected as e:
            logger.warning("Webhook refused (%s): %s", e.http_status, escape_controls(str(e)))
            return _answer(start_response, e.http_status, {"error": str(e)})
        except Exception:
            # Akool retries a callback not answered 200; polling covers it if it never does.
            logger.exception("Webhook could not be handled; Akool will retry it")
            return _answer(start_response, 503, {"error": "try again later"})
        return _answer(start_response, 200, {"ok": True, "outcome": outcome})


def build_app(settings: Settings) -> WebhookApp:
    """The app wired to Redis, the job store and the Celery queues, from settings."""
    client = deps.redis_client()
    handler = CallbackHandler(
        deps.job_store(),
        settings,
        enqueue_archive=lambda job_id: archive.si(job_id).apply_async(),
        job_ended=tasks.announce_end,
        enqueue_poll=lambda job_id: redrive(job_id, Step.POLL),
    )
    receiver = None
    if settings.akool_client_id or settings.akool_webhook_url:
        nonces = RedisNonces(
            client,
            settings.webhook_max_age_seconds,
            payload_ttl_seconds=settings.job_retention_seconds,
        )
        receiver = _receiver(settings, nonces, handler)
    else:
        logger.warning("AKOOL_CLIENT_ID is not set: serving /healthz only")
    return WebhookApp(receiver, health=lambda: bool(client.ping()))


def _receiver(settings: Settings, nonces: Nonces, handler: HandlesCallbacks) -> Receiver:
    """The receiver with Akool's credentials; ConfigError naming what is missing or wrong."""
    secret = settings.webhook_secret()
    if not settings.akool_client_id or secret is None:
        raise ConfigError(
            "AKOOL_CLIENT_ID and AKOOL_CLIENT_SECRET must be set: Akool encrypts webhooks "
            "with the client secret and uses the client id as the IV"
        )
    try:
        return Receiver(
            client_id=settings.akool_client_id,
            client_secret=secret.reveal(),
            max_age_seconds=settings.webhook_max_age_seconds,
            nonces=nonces,
            handler=handler,
        )
    except WebhookKeyError as e:
        raise ConfigError(f"AKOOL_CLIENT_SECRET cannot decrypt webhooks: {e}") from None
