"""Tests of RequestBudget, the fleet-wide Akool request budget, against a private redis-server
(its Lua scripts run in Redis, so they are tested there): reservations and the adaptive rate."""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from worker.akool.budget import AimdRule, RequestBudget, SlotReserved
from worker.dev.stack import RedisServer, free_port
from worker.errors import AkoolRateLimited, AkoolTransientError, StoreUnavailable

pytestmark = pytest.mark.integration

# A wait is measured from when the reservation is made: a busy machine (the suite runs on
# several processes) may delay a call, which shortens the waits after it, never lengthens
# them beyond this rounding.
SLACK = 0.005


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    yield connection
    connection.close()


@pytest.fixture
def key() -> str:
    # A fresh key per test, so no test inherits another's spent budget.
    return f"test:budget:{uuid.uuid4().hex}"


def test_the_first_request_is_served_at_once(client: redis.Redis, key: str) -> None:
    reservation = RequestBudget(client, 10.0, key=key).reserve()
    assert reservation.held and reservation.wait == 0.0


def test_back_to_back_reserves_get_slots_one_interval_apart(client: redis.Redis, key: str) -> None:
    budget = RequestBudget(client, 10.0, burst=1, key=key)
    started = time.monotonic()
    waits = [budget.reserve().wait for _ in range(4)]
    spent = time.monotonic() - started
    assert waits[0] == 0.0
    # Each reservation takes its slot, so the waits grow by 0.1 s (less the time spent asking).
    for earlier, later in zip(waits, waits[1:], strict=False):
        assert 0.1 - spent - 0.001 <= later - earlier <= 0.1 + 0.001


def test_a_burst_serves_that_many_at_once_then_reserves(client: redis.Redis, key: str) -> None:
    budget = RequestBudget(client, 1.0, burst=3, key=key)
    assert [budget.reserve().wait for _ in range(3)] == [0.0, 0.0, 0.0]
    assert 0.0 < budget.reserve().wait <= 1.0


def test_two_budgets_on_the_same_key_share_one_queue(client: redis.Redis, key: str) -> None:
    first_worker = RequestBudget(client, 1.0, key=key)
    second_worker = RequestBudget(client, 1.0, key=key)
    assert first_worker.reserve().wait == 0.0
    assert 0.9 < second_worker.reserve().wait <= 1.0
    assert 1.9 < first_worker.reserve().wait <= 2.0


def test_budgets_on_different_keys_do_not_share(client: redis.Redis, key: str) -> None:
    assert RequestBudget(client, 1.0, key=key).reserve().wait == 0.0
    assert RequestBudget(client, 1.0, key=key + ":other").reserve().wait == 0.0


def test_threads_reserving_at_once_get_distinct_slots_spaced_one_interval_apart(
    client: redis.Redis, key: str
) -> None:
    rate, threads, each = 10.0, 8, 4
    slots: list[float] = []
    lock = threading.Lock()
    connection_url = client.connection_pool.connection_kwargs

    def reserve_some() -> None:
        own = redis.Redis(**connection_url)
        budget = RequestBudget(own, rate, key=key)
        for _ in range(each):
            asked = time.time()
            reservation = budget.reserve()
            with lock:
                slots.append(asked + reservation.wait)
        own.close()

    workers = [threading.Thread(target=reserve_some) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    slots.sort()
    gaps = [later - earlier for earlier, later in zip(slots, slots[1:], strict=False)]
    assert len(slots) == threads * each
    # 1 / rate = 100 ms apart; the local clock read before each call blurs it by a few ms
    # (tens on a busy machine), far less than the spacing.
    assert min(gaps) > 0.05
    assert slots[-1] - slots[0] == pytest.approx((threads * each - 1) / rate, abs=0.1)


def test_a_reservation_beyond_the_horizon_is_not_made(client: redis.Redis, key: str) -> None:
    budget = RequestBudget(client, 2.0, key=key, horizon=1.0)
    waits = [budget.reserve() for _ in range(4)]
    assert [r.held for r in waits] == [True, True, True, False]
    # The refused one is told to ask again once its turn (1.5 s away) is within the
    # horizon; it took nothing, so the next one is told the same.
    assert 0.4 < waits[3].wait <= 0.5 + SLACK
    again = budget.reserve()
    assert not again.held
    assert 0.4 < again.wait <= 0.5 + SLACK


def test_a_next_poll_books_its_slot_only_when_the_queue_is_longer_than_its_backoff(
    client: redis.Redis, key: str
) -> None:
    budget = RequestBudget(client, 2.0, key=key)
    first = budget.reserve(not_before=5.0)
    assert (first.held, first.wait) == (False, 5.0)  # empty queue: reserve after the backoff
    for _ in range(12):
        budget.reserve()  # a queue of 6 s
    booked = budget.reserve(not_before=5.0)
    assert booked.held
    assert 5.9 < booked.wait <= 6.0 + SLACK


def test_acquire_within_max_wait_sleeps_for_its_slot(client: redis.Redis, key: str) -> None:
    budget = RequestBudget(client, 4.0, key=key)
    budget.acquire(0.0)
    started = time.monotonic()
    budget.acquire(5.0)
    assert 0.2 <= time.monotonic() - started <= 0.35


def test_acquire_beyond_max_wait_raises_slot_reserved_and_keeps_the_slot(
    client: redis.Redis, key: str
) -> None:
    budget = RequestBudget(client, 1.0, key=key)
    budget.acquire(0.0)
    with pytest.raises(SlotReserved) as info:
        budget.acquire(0.0)
    assert isinstance(info.value, AkoolRateLimited) and isinstance(info.value, AkoolTransientError)
    assert "AKOOL_MAX_RPS" in str(info.value)
    assert info.value.retry_after is not None and 0.9 < info.value.retry_after <= 1.0
    assert info.value.reserved_at == pytest.approx(time.time() + info.value.retry_after, abs=0.1)
    # The refused acquire holds its slot: the next free one is a further second away.
    assert 1.9 < budget.reserve().wait <= 2.0


def test_acquire_beyond_the_horizon_raises_rate_limited_with_nothing_reserved(
    client: redis.Redis, key: str
) -> None:
    budget = RequestBudget(client, 1.0, key=key, horizon=0.5)
    budget.acquire(0.0)
    with pytest.raises(AkoolRateLimited) as info:
        budget.acquire(0.0)
    assert not isinstance(info.value, SlotReserved)
    assert info.value.retry_after == pytest.approx(0.5, abs=0.02)  # its turn, less the horizon


def test_the_budget_key_expires_by_itself(client: redis.Redis, key: str) -> None:
    RequestBudget(client, 2.0, burst=2, key=key).reserve()
    ttl_ms = client.pttl(key)
    # One slot taken at 2/s: the key is needed for one interval (500 ms, rounded up), no longer.
    assert isinstance(ttl_ms, int)
    assert 0 < ttl_ms <= 501


# --- the adaptive rate ---------------------------------------------------------------------


def test_the_rate_starts_at_the_ceiling(client: redis.Redis, key: str) -> None:
    budget = RequestBudget(client, 8.0, key=key)
    budget.reserve()
    assert budget.current_rate(client) == 8.0


def test_too_frequent_cuts_the_rate_once_per_round_down_to_the_floor(
    client: redis.Redis, key: str
) -> None:
    rule = AimdRule(ceiling=8.0, floor=1.5)
    budget = RequestBudget(client, 8.0, key=key, rule=rule)
    assert budget.slow_down() is True
    assert budget.current_rate(client) == pytest.approx(7.6)  # nothing known: 5 % off
    # Answers to calls sent before the cut do not cut again.
    assert budget.slow_down() is False
    assert budget.current_rate(client) == pytest.approx(7.6)
    for _ in range(40):
        client.hset(budget.rate_key, "cut_until_us", 0)  # as if the round were over
        budget.slow_down()
    assert budget.current_rate(client) == 1.5


def test_a_round_mostly_refused_cuts_to_what_akool_served(client: redis.Redis, key: str) -> None:
    budget = RequestBudget(client, 20.0, key=key)
    assert budget.slow_down() is True  # nothing known yet: 5 % off, 19 req/s
    # Answers to slots of the old rate (the first second, the queue being empty) do not
    # count; refusals at the rate now do, and are judged after a second of them.
    assert budget.slow_down() is False
    for _ in range(30):  # the fleet asks for more than the rate: every slot is used
        budget.reserve()
    time.sleep(1.05)
    for _ in range(13):
        assert budget.slow_down() is False
    time.sleep(1.05)
    assert budget.slow_down() is True
    # About 1.1 s of slots at 19 req/s: 21 sent, 14 refused, 7 served: 6.3 a second. How
    # long the round really lasted moves that by a second's share when the machine is busy
    # (the suite runs on several processes), and a 5 % step would have left 18.
    assert 4.5 <= budget.current_rate(client) <= 7.5


def test_a_round_is_judged_once_ten_calls_were_sent_at_the_rate_now(
    client: redis.Redis, key: str
) -> None:
    budget = RequestBudget(client, 5.0, key=key)
    budget.slow_down()  # 4.75 req/s: 10 calls take 2.1 s
    for _ in range(15):
        budget.reserve()
    time.sleep(1.05)
    assert budget.slow_down() is False
    time.sleep(1.2)
    assert budget.slow_down() is False  # 1.2 s of slots: too few calls to judge by
    time.sleep(1.0)
    assert budget.slow_down() is True
    # 2.2 s at 4.75 req/s: 10.5 sent, 3 refused: 3.4 served a second.
    # (A busy machine stretches or shortens the round by a share of a second.)
    assert 2.5 <= budget.current_rate(client) <= 4.5


def test_when_the_fleet_asks_for_less_than_the_rate_refusals_are_judged_by_its_calls(
    client: redis.Redis, key: str
) -> None:
    budget = RequestBudget(client, 20.0, key=key)
    budget.slow_down()  # 19 req/s
    time.sleep(1.0)
    for _ in range(12):  # 12 calls in the round, not the 19 the rate allows
        budget.reserve()
        time.sleep(0.01)
    time.sleep(0.2)
    budget.slow_down()
    budget.slow_down()
    time.sleep(0.75)
    assert budget.slow_down() is True
    # 12 sent, 3 refused in about 1.07 s: 8.4 served a second, not the 17 that 19 req/s
    # less 3 refusals would suggest (a busy machine moves the round's length a little).
    assert 6.5 <= budget.current_rate(client) <= 10.5


def test_after_a_cut_reservations_are_spaced_at_the_lower_rate(
    client: redis.Redis, key: str
) -> None:
    budget = RequestBudget(client, 10.0, key=key, rule=AimdRule(ceiling=10.0, kept=0.5))
    budget.slow_down()
    assert budget.reserve().wait == 0.0
    assert 0.1 < budget.reserve().wait <= 0.2 + SLACK


def test_retry_after_pushes_the_next_slot_past_it(client: redis.Redis, key: str) -> None:
    budget = RequestBudget(client, 10.0, key=key)
    budget.slow_down(retry_after=2.0)
    assert 1.9 < budget.reserve().wait <= 2.0 + SLACK


def test_the_rate_climbs_back_to_the_ceiling_one_step_per_round(
    client: redis.Redis, key: str
) -> None:
    rule = AimdRule(ceiling=4.0, kept=0.5, step=1.0, round_min=0.1, round_max=0.1)
    budget = RequestBudget(client, 4.0, key=key, rule=rule)
    budget.slow_down()
    assert budget.current_rate(client) == 2.0
    time.sleep(0.25)  # the round (0.1 s) ends, then one step of 0.1 s
    budget.reserve()
    assert budget.current_rate(client) == 3.0
    time.sleep(0.5)
    budget.reserve()
    assert budget.current_rate(client) == 4.0  # never above the ceiling


def test_a_lowered_ceiling_caps_a_stored_rate(client: redis.Redis, key: str) -> None:
    RequestBudget(client, 10.0, key=key).reserve()
    lower = RequestBudget(client, 3.0, key=key)
    lower.reserve()
    assert lower.current_rate(client) == 3.0


def test_the_default_budget_keeps_its_rate_where_the_scrape_reads_it(
    client: redis.Redis,
) -> None:
    budget = RequestBudget(client, 5.0)
    assert budget.rate_key == "lipsync:budget:akool_rate"
    budget.slow_down()
    assert float(client.hget("lipsync:budget:akool_rate", "rps") or 0) == 4.75
    client.delete(budget.key, budget.rate_key)


def test_a_stopped_redis_is_store_unavailable_for_reserve_acquire_and_slow_down() -> None:
    with tempfile.TemporaryDirectory() as tmpdir:
        server = RedisServer(Path(tmpdir), port=free_port()).start()
        connection = redis.Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=2)
        budget = RequestBudget(connection, 5.0, key="test:budget:stopped")
        assert budget.reserve().wait == 0.0
        server.stop()
        with pytest.raises(StoreUnavailable):
            budget.reserve()
        with pytest.raises(StoreUnavailable):
            budget.acquire(1.0)
        with pytest.raises(StoreUnavailable):
            budget.slow_down()
        connection.close()
