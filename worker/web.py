"""The web process: Akool's callbacks and the health check over HTTP.

`python -m worker.web` (the Procfile's `web:` line) serves `POST /webhooks/akool` and
`GET /healthz` on $PORT, and `GET /metrics`, with a threaded standard-library WSGI server.
What a callback means is decided in worker/callbacks.py; this module only speaks HTTP.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from worker import deps, logs, metrics, notify, preflight
from worker.callbacks import (
    CallbackHandler,
    HandlesCallbacks,
    Nonces,
    Receiver,
    RedisNonces,
)
from worker.errors import ConfigError, WebhookKeyError, WebhookRejected
from worker.settings import Settings
from worker.tasks import archive
from worker.untrusted import ascii_int, escape_controls

logger = logging.getLogger(__name__)

CALLBACK_PATH = "/webhooks/akool"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
# A callback is a few hundred bytes; anything much larger is not from Akool.
MAX_BODY_BYTES = 64 * 1024
# A larger body is read and dropped up to this size before answering 413, so the client
# reads the answer instead of a reset connection; beyond it the connection is just closed.
MAX_DRAIN_BYTES = 1024 * 1024
# A client that sends its body this slowly holds a server thread; drop it after this.
REQUEST_TIMEOUT_SECONDS = 10.0


StartResponse = Callable[..., Any]


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
    """The WSGI application: POST /webhooks/akool, GET /healthz and GET /metrics.

    Without Akool's client credentials (`receiver` None) the web process still serves
    health and metrics, and answers callbacks 503 so a misconfiguration is visible.
    """

    def __init__(
        self,
        receiver: Receiver | None,
        health: Callable[[], bool],
        metrics: Callable[[], bytes] | None = None,
    ) -> None:
        self._receiver = receiver
        self._health = health
        self._metrics = metrics

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Route one request."""
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        if path == HEALTH_PATH and method in ("GET", "HEAD"):
            return self._healthz(start_response)
        if path == METRICS_PATH and method == "GET" and self._metrics is not None:
            body = self._metrics()
            start_response(
                "200 OK",
                [("Content-Type", metrics.CONTENT_TYPE), ("Content-Length", str(len(body)))],
            )
            return [body]
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
            outcome = self._receiver.receive(read_body(environ))
        except WebhookRejected as e:
            logger.warning("Webhook refused (%s): %s", e.http_status, escape_controls(str(e)))
            return _answer(start_response, e.http_status, {"error": str(e)})
        except Exception:
            # Akool retries a callback not answered 200; polling covers it if it never does.
            logger.exception("Webhook could not be handled; Akool will retry it")
            return _answer(start_response, 503, {"error": "try again later"})
        return _answer(start_response, 200, {"ok": True, "outcome": outcome})


# --- The server ------------------------------------------------------------------------------


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """wsgiref's server, one thread a request, so one slow client does not stop the rest."""

    daemon_threads = True
    allow_reuse_address = True


class _RequestHandler(WSGIRequestHandler):
    """Request lines go to our logger, escaped; a silent client is dropped after a timeout."""

    timeout = REQUEST_TIMEOUT_SECONDS

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        """One log line per request; the request line is the client's text, so controls in it
        are escaped (as http.server's own log_message does), or it could forge log lines."""
        logger.info("%s %s", self.address_string(), escape_controls(format % args))


def build_app(settings: Settings) -> WebhookApp:
    """The app wired to Redis, the job store and the Celery queues, from settings."""
    client = deps.redis_client()
    handler = CallbackHandler(
        deps.job_store(),
        settings,
        enqueue_archive=lambda job_id: archive.si(job_id).apply_async(),
        job_ended=notify.announce_end,
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
        logger.warning("AKOOL_CLIENT_ID is not set: serving /metrics and /healthz only")
    return WebhookApp(
        receiver, health=lambda: bool(client.ping()), metrics=lambda: metrics.render(client)
    )


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


def _parse_args(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Receiver of Akool's webhook callbacks.")
    # All interfaces by default: a platform's router reaches the process on $PORT.
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104
    parser.add_argument("--port", type=int, default=settings.port)
    return parser.parse_args(argv)


def serve(app: WebhookApp, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT; print a READY line once listening."""
    server = make_server(host, port, app, ThreadingWSGIServer, _RequestHandler)

    def _stop(signum: int, _frame: object) -> None:
        logger.info("Webhook receiver got signal %s; stopping", signum)
        # shutdown() waits for serve_forever, which runs in this thread: ask from another.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"WEBHOOK READY http://{host}:{server.server_port}{CALLBACK_PATH}", flush=True)
    with server:
        server.serve_forever(poll_interval=0.5)


def main(argv: list[str] | None = None) -> None:
    """`python -m worker.web [--host H] [--port P]`: settings from the environment."""
    try:
        settings = deps.settings()
        logs.configure(settings.log_format)
        args = _parse_args(argv, settings)
        preflight.check_redis_keeps_jobs(deps.redis_client())
        app = build_app(settings)
    except ConfigError as e:
        sys.exit(f"lipsync web: {e}")
    serve(app, args.host, args.port)


if __name__ == "__main__":
    main()
