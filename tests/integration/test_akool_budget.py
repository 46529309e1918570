"""Tests of AkoolClient with the fleet's request budget in a private redis-server, against
the in-process Akool simulator (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from worker.akool.budget import RequestBudget, SlotReserved, holding_slot
from worker.akool.client import AkoolClient
from worker.config.settings import Secret
from worker.dev.simulator import Simulator, SimulatorConfig
from worker.dev.stack import RedisServer
from worker.errors import AkoolRateLimited, AkoolTransientError

pytestmark = pytest.mark.integration

API_KEY = "sim-key-Q7distinctApiKey"
CLIENT_ID = "sim-client-id"
CLIENT_SECRET = "sim-secret-W3distinctClientSecret"
AUDIO = "https://example.invalid/a.wav"
TIMEOUT = 10


@pytest.fixture
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(
        api_key=API_KEY, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, default_size=1024
    )
    simulator = Simulator(config, host="127.0.0.1", port=0).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def sim_stats(sim: Simulator) -> dict[str, Any]:
    result: dict[str, Any] = requests.get(sim.base_url + "/_sim/stats", timeout=TIMEOUT).json()
    return result


@pytest.fixture
def budget(redis_server: RedisServer) -> Iterator[RequestBudget]:
    connection = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    # One request a second leaves a whole second for the test to find the budget spent.
    yield RequestBudget(connection, 1.0, key=f"test:akool:{uuid.uuid4().hex}")
    connection.close()


def test_a_spent_budget_reserves_a_slot_for_the_second_call_without_sending_it(
    sim: Simulator, session: requests.Session, budget: RequestBudget
) -> None:
    client = AkoolClient(
        sim.base_url, api_key=Secret(API_KEY), session=session, budget=budget, budget_wait=0
    )
    client.submit("https://example.invalid/v.mp4", AUDIO)
    with pytest.raises(SlotReserved) as info:
        client.submit("https://example.invalid/v.mp4", AUDIO)
    assert info.value.retry_after is not None and info.value.retry_after > 0
    stats = sim_stats(sim)
    assert stats["submits"] == 1
    assert stats["max_requests_per_second"] == 1


def test_the_token_request_draws_from_the_budget_too(
    sim: Simulator, session: requests.Session, budget: RequestBudget
) -> None:
    client = AkoolClient(
        sim.base_url,
        client_id=CLIENT_ID,
        client_secret=Secret(CLIENT_SECRET),
        session=session,
        budget=budget,
        budget_wait=0,
    )
    with pytest.raises(AkoolRateLimited):
        client.submit("https://example.invalid/v.mp4", AUDIO)
    stats = sim_stats(sim)
    assert (stats["token_requests"], stats["submits"]) == (1, 0)


def test_a_call_waits_for_the_budget_when_budget_wait_allows(
    sim: Simulator, session: requests.Session, budget: RequestBudget
) -> None:
    client = AkoolClient(
        sim.base_url, api_key=Secret(API_KEY), session=session, budget=budget, budget_wait=5
    )
    akool_id = client.submit("https://example.invalid/v.mp4", AUDIO)
    assert client.status(akool_id).status == 1
    assert sim_stats(sim)["polls"] == 1


def test_a_call_coming_back_at_its_reserved_slot_goes_without_asking_the_budget_again(
    sim: Simulator, session: requests.Session, budget: RequestBudget
) -> None:
    client = AkoolClient(
        sim.base_url, api_key=Secret(API_KEY), session=session, budget=budget, budget_wait=0
    )
    akool_id = client.submit("https://example.invalid/v.mp4", AUDIO)
    with pytest.raises(SlotReserved) as info:
        client.status(akool_id)
    time.sleep(max(0.0, info.value.reserved_at - time.time()))
    with holding_slot(info.value.reserved_at):
        assert client.status(akool_id).status == 1
    assert sim_stats(sim)["polls"] == 1
    # The slot was its own: the budget's queue did not grow, the next slot is one second on.
    assert 0.9 < budget.reserve().wait <= 1.0


def test_a_call_coming_back_early_reserves_anew(
    sim: Simulator, session: requests.Session, budget: RequestBudget
) -> None:
    client = AkoolClient(
        sim.base_url, api_key=Secret(API_KEY), session=session, budget=budget, budget_wait=0
    )
    akool_id = client.submit("https://example.invalid/v.mp4", AUDIO)
    with pytest.raises(SlotReserved) as info, holding_slot(time.time() + 30):
        client.status(akool_id)
    assert 0.9 < (info.value.retry_after or 0) <= 1.0
    assert sim_stats(sim)["polls"] == 0


def test_code_1005_cuts_the_fleets_rate(
    sim: Simulator, session: requests.Session, redis_server: RedisServer
) -> None:
    connection = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    budget = RequestBudget(connection, 8.0, key=f"test:akool:{uuid.uuid4().hex}")
    client = AkoolClient(sim.base_url, api_key=Secret(API_KEY), session=session, budget=budget)
    with pytest.raises(AkoolTransientError) as info:
        client.submit("https://example.invalid/v.mp4?sim_submit_code=1005", AUDIO)
    assert info.value.code == 1005
    # One refusal tells little about Akool's limit: 5 % off.
    assert budget.current_rate(connection) == pytest.approx(7.6)
    connection.close()


def test_http_429_cuts_the_rate_and_holds_the_fleet_back_for_retry_after(
    sim: Simulator, session: requests.Session, redis_server: RedisServer
) -> None:
    connection = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    budget = RequestBudget(connection, 8.0, key=f"test:akool:{uuid.uuid4().hex}")
    client = AkoolClient(
        sim.base_url, api_key=Secret(API_KEY), session=session, budget=budget, budget_wait=1.0
    )
    video = "https://example.invalid/v.mp4?sim_poll_http=429&sim_retry_after=3"
    akool_id = client.submit(video, AUDIO)
    with pytest.raises(AkoolTransientError) as info:
        client.status(akool_id)
    assert info.value.status == 429
    assert budget.current_rate(connection) == pytest.approx(7.6)
    assert 2.5 < budget.reserve().wait <= 3.0
    connection.close()
