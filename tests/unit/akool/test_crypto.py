"""Tests of worker.akool.crypto without a network: Akool's callback signature and the
AES crypto of its payload.

Test vectors are built by encrypting (the vendor's sample does not verify with its own
credentials); the IV rule is checked against AES done directly with `cryptography`.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.unit.callback_fakes import CLIENT_ID, NOW_MS, PAYLOAD, SECRET_128
from worker.akool.crypto import decrypt_payload, encrypt_payload, sign
from worker.errors import WebhookKeyError, WebhookRejected

SECRET_192 = "0123456789abcdef01234567"
SECRET_256 = "0123456789abcdef0123456789abcdef"


def aes_cbc(plain: bytes, key: bytes, iv: bytes) -> str:
    """Encrypt as the vendor describes, directly with `cryptography` (an independent path)."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


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


def test_a_payload_nested_too_deep_for_the_parser_is_refused_as_a_bad_request() -> None:
    deep = b"[" * 30_000 + b"]" * 30_000
    data = encrypt_payload(deep, CLIENT_ID, SECRET_128)
    with pytest.raises(WebhookRejected) as caught:
        decrypt_payload(data, CLIENT_ID, SECRET_128)
    assert caught.value.http_status == 400
