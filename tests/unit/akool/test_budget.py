"""Tests of the request budget's plain parts without Redis: the arguments it refuses, the AIMD
rule, the reservation horizon and when a reserved slot is honoured. What the Lua scripts do
with a budget is tested against a real redis-server in tests/integration/test_ratelimit.py."""

from __future__ import annotations

import pytest
import redis

from worker.akool.budget import (
    HORIZON_SECONDS,
    AimdRule,
    RequestBudget,
    wait_for_reserved,
)


def test_a_bad_rate_burst_or_horizon_is_refused() -> None:
    client = redis.Redis()  # never connected: the arguments are refused first
    for rate in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            RequestBudget(client, rate)
    with pytest.raises(ValueError):
        RequestBudget(client, 5.0, burst=0)
    with pytest.raises(ValueError):
        RequestBudget(client, 5.0, horizon=0.0)


def test_a_bad_aimd_rule_is_refused() -> None:
    bad_rules = (
        {"ceiling": 0.0},
        {"ceiling": 5.0, "kept": 1.0},
        {"ceiling": 5.0, "step": 0},
        {"ceiling": 5.0, "round_min": 2.0, "round_max": 1.0},
    )
    for bad in bad_rules:
        with pytest.raises(ValueError):
            AimdRule(**bad)


def test_a_cut_lands_on_what_akool_served_and_keeps_at_most_95_percent() -> None:
    rule = AimdRule(ceiling=100.0)
    assert rule.cut(100.0, served=20.0) == 20.0
    assert rule.cut(100.0, served=99.0) == 95.0  # a lone refusal still costs 5 %
    assert rule.cut(100.0) == 95.0  # nothing known about the round
    assert rule.cut(0.21, served=0.0) == 0.2  # never below the floor
    assert rule.cut(500.0) == 95.0  # a rate above the ceiling is the ceiling first


def test_a_ceiling_below_the_floor_is_the_floor_too() -> None:
    rule = AimdRule(ceiling=0.1)
    assert rule.cut(0.1) == 0.1
    assert rule.raised(0.1, 60.0) == 0.1


def test_success_raises_the_rate_a_step_per_round_up_to_the_ceiling() -> None:
    rule = AimdRule(ceiling=20.0)
    assert rule.raised(10.0, 0.9) == 10.0  # an empty queue: rounds of one second
    assert rule.raised(10.0, 1.0) == pytest.approx(10.5)
    assert rule.raised(10.0, 10.0) == pytest.approx(15.0)
    assert rule.raised(10.0, 1000.0) == 20.0


def test_a_round_is_the_queue_of_reserved_slots_between_1_and_60_seconds() -> None:
    rule = AimdRule(ceiling=20.0)
    assert rule.raised(10.0, 10.0, queue_seconds=25.0) == 10.0  # the round is not over
    assert rule.raised(10.0, 50.0, queue_seconds=25.0) == pytest.approx(11.0)
    assert rule.raised(10.0, 120.0, queue_seconds=2000.0) == pytest.approx(11.0)
    assert rule.round_seconds(0.0) == 1.0


def test_the_horizon_is_half_the_brokers_visibility_timeout() -> None:
    from worker.celery_app import VISIBILITY_TIMEOUT_SECONDS

    assert HORIZON_SECONDS == VISIBILITY_TIMEOUT_SECONDS / 2


def test_a_task_at_or_just_after_its_reserved_slot_goes_at_once() -> None:
    assert wait_for_reserved(100.0, now=100.0, max_wait=2.0) == 0.0
    assert wait_for_reserved(100.0, now=101.0, max_wait=2.0) == 0.0


def test_a_task_long_past_its_slot_reserves_anew_instead_of_joining_a_burst() -> None:
    assert wait_for_reserved(100.0, now=101.5, max_wait=2.0) is None
    assert wait_for_reserved(100.0, now=130.0, max_wait=2.0) is None


def test_a_task_slightly_early_waits_out_the_rest_of_its_slot() -> None:
    assert wait_for_reserved(100.0, now=99.5, max_wait=2.0) == 0.5


def test_a_task_far_too_early_or_without_a_slot_reserves_anew() -> None:
    assert wait_for_reserved(100.0, now=90.0, max_wait=2.0) is None
    assert wait_for_reserved(None, now=90.0, max_wait=2.0) is None
