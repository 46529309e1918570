"""RedisNonces against a real redis-server: a callback's nonce and its payload are both
remembered, so a payload re-signed with a fresh nonce and timestamp is a replay."""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Iterator

import pytest
import redis

from tests.unit.callback_fakes import (
    CLIENT_ID,
    MAX_AGE,
    NOW,
    NOW_MS,
    SECRET_128,
    RecordingHandler,
    body_of,
    fresh,
    resigned,
)
from worker.dev.stack import RedisServer
from worker.errors import WebhookRejected
from worker.store import keys
from worker.web.callbacks import Receiver, RedisNonces

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the module's redis-server, on an empty database."""
    connection = redis.Redis(port=redis_server.port)
    connection.flushdb()
    yield connection
    connection.close()


def redis_receiver(client: redis.Redis, handler: RecordingHandler) -> Receiver:
    """A Receiver whose memory of accepted callbacks is RedisNonces, at a clock stopped at NOW."""
    return Receiver(
        client_id=CLIENT_ID,
        client_secret=SECRET_128,
        max_age_seconds=MAX_AGE,
        nonces=RedisNonces(client, MAX_AGE),
        handler=handler,
        clock=lambda: NOW,
    )


def test_the_same_data_encrypt_re_signed_with_a_fresh_nonce_is_a_replay_in_redis(
    client: redis.Redis,
) -> None:
    handler = RecordingHandler()
    first = fresh()
    redis_receiver(client, handler).receive(body_of(first))

    again = resigned(first, nonce="7777", timestamp_ms=NOW_MS + 1000)
    with pytest.raises(WebhookRejected, match="replay") as caught:
        redis_receiver(client, handler).receive(body_of(again))

    assert caught.value.http_status == 401
    assert len(handler.callbacks) == 1
    # The refused replay left nothing of its own behind.
    assert not client.exists(keys.webhook_nonce("7777", NOW_MS + 1000))


def test_the_payload_is_remembered_by_digest_as_long_as_the_nonce(client: redis.Redis) -> None:
    first = fresh()
    redis_receiver(client, RecordingHandler()).receive(body_of(first))

    digest = hashlib.sha256(base64.b64decode(first["dataEncrypt"])).hexdigest()
    payload_ttl = client.ttl(keys.webhook_payload(digest))
    nonce_ttl = client.ttl(keys.webhook_nonce("1529", NOW_MS))
    assert payload_ttl == nonce_ttl
    assert 0 < payload_ttl <= math.ceil(2 * MAX_AGE)


def test_a_handler_failure_forgets_the_nonce_and_the_payload_in_redis(
    client: redis.Redis,
) -> None:
    first = fresh()
    with pytest.raises(RuntimeError):
        redis_receiver(client, RecordingHandler(RuntimeError("down"))).receive(body_of(first))
    assert client.keys(keys.PREFIX + "webhook:*") == []

    handler = RecordingHandler()
    again = resigned(first, nonce="7777", timestamp_ms=NOW_MS + 1000)
    assert redis_receiver(client, handler).receive(body_of(again)) == "handled"
