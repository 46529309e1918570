"""The adaptive request budget as the scrape shows it. How the rate adapts is tested rule by
rule in test_ratelimit.py; a fleet against an Akool allowing 20 calls a second with a
ceiling of 100 is bench part `adaptive` (`python -m bench --part adaptive`)."""

from __future__ import annotations

import pytest
import redis

from worker.akool.budget import RequestBudget
from worker.dev.stack import RedisServer
from worker.metrics import render

pytestmark = pytest.mark.integration


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
