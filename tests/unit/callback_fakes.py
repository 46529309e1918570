"""Signed callbacks and in-memory fakes for the webhook tests (crypto, callbacks, web)."""

from __future__ import annotations

import json
from typing import Any

from worker.akool.crypto import sign, signed_callback
from worker.web.callbacks import Callback, Receiver

CLIENT_ID = "test-client-id-longer-than-16"
SECRET_128 = "0123456789abcdef"
NOW = 1_710_757_981.609
NOW_MS = 1_710_757_981_609
MAX_AGE = 300.0
PAYLOAD: dict[str, Any] = {
    "_id": "65f8a1b2c3d4e5f6a7b8c9d0",
    "status": 3,
    "type": "lipsync",
    "url": "https://x/y",
}


def body_of(callback: dict[str, Any]) -> bytes:
    return json.dumps(callback).encode()


class MemoryNonces:
    """RedisNonces in sets: the (nonce, timestamp) pairs and payload digests accepted.

    As in Redis, a callback is remembered only when neither its pair nor its payload was.
    """

    def __init__(self) -> None:
        self.seen: set[tuple[str, int]] = set()
        self.payloads: set[str] = set()

    def first_time(self, nonce: str, timestamp: int, digest: str) -> bool:
        if (nonce, timestamp) in self.seen or digest in self.payloads:
            return False
        self.seen.add((nonce, timestamp))
        self.payloads.add(digest)
        return True

    def forget(self, nonce: str, timestamp: int, digest: str) -> None:
        self.seen.discard((nonce, timestamp))
        self.payloads.discard(digest)


class RecordingHandler:
    """A CallbackHandler that records each callback, or raises the error it was given."""

    def __init__(self, error: Exception | None = None) -> None:
        self.callbacks: list[Callback] = []
        self.error = error

    def handle(self, callback: Callback, now: float) -> str:
        if self.error is not None:
            raise self.error
        self.callbacks.append(callback)
        return "handled"


def receiver(handler: RecordingHandler, nonces: MemoryNonces | None = None) -> Receiver:
    """A Receiver with the test credentials and a clock standing still at NOW."""
    return Receiver(
        client_id=CLIENT_ID,
        client_secret=SECRET_128,
        max_age_seconds=MAX_AGE,
        nonces=nonces or MemoryNonces(),
        handler=handler,
        clock=lambda: NOW,
    )


def fresh(payload: dict[str, Any] = PAYLOAD, **extra: Any) -> dict[str, Any]:
    """A callback as Akool sends it, signed and encrypted, sent just now."""
    extra.setdefault("timestamp_ms", NOW_MS)
    extra.setdefault("nonce", "1529")
    return signed_callback(payload, CLIENT_ID, SECRET_128, **extra)


def resigned(callback: dict[str, Any], *, nonce: str, timestamp_ms: int = NOW_MS) -> dict[str, Any]:
    """The callback's dataEncrypt signed again with another nonce and timestamp.

    Anyone who knows the client id can do this: Akool's signature is a SHA-1 without a key.
    """
    data = callback["dataEncrypt"]
    return {
        "signature": sign(CLIENT_ID, timestamp_ms, nonce, data),
        "dataEncrypt": data,
        "timestamp": timestamp_ms,
        "nonce": nonce,
    }
