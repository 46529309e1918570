"""Tests of RequestBudget without Redis: the arguments it refuses. What it does with a
budget is tested against a real redis-server in tests/integration/test_ratelimit.py."""

from __future__ import annotations

import pytest
import redis

from worker.ratelimit import RequestBudget


def test_a_bad_rate_or_burst_is_refused() -> None:
    client = redis.Redis()  # never connected: the arguments are refused first
    for rate in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            RequestBudget(client, rate)
    with pytest.raises(ValueError):
        RequestBudget(client, 5.0, burst=0)
