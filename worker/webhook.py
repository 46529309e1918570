"""Akool's webhook: verify, decrypt and act on its callbacks, and serve them over HTTP.

Akool POSTs `{"signature", "dataEncrypt", "timestamp", "nonce"}` to the `webhookUrl` of a
job (shared/akool/API.md). The signature is a plain SHA-1 over the sorted fields and the
client id, so it proves little by itself; the payload is AES-CBC encrypted with the client
secret. A callback is accepted only when its signature matches (compared in constant time),
its timestamp is within WEBHOOK_MAX_AGE_SECONDS of now, its (nonce, timestamp) pair was not
seen before (remembered in Redis) and its payload decrypts to a JSON object.

What an accepted callback does is small and fast; the work stays on the queue:
- status 3: the job's result URL is recorded (`archiving`) and the archive is enqueued,
  unless the poll loop got there first (see `claim_archive`). The poll loop stops.
- status 4: the job fails, as it would on a poll answering 4.
- status 2 (and anything else): logged.
Polling stays on as the safety net for a callback that never comes, at the longer interval
WEBHOOK_POLL_MAX_SECONDS.

`python -m worker.webhook` (the Procfile's `web:` line) serves `POST /webhooks/akool` and
`GET /healthz` on $PORT with a threaded standard-library WSGI server.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import math
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from config.settings import ConfigError, Settings
from worker.errors import PermanentError
from worker.jobs import ARCHIVING, JobStore

logger = logging.getLogger(__name__)

CALLBACK_PATH = "/webhooks/akool"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A callback is a few hundred bytes; anything much larger is not from Akool.
MAX_BODY_BYTES = 64 * 1024
# A larger body is read and dropped up to this size before answering 413, so the client
# reads the answer instead of a reset connection; beyond it the connection is just closed.
MAX_DRAIN_BYTES = 1024 * 1024
# Longer nonces or ids are refused: they end up inside Redis keys.
MAX_FIELD_CHARS = 256
AES_KEY_SIZES = (16, 24, 32)
AES_BLOCK_BYTES = 16
NONCE_PREFIX = "lipsync:webhook:nonce:"
AKOOL_INDEX_PREFIX = "lipsync:akool:"
ARCHIVE_CLAIM_PREFIX = "lipsync:archive:claim:"
# Who owns the polling of a job once the webhook reported it done: no poll task has this id,
# so a poll loop waiting on its countdown finds another owner and stops.
WEBHOOK_POLL_OWNER = "webhook"
AKOOL_FAILED_MESSAGE = (
    "Akool reported that the lip-sync failed (video_status 4); it gives no reason"
)
# A client that sends its body this slowly holds a server thread; drop it after this.
REQUEST_TIMEOUT_SECONDS = 10.0


class WebhookRejected(PermanentError):
    """A callback that is refused; `http_status` is what the receiver answers."""

    def __init__(self, message: str, *, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status


class WebhookKeyError(PermanentError):
    """The client secret is not a valid AES key (16, 24 or 32 bytes as UTF-8)."""


# --- The vendor's crypto, as plain functions (the simulator and the tests use them too) ----


def sign(client_id: str, timestamp: int | str, nonce: int | str, data_encrypt: str) -> str:
    """Akool's callback signature: SHA-1 of the four values sorted and joined, lowercase hex."""
    text = "".join(sorted([client_id, str(timestamp), str(nonce), data_encrypt]))
    # Akool's scheme, not our choice: plain SHA-1 without a key.
    return hashlib.sha1(text.encode("utf-8")).hexdigest()  # noqa: S324


def _cipher(client_id: str, client_secret: str) -> Cipher[modes.CBC]:
    key = client_secret.encode("utf-8")
    if len(key) not in AES_KEY_SIZES:
        raise WebhookKeyError(
            f"the client secret is {len(key)} bytes; AES needs 16, 24 or 32 bytes"
        )
    # The IV is the client id's first 16 bytes, padded with spaces as the vendor's demo does.
    iv = client_id.encode("utf-8")[:AES_BLOCK_BYTES].ljust(AES_BLOCK_BYTES, b" ")
    return Cipher(algorithms.AES(key), modes.CBC(iv))


def encrypt_payload(payload: Mapping[str, Any] | bytes, client_id: str, client_secret: str) -> str:
    """Encrypt a callback payload as Akool does: AES-CBC, PKCS#7, base64."""
    plain = payload if isinstance(payload, bytes) else json.dumps(dict(payload)).encode()
    padder = padding.PKCS7(AES_BLOCK_BYTES * 8).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = _cipher(client_id, client_secret).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")


def decrypt_payload(data_encrypt: str, client_id: str, client_secret: str) -> dict[str, Any]:
    """Decrypt `dataEncrypt` into its JSON object; WebhookRejected (400) when it is not one.

    Every way of failing gives the same answer, so the receiver tells a caller nothing about
    the padding (CBC without a MAC must not become a padding oracle).
    """
    cipher = _cipher(client_id, client_secret)
    try:
        raw = base64.b64decode(data_encrypt, validate=True)
        decryptor = cipher.decryptor()
        padded = decryptor.update(raw) + decryptor.finalize()
        unpadder = padding.PKCS7(AES_BLOCK_BYTES * 8).unpadder()
        value = json.loads(unpadder.update(padded) + unpadder.finalize())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict):
        raise WebhookRejected("the callback's payload could not be decrypted", http_status=400)
    return value


def signed_callback(
    payload: Mapping[str, Any],
    client_id: str,
    client_secret: str,
    *,
    timestamp_ms: int | None = None,
    nonce: str | int | None = None,
) -> dict[str, Any]:
    """A complete callback body as Akool sends it (for the simulator and the tests)."""
    timestamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    nonce = str(secrets.randbelow(10**6)) if nonce is None else nonce
    data = encrypt_payload(payload, client_id, client_secret)
    return {
        "signature": sign(client_id, timestamp, nonce, data),
        "dataEncrypt": data,
        "timestamp": timestamp,
        "nonce": nonce,
    }


# --- Verifying a callback -------------------------------------------------------------------


@dataclass(frozen=True)
class Envelope:
    """The outer, signed part of a callback."""

    signature: str
    data_encrypt: str
    timestamp: int
    nonce: str


@dataclass(frozen=True)
class Callback:
    """What a decrypted callback says about one Akool job."""

    akool_id: str
    status: int
    type: str = "lipsync"
    url: str | None = None


def _short_text(value: Any, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise WebhookRejected(f"the callback's {name} is missing or not text", http_status=400)
    text = str(value)
    if not text or len(text) > MAX_FIELD_CHARS:
        raise WebhookRejected(f"the callback's {name} is empty or too long", http_status=400)
    return text


def parse_envelope(body: bytes) -> Envelope:
    """Read the JSON body of a callback; WebhookRejected (400) when it is malformed."""
    try:
        fields = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        fields = None
    if not isinstance(fields, dict):
        raise WebhookRejected("the callback body is not a JSON object", http_status=400)
    data = fields.get("dataEncrypt")
    timestamp = _short_text(fields.get("timestamp"), "timestamp")
    if not isinstance(data, str) or not data or not timestamp.isdigit():
        raise WebhookRejected("the callback lacks dataEncrypt or a timestamp", http_status=400)
    return Envelope(
        signature=_short_text(fields.get("signature"), "signature"),
        data_encrypt=data,
        timestamp=int(timestamp),
        nonce=_short_text(fields.get("nonce"), "nonce"),
    )


def verify_envelope(
    envelope: Envelope, client_id: str, *, max_age_seconds: float, now: float
) -> None:
    """Check the signature (constant time) and the timestamp's freshness; 401 otherwise."""
    expected = sign(client_id, envelope.timestamp, envelope.nonce, envelope.data_encrypt)
    given = envelope.signature.lower().encode("utf-8")
    if not hmac.compare_digest(expected.encode("ascii"), given):
        raise WebhookRejected("the callback's signature does not match", http_status=401)
    if abs(now - envelope.timestamp / 1000) > max_age_seconds:
        raise WebhookRejected(
            "the callback's timestamp is outside WEBHOOK_MAX_AGE_SECONDS", http_status=401
        )


def parse_callback(payload: Mapping[str, Any]) -> Callback:
    """The decrypted payload as a Callback; WebhookRejected (400) when it lacks id or status."""
    status = payload.get("status")
    if isinstance(status, bool) or not isinstance(status, int):
        raise WebhookRejected("the callback's payload has no status", http_status=400)
    url = payload.get("url")
    kind = payload.get("type")
    return Callback(
        akool_id=_short_text(payload.get("_id"), "_id"),
        status=status,
        type=kind if isinstance(kind, str) and kind else "lipsync",
        url=url if isinstance(url, str) and url else None,
    )


class Nonces(Protocol):
    """Remembers callbacks already accepted, to refuse replays."""

    def first_time(self, nonce: str, timestamp: int) -> bool: ...

    def forget(self, nonce: str, timestamp: int) -> None: ...


class RedisNonces:
    """Accepted (nonce, timestamp) pairs in Redis, kept while a replay could still be fresh."""

    def __init__(self, client: redis.Redis, max_age_seconds: float) -> None:
        self._redis = client
        # A timestamp is fresh from max_age before now to max_age after: remember it that long.
        self._ttl = max(1, math.ceil(2 * max_age_seconds))

    def first_time(self, nonce: str, timestamp: int) -> bool:
        """Remember the pair; False when it was already there (a replay)."""
        return bool(self._redis.set(self._key(nonce, timestamp), "1", nx=True, ex=self._ttl))

    def forget(self, nonce: str, timestamp: int) -> None:
        """Drop the pair, so Akool's retry of a callback we could not handle is accepted."""
        self._redis.delete(self._key(nonce, timestamp))

    @staticmethod
    def _key(nonce: str, timestamp: int) -> str:
        return f"{NONCE_PREFIX}{timestamp}:{nonce}"


# --- Finding our job and acting on the callback ----------------------------------------------


def remember_akool_id(client: redis.Redis, akool_id: str, job_id: str, ttl: int) -> None:
    """Index our job id by Akool's id, so a callback (which names only Akool's) finds it."""
    client.set(AKOOL_INDEX_PREFIX + akool_id, job_id, ex=ttl)


def job_for_akool_id(client: redis.Redis, akool_id: str) -> str | None:
    """Our job id for Akool's id, or None when it is not ours (or its record expired)."""
    value = client.get(AKOOL_INDEX_PREFIX + akool_id)
    return value.decode() if isinstance(value, bytes) else value


def claim_archive(client: redis.Redis, job_id: str, ttl: int) -> bool:
    """Take the one right to start the archive after completion was seen.

    Completion can be seen twice, by the webhook and by a poll in flight at the same moment;
    whichever claims first enqueues the archive, the other stops. (The sweeper and an
    operator's retry re-drive an archive directly: they act on jobs nothing is working on.)
    """
    return bool(client.set(ARCHIVE_CLAIM_PREFIX + job_id, "1", nx=True, ex=ttl))


class CallbackHandler:
    """Applies an accepted callback to our job; all real work is enqueued."""

    def __init__(
        self,
        store: JobStore,
        client: redis.Redis,
        settings: Settings,
        *,
        enqueue_archive: Callable[[str], None],
        job_ended: Callable[[str], None],
    ) -> None:
        self._store = store
        self._redis = client
        self._settings = settings
        self._enqueue_archive = enqueue_archive
        self._job_ended = job_ended

    def handle(self, callback: Callback, now: float) -> str:
        """Act on the callback; return a word saying what happened (for the answer and logs)."""
        job_id = job_for_akool_id(self._redis, callback.akool_id)
        if callback.type != "lipsync" or job_id is None:
            logger.info("Webhook for Akool job %s is not one of ours", callback.akool_id)
            return "unknown-job"
        if callback.status == 3:
            return self._completed(job_id, callback, now)
        if callback.status == 4:
            return self._failed(job_id)
        logger.info("Webhook: job %s is at Akool status %s", job_id, callback.status)
        return "noted"

    def _completed(self, job_id: str, callback: Callback, now: float) -> str:
        job = self._store.get(job_id)
        if job.is_final or job.result_url:
            logger.info("Webhook: job %s already has its result (%s)", job_id, job.status)
            return "already-known"
        if callback.url is None:
            logger.warning("Webhook: job %s completed without a URL; polling finds it", job_id)
            return "no-url"
        # Naming the webhook as poll owner stops a poll loop waiting on its countdown.
        self._store.update(
            job_id,
            due=now + self._settings.stall_seconds,
            status=ARCHIVING,
            result_url=callback.url,
            completed_ts=now,
            poll_owner=WEBHOOK_POLL_OWNER,
        )
        if claim_archive(self._redis, job_id, self._settings.job_retention_seconds):
            self._enqueue_archive(job_id)
        logger.info("Akool finished %s (%s), said the webhook", job_id, callback.akool_id)
        return "archiving"

    def _failed(self, job_id: str) -> str:
        if self._store.fail(job_id, AKOOL_FAILED_MESSAGE):
            logger.error("Job %s failed: %s", job_id, AKOOL_FAILED_MESSAGE)
            self._job_ended(job_id)
            return "failed"
        return "already-final"


class Handler(Protocol):
    """Acts on an accepted callback (CallbackHandler in production)."""

    def handle(self, callback: Callback, now: float) -> str: ...


class Receiver:
    """Checks a callback body and hands it to the handler; the HTTP-free core of the app."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        max_age_seconds: float,
        nonces: Nonces,
        handler: Handler,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _cipher(client_id, client_secret)  # a bad key fails at start, not per callback
        self._client_id = client_id
        self._secret = client_secret
        self._max_age = max_age_seconds
        self._nonces = nonces
        self._handler = handler
        self._clock = clock

    def receive(self, body: bytes) -> str:
        """Verify, decrypt and act; raise WebhookRejected for a callback that is refused."""
        now = self._clock()
        envelope = parse_envelope(body)
        verify_envelope(envelope, self._client_id, max_age_seconds=self._max_age, now=now)
        if not self._nonces.first_time(envelope.nonce, envelope.timestamp):
            raise WebhookRejected("the callback was already received (replay)", http_status=401)
        payload = decrypt_payload(envelope.data_encrypt, self._client_id, self._secret)
        callback = parse_callback(payload)
        try:
            return self._handler.handle(callback, now)
        except Exception:
            # Not handled: let Akool's retry of this same callback through.
            with contextlib.suppress(Exception):
                self._nonces.forget(envelope.nonce, envelope.timestamp)
            raise


# --- WSGI --------------------------------------------------------------------------------

StartResponse = Callable[..., Any]


def _answer(start_response: StartResponse, status: int, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    start_response(f"{status} {HTTPStatus(status).phrase}", headers)
    return [data]


def read_body(environ: Mapping[str, Any]) -> bytes:
    """The request body, refusing one without a length (411) or over MAX_BODY_BYTES (413)."""
    raw = str(environ.get("CONTENT_LENGTH") or "").strip()
    if not raw.isdigit():
        raise WebhookRejected("a Content-Length is required", http_status=411)
    length = int(raw)
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
                [("Content-Type", METRICS_CONTENT_TYPE), ("Content-Length", str(len(body)))],
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
            logger.warning("Webhook refused (%s): %s", e.http_status, e)
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


class _Handler(WSGIRequestHandler):
    """Request lines go to our logger; a silent client is dropped after a timeout."""

    timeout = REQUEST_TIMEOUT_SECONDS

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        logger.info("%s " + format, self.address_string(), *args)


def build_app(settings: Settings) -> WebhookApp:
    """The app wired to Redis, the job store and the Celery queues, from settings."""
    from worker import deps, metrics, notify
    from worker.tasks import archive  # the Celery app reads settings on import

    client = deps.redis_client()
    handler = CallbackHandler(
        deps.job_store(),
        client,
        settings,
        enqueue_archive=lambda job_id: archive.si(job_id).apply_async(),
        job_ended=notify.announce_end,
    )
    receiver = None
    if settings.akool_client_id or settings.akool_webhook_url:
        nonces = RedisNonces(client, settings.webhook_max_age_seconds)
        receiver = _receiver(settings, nonces, handler)
    else:
        logger.warning("AKOOL_CLIENT_ID is not set: serving /metrics and /healthz only")
    return WebhookApp(
        receiver, health=lambda: bool(client.ping()), metrics=lambda: metrics.render(client)
    )


def _receiver(settings: Settings, nonces: Nonces, handler: Handler) -> Receiver:
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
    server = make_server(host, port, app, ThreadingWSGIServer, _Handler)

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
    """`python -m worker.webhook [--host H] [--port P]`: settings from the environment."""
    from worker import deps, logs

    try:
        settings = deps.settings()
        logs.configure(settings.log_format)
        args = _parse_args(argv, settings)
        app = build_app(settings)
    except ConfigError as e:
        sys.exit(f"webhook receiver: {e}")
    serve(app, args.host, args.port)


if __name__ == "__main__":
    main()
