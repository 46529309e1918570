"""Tests of worker.webhook without a network: the vendor's crypto, verification, the app.

Test vectors are built by encrypting (the vendor's sample does not verify with its own
credentials); the IV rule is checked against AES done directly with `cryptography`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from worker.webhook import (
    CALLBACK_PATH,
    HEALTH_PATH,
    MAX_BODY_BYTES,
    Callback,
    Receiver,
    WebhookApp,
    WebhookKeyError,
    WebhookRejected,
    decrypt_payload,
    encrypt_payload,
    parse_callback,
    parse_envelope,
    sign,
    signed_callback,
    verify_envelope,
)

CLIENT_ID = "test-client-id-longer-than-16"
SECRET_128 = "0123456789abcdef"
SECRET_192 = "0123456789abcdef01234567"
SECRET_256 = "0123456789abcdef0123456789abcdef"
NOW = 1_710_757_981.609
NOW_MS = 1_710_757_981_609
MAX_AGE = 300.0
PAYLOAD = {"_id": "65f8a1b2c3d4e5f6a7b8c9d0", "status": 3, "type": "lipsync", "url": "https://x/y"}


def aes_cbc(plain: bytes, key: bytes, iv: bytes) -> str:
    """Encrypt as the vendor describes, directly with `cryptography` (an independent path)."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def body_of(callback: dict[str, Any]) -> bytes:
    return json.dumps(callback).encode()


class MemoryNonces:
    def __init__(self) -> None:
        self.seen: set[tuple[str, int]] = set()

    def first_time(self, nonce: str, timestamp: int) -> bool:
        if (nonce, timestamp) in self.seen:
            return False
        self.seen.add((nonce, timestamp))
        return True

    def forget(self, nonce: str, timestamp: int) -> None:
        self.seen.discard((nonce, timestamp))


class RecordingHandler:
    def __init__(self, error: Exception | None = None) -> None:
        self.callbacks: list[Callback] = []
        self.error = error

    def handle(self, callback: Callback, now: float) -> str:
        if self.error is not None:
            raise self.error
        self.callbacks.append(callback)
        return "handled"


def receiver(handler: RecordingHandler, nonces: MemoryNonces | None = None) -> Receiver:
    return Receiver(
        client_id=CLIENT_ID,
        client_secret=SECRET_128,
        max_age_seconds=MAX_AGE,
        nonces=nonces or MemoryNonces(),
        handler=handler,
        clock=lambda: NOW,
    )


def fresh(payload: dict[str, Any] = PAYLOAD, **extra: Any) -> dict[str, Any]:
    extra.setdefault("timestamp_ms", NOW_MS)
    extra.setdefault("nonce", "1529")
    return signed_callback(payload, CLIENT_ID, SECRET_128, **extra)


# --- crypto -----------------------------------------------------------------------------------


def test_signature_is_sha1_of_the_four_values_sorted_and_joined() -> None:
    expected = hashlib.sha1(b"1529" + b"1710757981609" + b"Zm9v" + b"abc").hexdigest()
    assert sign("abc", 1710757981609, "1529", "Zm9v") == expected


def test_a_numeric_nonce_signs_like_its_text() -> None:
    assert sign("abc", NOW_MS, 1529, "Zm9v") == sign("abc", str(NOW_MS), "1529", "Zm9v")


@pytest.mark.parametrize("secret", [SECRET_128, SECRET_192, SECRET_256])
def test_payload_round_trips_with_aes_128_192_and_256_keys(secret: str) -> None:
    data = encrypt_payload(PAYLOAD, CLIENT_ID, secret)
    assert decrypt_payload(data, CLIENT_ID, secret) == PAYLOAD


def test_iv_is_the_first_16_bytes_of_a_long_client_id() -> None:
    data = aes_cbc(b'{"status": 2}', SECRET_256.encode(), CLIENT_ID.encode()[:16])
    assert decrypt_payload(data, CLIENT_ID, SECRET_256) == {"status": 2}


def test_a_short_client_id_is_padded_with_spaces_to_make_the_iv() -> None:
    data = aes_cbc(b'{"status": 4}', SECRET_128.encode(), b"short-id" + b" " * 8)
    assert decrypt_payload(data, "short-id", SECRET_128) == {"status": 4}
    assert encrypt_payload(b'{"status": 4}', "short-id", SECRET_128) == data


def test_a_secret_of_another_length_is_refused_as_an_aes_key() -> None:
    with pytest.raises(WebhookKeyError, match="17 bytes"):
        encrypt_payload(PAYLOAD, CLIENT_ID, "sim-client-secret")


@pytest.mark.parametrize(
    "data",
    [
        "not base64 !!",
        base64.b64encode(b"short").decode(),
        encrypt_payload(PAYLOAD, CLIENT_ID, SECRET_256),  # another key
        encrypt_payload(b"not json", CLIENT_ID, SECRET_128),
        encrypt_payload(b"[1, 2]", CLIENT_ID, SECRET_128),
    ],
)
def test_every_undecryptable_payload_is_refused_with_the_same_answer(data: str) -> None:
    with pytest.raises(WebhookRejected) as caught:
        decrypt_payload(data, CLIENT_ID, SECRET_128)
    assert caught.value.http_status == 400
    assert str(caught.value) == "the callback's payload could not be decrypted"


# --- verification ------------------------------------------------------------------------------


def test_a_fresh_correctly_signed_callback_verifies() -> None:
    envelope = parse_envelope(body_of(fresh()))
    verify_envelope(envelope, CLIENT_ID, max_age_seconds=MAX_AGE, now=NOW)
    assert (envelope.timestamp, envelope.nonce) == (NOW_MS, "1529")


@pytest.mark.parametrize(
    "change",
    [
        {"dataEncrypt": encrypt_payload({"_id": "other", "status": 3}, CLIENT_ID, SECRET_128)},
        {"nonce": "1530"},
        {"timestamp": NOW_MS + 1},
        {"signature": "0" * 40},
    ],
)
def test_a_changed_field_breaks_the_signature(change: dict[str, Any]) -> None:
    envelope = parse_envelope(body_of({**fresh(), **change}))
    with pytest.raises(WebhookRejected, match="signature") as caught:
        verify_envelope(envelope, CLIENT_ID, max_age_seconds=MAX_AGE, now=NOW)
    assert caught.value.http_status == 401


def test_a_callback_signed_with_another_client_id_is_refused() -> None:
    envelope = parse_envelope(body_of(fresh()))
    with pytest.raises(WebhookRejected, match="signature"):
        verify_envelope(envelope, "someone-else", max_age_seconds=MAX_AGE, now=NOW)


@pytest.mark.parametrize("offset_seconds", [-MAX_AGE - 1, MAX_AGE + 1])
def test_a_timestamp_older_or_newer_than_the_max_age_is_refused(offset_seconds: float) -> None:
    callback = fresh(timestamp_ms=NOW_MS + int(offset_seconds * 1000))
    envelope = parse_envelope(body_of(callback))
    with pytest.raises(WebhookRejected, match="WEBHOOK_MAX_AGE_SECONDS") as caught:
        verify_envelope(envelope, CLIENT_ID, max_age_seconds=MAX_AGE, now=NOW)
    assert caught.value.http_status == 401


def test_a_timestamp_just_within_the_max_age_is_accepted() -> None:
    envelope = parse_envelope(body_of(fresh(timestamp_ms=NOW_MS - int(MAX_AGE * 1000) + 1)))
    verify_envelope(envelope, CLIENT_ID, max_age_seconds=MAX_AGE, now=NOW)


def test_a_numeric_nonce_is_read_as_text() -> None:
    assert parse_envelope(body_of(fresh(nonce=1529))).nonce == "1529"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        body_of({"signature": "a", "timestamp": 1, "nonce": "1"}),
        body_of({**fresh(), "timestamp": "soon"}),
        body_of({**fresh(), "nonce": "n" * 1000}),
        body_of({**fresh(), "nonce": True}),
        body_of({**fresh(), "signature": None}),
    ],
)
def test_malformed_bodies_are_refused_as_bad_requests(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as caught:
        parse_envelope(body)
    assert caught.value.http_status == 400


def test_the_decrypted_payload_becomes_a_callback() -> None:
    assert parse_callback(PAYLOAD) == Callback(PAYLOAD["_id"], 3, "lipsync", "https://x/y")
    assert parse_callback({"_id": "a", "status": 4, "url": ""}).url is None
    with pytest.raises(WebhookRejected):
        parse_callback({"_id": "a", "status": "3"})


# --- the receiver -------------------------------------------------------------------------------


def test_an_accepted_callback_reaches_the_handler_decrypted() -> None:
    handler = RecordingHandler()
    assert receiver(handler).receive(body_of(fresh())) == "handled"
    assert handler.callbacks == [parse_callback(PAYLOAD)]


def test_a_replayed_callback_is_refused_and_not_handled_twice() -> None:
    handler = RecordingHandler()
    app = receiver(handler)
    body = body_of(fresh())
    app.receive(body)
    with pytest.raises(WebhookRejected, match="replay") as caught:
        app.receive(body)
    assert caught.value.http_status == 401
    assert len(handler.callbacks) == 1


def test_a_callback_that_could_not_be_handled_may_be_sent_again() -> None:
    nonces = MemoryNonces()
    body = body_of(fresh())
    with pytest.raises(RuntimeError):
        receiver(RecordingHandler(RuntimeError("redis down")), nonces).receive(body)
    handler = RecordingHandler()
    assert receiver(handler, nonces).receive(body) == "handled"


def test_a_bad_signature_is_refused_before_the_nonce_is_remembered() -> None:
    nonces = MemoryNonces()
    with pytest.raises(WebhookRejected):
        receiver(RecordingHandler(), nonces).receive(body_of({**fresh(), "signature": "0" * 40}))
    assert nonces.seen == set()


def test_a_receiver_with_a_secret_that_is_no_aes_key_fails_at_start() -> None:
    with pytest.raises(WebhookKeyError):
        Receiver(
            client_id=CLIENT_ID,
            client_secret="sim-client-secret",
            max_age_seconds=MAX_AGE,
            nonces=MemoryNonces(),
            handler=RecordingHandler(),
        )


# --- the WSGI app ------------------------------------------------------------------------------


def call(
    app: WebhookApp, method: str, path: str, body: bytes = b"", length: str | None = None
) -> tuple[int, dict[str, Any]]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)) if length is None else length,
    }
    setup_testing_defaults(environ)
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer["status"] = int(status.split()[0])
        answer["headers"] = dict(headers)

    data = b"".join(app(environ, start_response))
    assert answer["headers"]["Content-Type"] == "application/json"
    return answer["status"], json.loads(data)


def web_app(handler: RecordingHandler, healthy: bool = True) -> WebhookApp:
    return WebhookApp(receiver(handler), health=lambda: healthy)


def test_app_answers_200_with_the_outcome_for_a_good_callback() -> None:
    assert call(web_app(RecordingHandler()), "POST", CALLBACK_PATH, body_of(fresh())) == (
        200,
        {"ok": True, "outcome": "handled"},
    )


def test_app_answers_401_for_a_bad_signature_and_hands_nothing_on() -> None:
    handler = RecordingHandler()
    status, _ = call(web_app(handler), "POST", CALLBACK_PATH, body_of({**fresh(), "nonce": "9"}))
    assert status == 401 and handler.callbacks == []


def test_app_refuses_a_body_over_64_kib() -> None:
    handler = RecordingHandler()
    big = b"x" * (MAX_BODY_BYTES + 1)
    assert call(web_app(handler), "POST", CALLBACK_PATH, big)[0] == 413
    assert handler.callbacks == []


def test_app_wants_a_content_length() -> None:
    assert call(web_app(RecordingHandler()), "POST", CALLBACK_PATH, b"{}", length="")[0] == 411


def test_app_answers_503_when_handling_fails_so_akool_retries() -> None:
    app = web_app(RecordingHandler(RuntimeError("redis down")))
    assert call(app, "POST", CALLBACK_PATH, body_of(fresh()))[0] == 503


def test_app_routes_only_its_two_paths() -> None:
    app = web_app(RecordingHandler())
    assert call(app, "GET", CALLBACK_PATH)[0] == 405
    assert call(app, "GET", "/other")[0] == 404
    assert call(app, "GET", HEALTH_PATH) == (200, {"ok": True})


def test_health_says_503_when_redis_is_not_answering() -> None:
    assert call(web_app(RecordingHandler(), healthy=False), "GET", HEALTH_PATH)[0] == 503
