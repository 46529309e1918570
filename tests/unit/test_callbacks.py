"""Tests of worker.callbacks without a network or Redis: reading and verifying a signed
callback, its payload, and the Receiver (replays, handler failures, a bad secret)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.callback_fakes import (
    CLIENT_ID,
    MAX_AGE,
    NOW,
    NOW_MS,
    PAYLOAD,
    SECRET_128,
    MemoryNonces,
    RecordingHandler,
    body_of,
    fresh,
    receiver,
)
from worker.callbacks import Callback, Receiver, parse_callback, read_envelope, verify_envelope
from worker.errors import WebhookKeyError, WebhookRejected
from worker.webhook_crypto import encrypt_payload

# --- verification ------------------------------------------------------------------------------


def test_a_fresh_correctly_signed_callback_verifies() -> None:
    envelope = read_envelope(body_of(fresh()))
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
    envelope = read_envelope(body_of({**fresh(), **change}))
    with pytest.raises(WebhookRejected, match="signature") as caught:
        verify_envelope(envelope, CLIENT_ID, max_age_seconds=MAX_AGE, now=NOW)
    assert caught.value.http_status == 401


def test_a_callback_signed_with_another_client_id_is_refused() -> None:
    envelope = read_envelope(body_of(fresh()))
    with pytest.raises(WebhookRejected, match="signature"):
        verify_envelope(envelope, "someone-else", max_age_seconds=MAX_AGE, now=NOW)


@pytest.mark.parametrize("offset_seconds", [-MAX_AGE - 1, MAX_AGE + 1])
def test_a_timestamp_older_or_newer_than_the_max_age_is_refused(offset_seconds: float) -> None:
    callback = fresh(timestamp_ms=NOW_MS + int(offset_seconds * 1000))
    envelope = read_envelope(body_of(callback))
    with pytest.raises(WebhookRejected, match="WEBHOOK_MAX_AGE_SECONDS") as caught:
        verify_envelope(envelope, CLIENT_ID, max_age_seconds=MAX_AGE, now=NOW)
    assert caught.value.http_status == 401


def test_a_timestamp_just_within_the_max_age_is_accepted() -> None:
    envelope = read_envelope(body_of(fresh(timestamp_ms=NOW_MS - int(MAX_AGE * 1000) + 1)))
    verify_envelope(envelope, CLIENT_ID, max_age_seconds=MAX_AGE, now=NOW)


def test_a_numeric_nonce_is_read_as_text() -> None:
    assert read_envelope(body_of(fresh(nonce=1529))).nonce == "1529"


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
        read_envelope(body)
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
