"""Akool's callbacks: verify one, refuse replays, and act on what it says.

Akool POSTs `{"signature", "dataEncrypt", "timestamp", "nonce"}` to the `webhookUrl` of a
job (docs/akool.md, "Webhooks"). The signature is a plain SHA-1 over the sorted
fields and the client id (worker/akool/crypto.py), so it proves little by itself; the
payload is AES-CBC encrypted with the client secret. A callback is accepted only when its
signature matches (compared in constant time), its timestamp is within
WEBHOOK_MAX_AGE_SECONDS of now, neither its (nonce, timestamp) pair nor its payload was seen
before (both remembered in Redis) and its payload decrypts to a JSON object. Remembering
the payload matters because anyone who knows the client id can sign a captured payload
again with a fresh nonce and timestamp.

A body that is not a well-formed callback is refused 400, without a traceback: only a failure
of our own (Redis down, a bug) escapes as an exception, which the web process answers 503 so
that Akool retries. Numbers are read as ASCII decimal only (`ascii_int`), and caller-supplied
text is escaped before it is logged (`escape_controls`).

What an accepted callback does is small and fast; the work stays on the queue:
- status 3 with a usable http(s) URL: the job's result URL is recorded (`archiving`) and the
  archive is enqueued, unless the poll loop got there first (`JobStore.claim_archive`). The
  poll loop stops. Without a usable URL, polling finds it.
- status 4: the job fails, as it would on a poll answering 4.
- status 2 (and anything else): logged.
Polling stays on as the safety net for a callback that never comes, at the longer interval
WEBHOOK_POLL_MAX_SECONDS. The HTTP side is worker/web/app.py (routes) and server.py.

Each submit's webhookUrl also names its job and carries its token (worker/akool/reconcile.py), so
a callback can find a job whose submit's answer was lost, which Akool's id cannot. After the
checks above, the URL's token is compared in constant time with the job's (401 when wrong),
and a job without an Akool id adopts the callback's: it then archives (3), polls from then
on (2) or fails (4) like any other. A callback acts only on a job of the kind its `type`
names (or an adopted one, of kind "unknown"): see worker/web/callback_kinds.py.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from worker import messages
from worker.akool import (
    WEBHOOK_POLL_OWNER,
    Route,
    adopt,
    adoption,
    cipher_for,
    decrypt_payload,
    kind_for_callback_type,
    read_route,
    sign,
    token_matches,
)
from worker.clock import Clock, wall_clock
from worker.config import Settings
from worker.errors import WebhookRejected
from worker.net import ascii_int, escape_controls, http_url
from worker.status import JobStatus
from worker.store import Job, JobStore, keys
from worker.waiting import proof
from worker.web.callback_kinds import says_more, takes

logger = logging.getLogger(__name__)

# Longer nonces or ids are refused: they end up inside Redis keys.
MAX_FIELD_CHARS = 256
# The answer to a callback about no job of ours, or of a kind the job is not (200: Akool
# has nothing to retry).
NOT_OURS = "unknown-job"


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
    # The job the URL it was sent to names, if any (not part of Akool's payload).
    route: Route | None = None


def _is_utf8(text: str) -> bool:
    """False for text holding a lone surrogate (JSON's "\\ud800"), which cannot be encoded."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _short_text(value: Any, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise WebhookRejected(f"the callback's {name} is missing or not text", http_status=400)
    text = str(value)
    if not text or len(text) > MAX_FIELD_CHARS or not _is_utf8(text):
        raise WebhookRejected(
            f"the callback's {name} is empty, too long or not valid text", http_status=400
        )
    return text


def _json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; WebhookRejected (400) for anything else.

    Deep nesting makes json.loads raise RecursionError, not ValueError; it is still the
    sender's fault, not ours. Invalid UTF-8 and numbers of over 4300 digits are ValueErrors.
    """
    try:
        fields = json.loads(body)
    except (ValueError, RecursionError):
        fields = None
    if not isinstance(fields, dict):
        raise WebhookRejected("the callback body is not a JSON object", http_status=400)
    return fields


def read_envelope(body: bytes) -> Envelope:
    """Read the JSON body of a callback; WebhookRejected (400) when it is malformed."""
    fields = _json_object(body)
    data = fields.get("dataEncrypt")
    timestamp = ascii_int(_short_text(fields.get("timestamp"), "timestamp"))
    # dataEncrypt is base64: anything but ASCII in it is not Akool's.
    if not isinstance(data, str) or not data or not data.isascii() or timestamp is None:
        raise WebhookRejected("the callback lacks dataEncrypt or a timestamp", http_status=400)
    return Envelope(
        signature=_short_text(fields.get("signature"), "signature"),
        data_encrypt=data,
        timestamp=timestamp,
        nonce=_short_text(fields.get("nonce"), "nonce"),
    )


def payload_digest(data_encrypt: str) -> str:
    """The sha256 hex digest of the ciphertext `dataEncrypt` carries; 400 if it is no base64.

    The digest is of the decoded bytes, not of the text: base64 leaves spare bits in its last
    character, so one ciphertext has several spellings, and a replay could pick another.
    """
    try:
        raw = base64.b64decode(data_encrypt, validate=True)
    except ValueError:  # binascii.Error is one
        raise WebhookRejected(
            "the callback's payload could not be decrypted", http_status=400
        ) from None
    return hashlib.sha256(raw).hexdigest()


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
    kind = payload.get("type")
    return Callback(
        akool_id=_short_text(payload.get("_id"), "_id"),
        status=status,
        type=kind if isinstance(kind, str) and kind else "lipsync",
        # Only a usable http(s) URL: "null" or a path is no result to archive.
        url=http_url(payload.get("url")),
    )


class Nonces(Protocol):
    """Remembers callbacks already accepted, by (nonce, timestamp) and by payload digest."""

    def first_time(self, nonce: str, timestamp: int, digest: str) -> bool: ...

    def forget(self, nonce: str, timestamp: int, digest: str) -> None: ...


# KEYS[1]: the nonce's marker, KEYS[2]: the payload's. ARGV[1]: seconds to keep them.
# Both are set only when neither exists, so a refused replay leaves no marker of its own.
_FIRST_TIME_SCRIPT = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
return 1
"""


class RedisNonces:
    """Accepted callbacks in Redis, by (nonce, timestamp) and by payload digest, kept while a
    replay could still be fresh."""

    def __init__(
        self,
        client: redis.Redis,
        max_age_seconds: float,
        *,
        payload_ttl_seconds: float | None = None,
    ) -> None:
        self._redis = client
        self._first_time = client.register_script(_FIRST_TIME_SCRIPT)
        # A timestamp is fresh from max_age before now to max_age after: remember it that long.
        self._ttl = max(1, math.ceil(2 * max_age_seconds))
        # Anyone can re-sign a captured payload with a fresh nonce and timestamp (the
        # signature has no key), so payloads are remembered as long as the jobs they are about
        # (the web process passes JOB_RETENTION_DAYS): about 100 bytes per callback.
        self._payload_ttl = max(self._ttl, math.ceil(payload_ttl_seconds or 0))

    def first_time(self, nonce: str, timestamp: int, digest: str) -> bool:
        """Remember the callback; False when its nonce or its payload was there (a replay)."""
        markers = [keys.webhook_nonce(nonce, timestamp), keys.webhook_payload(digest)]
        return bool(self._first_time(keys=markers, args=[self._ttl, self._payload_ttl]))

    def forget(self, nonce: str, timestamp: int, digest: str) -> None:
        """Drop both markers, so Akool's retry of a callback we could not handle is accepted."""
        self._redis.delete(keys.webhook_nonce(nonce, timestamp), keys.webhook_payload(digest))


class CallbackHandler:
    """Applies an accepted callback to our job; all real work is enqueued.

    `enqueue_poll` starts the poll loop of a job a status 2 callback adopted; without it the
    sweeper does, once the job is due (STALL_SECONDS).
    """

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        *,
        enqueue_archive: Callable[[str], None],
        job_ended: Callable[[str], None],
        enqueue_poll: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._enqueue_archive = enqueue_archive
        self._job_ended = job_ended
        self._enqueue_poll = enqueue_poll

    def handle(self, callback: Callback, now: float) -> str:
        """Act on the callback; return a word saying what happened (for the answer and logs).

        WebhookRejected (401) when its URL names a job with a token that is not the job's.
        """
        job_id = self._store.job_for_akool_id(callback.akool_id)
        routed = self._routed_job(callback.route) if callback.route else None
        kind = kind_for_callback_type(callback.type)
        if routed is not None and job_id is None and kind is not None:
            if not takes(routed, kind, callback.type):
                return NOT_OURS
            return self._adopt(routed, callback, now)
        if routed is not None and job_id not in (None, routed.id):
            logger.warning("Webhook: its URL names job %s, Akool's id job %s", routed.id, job_id)
        job = routed if routed is not None and routed.id == job_id else None
        if kind is not None and job_id is not None and job is None:
            job = self._store.read(job_id)
        if kind is None or job is None:
            akool_id = escape_controls(callback.akool_id)
            logger.info("Webhook for Akool job %s is not one of ours", akool_id)
            return NOT_OURS
        return self._apply(job, callback, now) if takes(job, kind, callback.type) else NOT_OURS

    def _apply(self, job: Job, callback: Callback, now: float) -> str:
        """What a callback for a job known by its Akool id does (`job` as just read). A job
        whose kind has extra result files (or a failure reason) in its lookup answer, which
        callbacks do not carry, is polled at once instead: the poll reads them."""
        if callback.status in (3, 4) and says_more(job) and not job.is_final:
            if self._enqueue_poll is not None:
                logger.info("Webhook: job %s ended at Akool; polling it for the rest", job.id)
                self._enqueue_poll(job.id)
            return "polling"
        if callback.status == 3:
            return self._completed(job, callback, now)
        if callback.status == 4:
            return self._failed(job.id)
        logger.info("Webhook: job %s is at Akool status %s", job.id, callback.status)
        return "noted"

    def _completed(self, job: Job, callback: Callback, now: float) -> str:
        job_id = job.id
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
            **proof.cleared(job),
        )
        if self._store.claim_archive(job_id):
            self._enqueue_archive(job_id)
        akool_id = escape_controls(callback.akool_id)
        logger.info("Akool finished %s (%s), said the webhook", job_id, akool_id)
        return "archiving"

    def _failed(self, job_id: str) -> str:
        if self._store.fail(job_id, messages.AKOOL_JOB_FAILED):
            logger.error("Job %s failed: %s", job_id, messages.AKOOL_JOB_FAILED)
            self._job_ended(job_id)
            return "failed"
        return "already-final"

    def _routed_job(self, route: Route) -> Job:
        """The job a callback's URL names, once its token is the job's; 401 otherwise (the
        token is never logged nor echoed)."""
        try:
            job = self._store.get(route.job_id)
        except KeyError:
            job = None
        if job is None or not token_matches(job, route.token):
            raise WebhookRejected(
                "the callback URL's job token does not match a job of ours", http_status=401
            )
        return job

    def _adopt(self, job: Job, callback: Callback, now: float) -> str:
        """A callback that names, by its URL only, a job Akool's id does not find."""
        akool_id = escape_controls(callback.akool_id)
        decision = adopt(job, callback.akool_id)
        if decision == "known":  # its index entry was lost: mend it, go on as usual
            self._store.remember_akool_id(job.id, callback.akool_id)
            return self._apply(job, callback, now)
        if decision != "adopt" or not self._store.update_without_akool_id(
            job.id, **adoption(job, *_said(callback), self._settings, now)
        ):
            # Ended (its wait is over), or named by another callback or the submit meanwhile.
            logger.warning(
                "Webhook: job %s (%s) does not take Akool's job %s (status %s); left as it is",
                job.id,
                job.status,
                akool_id,
                callback.status,
            )
            return "not-adopted"
        self._store.remember_akool_id(job.id, callback.akool_id)
        logger.warning(
            "Job %s adopted Akool's job %s (status %s): its submit's answer was lost",
            job.id,
            akool_id,
            callback.status,
        )
        return self._after_adoption(job.id, callback)

    def _after_adoption(self, job_id: str, callback: Callback) -> str:
        """Start what the adopted job's new status needs: its archive, its polls, or the
        announcement of its end."""
        if callback.status == 4:
            logger.error("Job %s failed: %s", job_id, messages.AKOOL_JOB_FAILED)
            self._job_ended(job_id)
            return "adopted-failed"
        if callback.status == 3 and callback.url:
            if self._store.claim_archive(job_id):
                self._enqueue_archive(job_id)
            return "adopted-archiving"
        if self._enqueue_poll is not None:
            self._enqueue_poll(job_id)
        return "adopted-polling"


def _said(callback: Callback) -> tuple[str, int, str | None]:
    """Akool's id, the status and the result URL a callback gives."""
    return callback.akool_id, callback.status, callback.url


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
        clock: Clock = wall_clock,
    ) -> None:
        cipher_for(client_id, client_secret)  # a bad key fails at start, not per callback
        self._client_id = client_id
        self._secret = client_secret
        self._max_age = max_age_seconds
        self._nonces = nonces
        self._handler = handler
        self._clock = clock

    def receive(self, body: bytes, query: str = "") -> str:
        """Verify, decrypt and act; raise WebhookRejected for a callback that is refused.
        `query` is the query string of the URL it was sent to, which may name its job."""
        now = self._clock()
        route = read_route(query)
        envelope = read_envelope(body)
        verify_envelope(envelope, self._client_id, max_age_seconds=self._max_age, now=now)
        digest = payload_digest(envelope.data_encrypt)
        if not self._nonces.first_time(envelope.nonce, envelope.timestamp, digest):
            raise WebhookRejected("the callback was already received (replay)", http_status=401)
        payload = decrypt_payload(envelope.data_encrypt, self._client_id, self._secret)
        callback = dataclasses.replace(parse_callback(payload), route=route)
        try:
            return self._handler.handle(callback, now)
        except Exception:
            # Not handled: let Akool's retry of this same callback through.
            with contextlib.suppress(Exception):
                self._nonces.forget(envelope.nonce, envelope.timestamp, digest)
            raise
