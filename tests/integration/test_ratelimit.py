"""Tests of RequestBudget, the fleet-wide Akool request budget, against a private redis-server
(its Lua script runs in Redis, so it is tested there)."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from worker.dev.stack import RedisServer, free_port
from worker.errors import AkoolRateLimited, AkoolTransientError, StoreUnavailable
from worker.ratelimit import RequestBudget

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    yield connection
    connection.close()


@pytest.fixture
def key() -> str:
    # A fresh key per test, so no test inherits another's spent budget.
    return f"test:budget:{uuid.uuid4().hex}"


def test_the_first_request_is_free(client: redis.Redis, key: str) -> None:
    assert RequestBudget(client, 10.0, key=key).reserve() == 0.0


def test_back_to_back_reserves_at_10_per_second_after_the_first_are_told_to_wait(
    client: redis.Redis, key: str
) -> None:
    budget = RequestBudget(client, 10.0, burst=1, key=key)
    assert budget.reserve() == 0.0
    waits = [budget.reserve() for _ in range(3)]
    assert all(0.0 < wait <= 0.1 for wait in waits)
    # A refused reserve takes nothing, so the wait shrinks as time passes and never grows.
    assert waits == sorted(waits, reverse=True)


def test_each_taken_slot_pushes_the_next_free_slot_one_interval_later(
    client: redis.Redis, key: str
) -> None:
    budget = RequestBudget(client, 1.0, burst=3, key=key)
    assert [budget.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert 0.0 < budget.reserve() <= 1.0


def test_two_budgets_on_the_same_key_share_one_budget(client: redis.Redis, key: str) -> None:
    first_worker = RequestBudget(client, 1.0, key=key)
    second_worker = RequestBudget(client, 1.0, key=key)
    assert first_worker.reserve() == 0.0
    assert second_worker.reserve() > 0.0
    assert first_worker.reserve() > 0.0


def test_budgets_on_different_keys_do_not_share(client: redis.Redis, key: str) -> None:
    assert RequestBudget(client, 1.0, key=key).reserve() == 0.0
    assert RequestBudget(client, 1.0, key=key + ":other").reserve() == 0.0


def test_acquire_with_no_wait_allowed_raises_rate_limited_with_a_positive_retry_after(
    client: redis.Redis, key: str
) -> None:
    budget = RequestBudget(client, 1.0, key=key)
    budget.acquire(0.0)
    with pytest.raises(AkoolRateLimited) as info:
        budget.acquire(0.0)
    assert info.value.retry_after is not None
    assert 0.0 < info.value.retry_after <= 1.0
    assert isinstance(info.value, AkoolTransientError)
    assert "AKOOL_MAX_RPS" in str(info.value)


def test_a_refused_acquire_takes_no_slot(client: redis.Redis, key: str) -> None:
    budget = RequestBudget(client, 0.5, key=key)
    budget.acquire(0.0)
    for _ in range(3):
        with pytest.raises(AkoolRateLimited):
            budget.acquire(0.0)
    # Had the refusals taken slots, the next free one would be 8 s away, not within 2 s.
    assert 0.0 < budget.reserve() <= 2.0


def test_acquire_waits_for_a_slot_and_takes_it_when_max_wait_is_enough(
    client: redis.Redis, key: str
) -> None:
    budget = RequestBudget(client, 2.0, key=key)
    budget.acquire(0.0)
    budget.acquire(5.0)
    # The waited-for slot was taken, so the budget is spent again right after.
    assert budget.reserve() > 0.0


def test_the_budget_key_expires_by_itself(client: redis.Redis, key: str) -> None:
    RequestBudget(client, 2.0, burst=2, key=key).reserve()
    ttl_ms = client.pttl(key)
    # One slot taken at 2/s: the key is needed for one interval (500 ms, rounded up), no longer.
    assert isinstance(ttl_ms, int)
    assert 0 < ttl_ms <= 501


def test_a_stopped_redis_is_store_unavailable_for_reserve_and_acquire() -> None:
    with tempfile.TemporaryDirectory() as tmpdir:
        server = RedisServer(Path(tmpdir), port=free_port()).start()
        connection = redis.Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=2)
        budget = RequestBudget(connection, 5.0, key="test:budget:stopped")
        assert budget.reserve() == 0.0
        server.stop()
        with pytest.raises(StoreUnavailable):
            budget.reserve()
        with pytest.raises(StoreUnavailable):
            budget.acquire(1.0)
        connection.close()
