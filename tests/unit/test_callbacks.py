"""Tests of worker.callbacks without a network or Redis: reading and verifying a signed
callback, its payload, the Receiver (replays, handler failures, a bad secret) and what the
handler logs."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any, cast

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
    resigned,
)
from worker.callbacks import (
    Callback,
    CallbackHandler,
    Receiver,
    parse_callback,
    read_envelope,
    verify_envelope,
)
from worker.errors import WebhookKeyError, WebhookRejected
from worker.jobs import JobStore
from worker.settings import Settings
from worker.webhook_crypto import encrypt_payload

BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# A payload whose ciphertext (112 bytes) is no multiple of 3 bytes: its base64 ends in "==".
PADDED_PAYLOAD = {**PAYLOAD, "url": "https://x/" + "y" * 20}

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
        body_of({**fresh(), "nonce": "\ud800"}),
        body_of({**fresh(), "signature": "\udfff" * 40}),
        body_of({**fresh(), "dataEncrypt": "\u00e9" + fresh()["dataEncrypt"]}),
    ],
)
def test_malformed_bodies_are_refused_as_bad_requests(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as caught:
        read_envelope(body)
    assert caught.value.http_status == 400


@pytest.mark.parametrize("timestamp", ["\u00b2", "\u0661\u0667\u0661\u0660", "\uff11\uff17\uff11"])
def test_a_timestamp_in_digits_other_than_ascii_is_refused_as_a_bad_request(
    timestamp: str,
) -> None:
    with pytest.raises(WebhookRejected) as caught:
        receiver(RecordingHandler()).receive(body_of({**fresh(), "timestamp": timestamp}))
    assert caught.value.http_status == 400


def test_a_timestamp_in_arabic_indic_digits_is_not_read_as_the_signed_number() -> None:
    # int() reads these digits as NOW_MS, which the body was signed with.
    arabic = "".join(chr(0x0660 + int(d)) for d in str(NOW_MS))
    with pytest.raises(WebhookRejected) as caught:
        receiver(RecordingHandler()).receive(body_of({**fresh(), "timestamp": arabic}))
    assert caught.value.http_status == 400


@pytest.mark.parametrize("body", [b"[" * 30_000, b'{"a": ' * 30_000], ids=["array", "object"])
def test_json_nested_30000_deep_is_refused_as_a_bad_request(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as caught:
        receiver(RecordingHandler()).receive(body)
    assert caught.value.http_status == 400


def test_a_payload_nested_30000_deep_is_refused_as_a_bad_request() -> None:
    deep = {"dataEncrypt": encrypt_payload(b"[" * 30_000, CLIENT_ID, SECRET_128)}
    with pytest.raises(WebhookRejected) as caught:
        receiver(RecordingHandler()).receive(body_of(resigned(deep, nonce="1")))
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


def test_the_same_data_encrypt_re_signed_with_a_fresh_nonce_and_timestamp_is_a_replay() -> None:
    handler = RecordingHandler()
    app = receiver(handler)
    first = fresh()
    app.receive(body_of(first))
    again = resigned(first, nonce="7777", timestamp_ms=NOW_MS + 1000)
    with pytest.raises(WebhookRejected, match="replay") as caught:
        app.receive(body_of(again))
    assert caught.value.http_status == 401
    assert len(handler.callbacks) == 1


def respelled(data: str) -> str:
    """The same bytes in other base64 text: a spare low bit of the last character set."""
    text = data.rstrip("=")
    padding = data[len(text) :]
    assert padding, "only base64 that ends in padding has spare bits"
    last = BASE64_ALPHABET[BASE64_ALPHABET.index(text[-1]) | 1]
    return text[:-1] + last + padding


def test_a_data_encrypt_spelled_differently_in_base64_is_still_a_replay() -> None:
    first = fresh(PADDED_PAYLOAD)
    other_spelling = respelled(first["dataEncrypt"])
    assert other_spelling != first["dataEncrypt"]
    assert base64.b64decode(other_spelling) == base64.b64decode(first["dataEncrypt"])
    app = receiver(RecordingHandler())
    app.receive(body_of(first))
    again = resigned({"dataEncrypt": other_spelling}, nonce="7777", timestamp_ms=NOW_MS + 1)
    with pytest.raises(WebhookRejected, match="replay"):
        app.receive(body_of(again))


def same_body(callback: dict[str, Any]) -> dict[str, Any]:
    """Akool's retry as the very same body."""
    return callback


@pytest.mark.parametrize(
    "retry",
    [same_body, lambda callback: resigned(callback, nonce="7777", timestamp_ms=NOW_MS + 1000)],
    ids=["same-body", "re-signed"],
)
def test_a_handler_failure_lets_the_same_callback_through_on_akools_retry(
    retry: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    nonces = MemoryNonces()
    callback = fresh()
    with pytest.raises(RuntimeError):
        receiver(RecordingHandler(RuntimeError("redis down")), nonces).receive(body_of(callback))
    assert (nonces.seen, nonces.payloads) == (set(), set())
    handler = RecordingHandler()
    assert receiver(handler, nonces).receive(body_of(retry(callback))) == "handled"


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


# --- what the handler logs -------------------------------------------------------------------


class NoJobs:
    """A JobStore that knows no Akool id."""

    def job_for_akool_id(self, akool_id: str) -> None:
        return None


def test_an_akool_id_with_control_characters_is_logged_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = CallbackHandler(
        cast(JobStore, NoJobs()),
        cast(Settings, None),
        enqueue_archive=lambda job_id: None,
        job_ended=lambda job_id: None,
    )
    forged = "65f8\n[2024-03-18 10:33:01,609: ERROR/MainProcess] forged\x1b[2J\x9b\x7f"
    with caplog.at_level(logging.INFO, logger="worker.callbacks"):
        assert handler.handle(Callback(forged, 3), NOW) == "unknown-job"
    message = caplog.records[-1].getMessage()
    assert not any(c in message for c in "\n\x1b\x9b\x7f")
    assert "65f8\\x0a[2024" in message and "forged\\x1b[2J\\x9b\\x7f" in message
