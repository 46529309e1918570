"""Akool's callbacks: verify one, refuse replays, and act on what it says.

Akool POSTs `{"signature", "dataEncrypt", "timestamp", "nonce"}` to the `webhookUrl` of a
job (shared/akool/API.md). The signature is a plain SHA-1 over the sorted fields and the
client id (worker/webhook_crypto.py), so it proves little by itself; the payload is AES-CBC
encrypted with the client secret. A callback is accepted only when its signature matches
(compared in constant time), its timestamp is within WEBHOOK_MAX_AGE_SECONDS of now, its
(nonce, timestamp) pair was not seen before (remembered in Redis) and its payload decrypts to
a JSON object.

What an accepted callback does is small and fast; the work stays on the queue:
- status 3: the job's result URL is recorded (`archiving`) and the archive is enqueued,
  unless the poll loop got there first (`JobStore.claim_archive`). The poll loop stops.
- status 4: the job fails, as it would on a poll answering 4.
- status 2 (and anything else): logged.
Polling stays on as the safety net for a callback that never comes, at the longer interval
WEBHOOK_POLL_MAX_SECONDS. The HTTP side is worker/web.py.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from worker import keys, messages
from worker.errors import WebhookRejected
from worker.jobs import JobStore
from worker.settings import Settings
from worker.status import JobStatus
from worker.webhook_crypto import cipher_for, decrypt_payload, sign

logger = logging.getLogger(__name__)

# Longer nonces or ids are refused: they end up inside Redis keys.
MAX_FIELD_CHARS = 256
# Who owns the polling of a job once the webhook reported it done: no poll task has this id,
# so a poll loop waiting on its countdown finds another owner and stops.
WEBHOOK_POLL_OWNER = "webhook"


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


def read_envelope(body: bytes) -> Envelope:
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
        return keys.webhook_nonce(nonce, timestamp)


class CallbackHandler:
    """Applies an accepted callback to our job; all real work is enqueued."""

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        *,
        enqueue_archive: Callable[[str], None],
        job_ended: Callable[[str], None],
    ) -> None:
        self._store = store
        self._settings = settings
        self._enqueue_archive = enqueue_archive
        self._job_ended = job_ended

    def handle(self, callback: Callback, now: float) -> str:
        """Act on the callback; return a word saying what happened (for the answer and logs)."""
        job_id = self._store.job_for_akool_id(callback.akool_id)
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
            status=JobStatus.ARCHIVING,
            result_url=callback.url,
            completed_ts=now,
            poll_owner=WEBHOOK_POLL_OWNER,
        )
        if self._store.claim_archive(job_id):
            self._enqueue_archive(job_id)
        logger.info("Akool finished %s (%s), said the webhook", job_id, callback.akool_id)
        return "archiving"

    def _failed(self, job_id: str) -> str:
        if self._store.fail(job_id, messages.AKOOL_JOB_FAILED):
            logger.error("Job %s failed: %s", job_id, messages.AKOOL_JOB_FAILED)
            self._job_ended(job_id)
            return "failed"
        return "already-final"


class HandlesCallbacks(Protocol):
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
        handler: HandlesCallbacks,
        clock: Callable[[], float] = time.time,
    ) -> None:
        cipher_for(client_id, client_secret)  # a bad key fails at start, not per callback
        self._client_id = client_id
        self._secret = client_secret
        self._max_age = max_age_seconds
        self._nonces = nonces
        self._handler = handler
        self._clock = clock

    def receive(self, body: bytes) -> str:
        """Verify, decrypt and act; raise WebhookRejected for a callback that is refused."""
        now = self._clock()
        envelope = read_envelope(body)
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
