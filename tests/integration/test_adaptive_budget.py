"""The adaptive request budget against an Akool that allows fewer calls than AKOOL_MAX_RPS:
the simulator answers 1005 beyond 20 requests a second, the budget's ceiling is 100. A fleet
of jobs driven by threads (bench/adaptive.py, as the tasks drive them) must see 1005 answers
become rare once the budget has adapted. The bench runs the long version (part 7)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from bench.adaptive import run_fleet, start_limited_simulator
from worker.dev.simulator import Simulator
from worker.dev.stack import RedisServer
from worker.metrics import render
from worker.ratelimit import RequestBudget

pytestmark = pytest.mark.integration

JOBS = 150
SECONDS = 16.0
SETTLED_AFTER_SECONDS = 8.0


@pytest.fixture
def limited_sim() -> Iterator[Simulator]:
    sim = start_limited_simulator(per_second=20)
    yield sim
    sim.stop()


def test_with_akool_at_20_per_second_and_a_ceiling_of_100_1005_answers_become_rare(
    redis_server: RedisServer, limited_sim: Simulator
) -> None:
    fleet = run_fleet(redis_server.url, limited_sim, jobs=JOBS, seconds=SECONDS, max_rps=100.0)

    assert fleet.share_1005(0.0) > 0.0  # the ceiling was too high at first
    assert fleet.share_1005(SETTLED_AFTER_SECONDS) < 0.10
    # Generous: the budget must neither stall nor collapse to its floor.
    assert fleet.served_per_second(SETTLED_AFTER_SECONDS) > 5.0


def test_the_scrape_shows_the_fleets_rate_once_akool_was_called(
    redis_server: RedisServer,
) -> None:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    budget = RequestBudget(client, 5.0)
    client.delete(budget.key, budget.rate_key)
    assert b"lipsync_akool_budget_rps" not in render(client)
    budget.reserve()
    assert b"lipsync_akool_budget_rps 5.0" in render(client)
    budget.slow_down()
    assert b"lipsync_akool_budget_rps 4.75" in render(client)
    client.delete(budget.key, budget.rate_key)
    client.close()
