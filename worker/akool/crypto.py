"""Akool's callback crypto: the signature and the AES-CBC payload, as plain functions.

Akool signs a callback with a plain SHA-1 over its sorted fields and the client id, and
encrypts the payload with AES-CBC under the client secret, the client id's first 16 bytes as
the IV (docs/akool.md, "Webhooks"). The receiver (worker/web/callbacks.py) verifies and
decrypts with these; the simulator (worker/dev/simulator) and the tests sign and encrypt with
them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from worker.errors import WebhookKeyError, WebhookRejected

AES_KEY_SIZES = (16, 24, 32)
AES_BLOCK_BYTES = 16


def sign(client_id: str, timestamp: int | str, nonce: int | str, data_encrypt: str) -> str:
    """Akool's callback signature: SHA-1 of the four values sorted and joined, lowercase hex."""
    text = "".join(sorted([client_id, str(timestamp), str(nonce), data_encrypt]))
    # Akool's scheme, not our choice: plain SHA-1 without a key.
    return hashlib.sha1(text.encode("utf-8")).hexdigest()  # noqa: S324


def cipher_for(client_id: str, client_secret: str) -> Cipher[modes.CBC]:
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
    encryptor = cipher_for(client_id, client_secret).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")


def decrypt_payload(data_encrypt: str, client_id: str, client_secret: str) -> dict[str, Any]:
    """Decrypt `dataEncrypt` into its JSON object; WebhookRejected (400) when it is not one.

    Every way of failing gives the same answer, so the receiver tells a caller nothing about
    the padding (CBC without a MAC must not become a padding oracle).
    """
    cipher = cipher_for(client_id, client_secret)
    try:
        raw = base64.b64decode(data_encrypt, validate=True)
        decryptor = cipher.decryptor()
        padded = decryptor.update(raw) + decryptor.finalize()
        unpadder = padding.PKCS7(AES_BLOCK_BYTES * 8).unpadder()
        value = json.loads(unpadder.update(padded) + unpadder.finalize())
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: JSON nested too deep for the parser is no object of Akool's either.
        value = None
    if not isinstance(value, dict):
        raise WebhookRejected("the callback's payload could not be decrypted", http_status=400)
    return value


def signed_callback(
    payload: Mapping[str, Any],
    client_id: str,
    client_secret: str,
    *,
    timestamp_ms: int,
    nonce: str | int | None = None,
) -> dict[str, Any]:
    """A complete callback body as Akool sends it, stamped `timestamp_ms` (epoch ms), for
    the simulator and the tests."""
    timestamp = timestamp_ms
    nonce = str(secrets.randbelow(10**6)) if nonce is None else nonce
    data = encrypt_payload(payload, client_id, client_secret)
    return {
        "signature": sign(client_id, timestamp, nonce, data),
        "dataEncrypt": data,
        "timestamp": timestamp,
        "nonce": nonce,
    }
