"""Signed callbacks and in-memory fakes for the webhook tests (crypto, callbacks, web)."""

from __future__ import annotations

import json
from typing import Any

from worker.callbacks import Callback, Receiver
from worker.webhook_crypto import signed_callback

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
    """RedisNonces in a set: which (nonce, timestamp) pairs were accepted."""

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
